"""Unit tests for claude_bottle.plan: the frozen plan for both runtimes and its JSON form."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
import tomllib
import unittest
from typing import Any
from unittest import mock

from claude_bottle import agents, addressing, images, manifest, pipelock, plan
from claude_bottle.plan import LABEL

SESSION = "abcd1234"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _manifest(**doc: Any) -> manifest.Manifest:
    doc.setdefault("name", "demo")
    return manifest.parse(doc, "/nowhere/bottle.json")


def _docker(**kw: Any) -> plan.Plan:
    kw.setdefault("uid", 1000)
    kw.setdefault("gid", 1000)
    doc = kw.pop("doc", {})
    return plan.build(_manifest(**doc), SESSION, **kw)


def _smol(**kw: Any) -> plan.Plan:
    doc = dict(kw.pop("doc", {}))
    doc["runtime"] = "smolmachines"
    kw.setdefault("uid", 1000)
    kw.setdefault("gid", 1000)
    kw.setdefault("state_dir", "/state/claude-bottle")
    return plan.build(_manifest(**doc), SESSION, **kw)


class DockerTopologyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.plan = _docker(doc={"egress": {"allow": ["@anthropic", "ssh://10.0.0.5"]}})

    def test_networks(self) -> None:
        # None of the session's own: the agent has no network, the bundle egresses by Docker's bridge.
        self.assertEqual(self.plan.networks, ())

    def test_agent_has_no_network_and_the_bundle_the_default_bridge(self) -> None:
        self.assertEqual(self.plan.container("agent").networks, ())
        self.assertEqual(self.plan.container("bundle").networks, (plan.DEFAULT_EGRESS_NETWORK,))
        self.assertEqual(plan.DEFAULT_EGRESS_NETWORK, "bridge")
        self.assertEqual(self.plan.proxy_socket, "/run/claude-bottle/bundle/proxy.sock")
        self.assertEqual(len(self.plan.containers), 2)
        self.assertEqual({c.role for c in self.plan.containers}, {"bundle", "agent"})

    def test_names_carry_bottle_and_session(self) -> None:
        names = [n.name for n in self.plan.networks] + [c.name for c in self.plan.containers]
        self.assertEqual(len(names), len(set(names)))
        for name in names:
            self.assertTrue(name.startswith(f"claude-bottle-demo-{SESSION}-"), name)
        self.assertEqual(self.plan.container("bundle").name, f"claude-bottle-demo-{SESSION}-bundle")
        self.assertEqual(self.plan.container("agent").name, f"claude-bottle-demo-{SESSION}-agent")

    def test_every_resource_labelled(self) -> None:
        for res in (*self.plan.networks, *self.plan.containers):
            with self.subTest(resource=res.name):
                labels = dict(res.labels)
                self.assertEqual(labels[f"{LABEL}.bottle"], "demo")
                self.assertEqual(labels[f"{LABEL}.session"], SESSION)
                self.assertIn(f"{LABEL}.role", labels)
        self.assertEqual(dict(self.plan.container("bundle").labels)[f"{LABEL}.role"], "bundle")
        self.assertEqual(dict(self.plan.container("agent").labels)[f"{LABEL}.role"], "agent")
        for net in self.plan.networks:
            self.assertEqual(dict(net.labels)[f"{LABEL}.role"], "network")
        self.assertEqual(LABEL, "org.claude-bottle")

    def test_plan_labels(self) -> None:
        labels = dict(self.plan.labels)
        self.assertEqual(labels[f"{LABEL}.bottle"], "demo")
        self.assertEqual(labels[f"{LABEL}.session"], SESSION)
        self.assertNotIn(f"{LABEL}.role", labels)

    def test_session_labels(self) -> None:
        self.assertEqual(plan.session_labels("x", "s"), ((f"{LABEL}.bottle", "x"), (f"{LABEL}.session", "s")))

    def test_images(self) -> None:
        self.assertEqual(self.plan.container("agent").image, agents.KINDS["claude"].image)
        self.assertEqual(self.plan.agent_image, agents.KINDS["claude"].image)
        self.assertEqual(self.plan.container("bundle").image, self.plan.sidecars_image)
        self.assertEqual(self.plan.sidecars_image, images.sidecars_image())

    def test_sidecars_image_override(self) -> None:
        with mock.patch.dict(os.environ, {images.IMAGE_ENV: "local/sidecars:test"}):
            p = _docker()
        self.assertEqual(p.sidecars_image, "local/sidecars:test")
        self.assertEqual(p.container("bundle").image, "local/sidecars:test")

    def test_proxy(self) -> None:
        self.assertEqual(self.plan.proxy_url, "http://127.0.0.1:3128")  # the gate's relay, off the agent's 8080
        self.assertIsNone(self.plan.bundle_ip)
        self.assertIsNone(self.plan.smolfile)
        self.assertIsNone(self.plan.vm_name)

    def test_user_network(self) -> None:
        p = _docker(doc={"egress": {"network": "lab-net"}})
        self.assertEqual(p.networks, ())  # joined, never created
        self.assertEqual(p.container("bundle").networks, ("lab-net",))
        self.assertEqual(p.container("agent").networks, ())

    def test_frozen_and_hashable(self) -> None:
        with self.assertRaises(AttributeError):
            self.plan.name = "x"  # type: ignore[misc]
        hash(self.plan)
        self.assertEqual(self.plan, _docker(doc={"egress": {"allow": ["@anthropic", "ssh://10.0.0.5"]}}))


class AgentEnvTest(unittest.TestCase):
    def test_proxy_ca_and_manifest_env(self) -> None:
        p = _docker(doc={"agent": {"env": {"FOO": "bar", "EDITOR": "vi"}}})
        env = dict(p.agent_env)
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            self.assertEqual(env[var], p.proxy_url, var)
        for var in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE"):
            self.assertEqual(env[var], plan.CA_PATH, var)
        self.assertEqual(env["FOO"], "bar")
        self.assertEqual(env["EDITOR"], "vi")
        self.assertEqual(env["HOME"], plan.AGENT_HOME)
        self.assertEqual(env["CLAUDE_BOTTLE"], "demo")
        self.assertEqual(env["CLAUDE_BOTTLE_SESSION"], SESSION)
        self.assertNotIn("NO_PROXY", env)
        self.assertNotIn("no_proxy", env)

    def test_env_sorted_and_unique(self) -> None:
        p = _docker(doc={"agent": {"env": {"ZZ": "1", "AA": "2"}}})
        names = [k for k, _ in p.agent_env]
        self.assertEqual(names, sorted(names))
        self.assertEqual(len(names), len(set(names)))

    def test_manifest_home_kept(self) -> None:
        self.assertEqual(dict(_docker(doc={"agent": {"env": {"HOME": "/work"}}}).agent_env)["HOME"], "/work")

    def test_launcher_values_win(self) -> None:
        p = _docker(doc={"agent": {"env": {"CLAUDE_BOTTLE": "fake", "CLAUDE_BOTTLE_SESSION": "fake"}}})
        env = dict(p.agent_env)
        self.assertEqual(env["CLAUDE_BOTTLE"], "demo")
        self.assertEqual(env["CLAUDE_BOTTLE_SESSION"], SESSION)

    def test_no_host_environment_leaks(self) -> None:
        with mock.patch.dict(os.environ, {"LEAKY_SECRET": "s3cret", "HTTPS_PROXY": "http://host:1"}):
            p = _docker()
        env = dict(p.agent_env)
        self.assertNotIn("LEAKY_SECRET", env)
        self.assertEqual(env["HTTPS_PROXY"], p.proxy_url)


class AgentUserTest(unittest.TestCase):
    def test_never_root(self) -> None:
        self.assertEqual(plan.agent_user(0, 0), "10001:10001")
        self.assertEqual(plan.agent_user(0, 1000), "10001:10001")
        self.assertEqual(plan.AGENT_FALLBACK_UID, 10001)

    def test_launching_user(self) -> None:
        self.assertEqual(plan.agent_user(1000, 1000), "1000:1000")
        self.assertEqual(plan.agent_user(501, 20), "501:20")

    def test_in_plan(self) -> None:
        self.assertEqual(_docker(uid=0, gid=0).agent_user, "10001:10001")
        self.assertEqual(_docker(uid=1234, gid=99).agent_user, "1234:99")
        self.assertEqual(plan.build(_manifest(), SESSION).agent_user, "10001:10001")  # defaults: uid 0
        self.assertEqual(_smol(uid=0, gid=0).agent_user, "10001:10001")

    def test_to_json_user_never_root(self) -> None:
        for uid in (0, 1000):
            user = _docker(uid=uid, gid=uid).to_json()["agent"]["user"]
            self.assertFalse(user.startswith("0:"), user)


class CommandTest(unittest.TestCase):
    def test_default_from_manifest(self) -> None:
        self.assertEqual(_docker().agent_command, ("claude", "--dangerously-skip-permissions"))
        self.assertEqual(_docker(doc={"agent": {"command": ["bash", "-l"]}}).agent_command, ("bash", "-l"))

    def test_override(self) -> None:
        p = _docker(doc={"agent": {"command": ["bash"]}}, command=("claude", "--resume", "--", "x"))
        self.assertEqual(p.agent_command, ("claude", "--resume", "--", "x"))
        self.assertEqual(p.to_json()["agent"]["command"], ["claude", "--resume", "--", "x"])

    def test_empty_override_keeps_manifest(self) -> None:
        self.assertEqual(_docker(command=()).agent_command, ("claude", "--dangerously-skip-permissions"))


class SmolmachinesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.plan = _smol(doc={"agent": {"env": {"FOO": "a=b \"c\""}}, "egress": {"allow": ["@github"]}})
        self.subnet, self.gateway, self.ip = addressing.smolmachines_bundle_subnet("demo")

    def test_bundle_addressing(self) -> None:
        self.assertEqual(self.plan.bundle_subnet, self.subnet)
        self.assertEqual(self.plan.bundle_gateway, self.gateway)
        self.assertEqual(self.plan.bundle_ip, self.ip)
        self.assertIn(ipaddress.ip_address(self.plan.bundle_ip), ipaddress.ip_network(self.plan.bundle_subnet))
        self.assertTrue(self.plan.bundle_subnet.startswith("192.168."))
        self.assertNotEqual(self.plan.bundle_subnet.split(".")[2], "17")

    def test_network_and_bundle(self) -> None:
        self.assertEqual(len(self.plan.networks), 1)
        net = self.plan.networks[0]
        self.assertEqual((net.subnet, net.gateway), (self.subnet, self.gateway))
        self.assertEqual(net.name, f"claude-bottle-demo-{SESSION}-net")
        self.assertEqual([c.role for c in self.plan.containers], ["bundle"])
        bundle = self.plan.container("bundle")
        self.assertEqual(bundle.ip, self.ip)
        self.assertEqual(bundle.networks, (net.name,))
        with self.assertRaises(StopIteration):
            self.plan.container("agent")

    def test_proxy_url_is_ip_literal(self) -> None:
        self.assertEqual(self.plan.proxy_url, f"http://{self.ip}:{plan.PROXY_PORT}")
        env = dict(self.plan.agent_env)
        self.assertEqual(env["HTTPS_PROXY"], self.plan.proxy_url)
        self.assertIsNone(self.plan.proxy_socket)  # the VM reaches the bundle's address, not a socket

    def test_smolfile(self) -> None:
        doc = tomllib.loads(self.plan.smolfile or "")
        self.assertEqual(set(doc), {"env", "network"})
        self.assertEqual(doc["network"], {"allow_cidrs": [f"{self.ip}/32"]})
        self.assertEqual(doc["env"], sorted(f"{k}={v}" for k, v in self.plan.agent_env))
        self.assertIn('FOO=a=b "c"', doc["env"])

    def test_smolfile_path_and_vm(self) -> None:
        self.assertEqual(self.plan.smolfile_path, f"/state/claude-bottle/claude-bottle-demo-{SESSION}.smolfile")
        self.assertEqual(self.plan.vm_name, f"claude-bottle-demo-{SESSION}-vm")

    def test_smolfile_path_placeholder_without_state_dir(self) -> None:
        p = plan.build(_manifest(runtime="smolmachines"), SESSION)
        self.assertTrue((p.smolfile_path or "").endswith(f"claude-bottle-demo-{SESSION}.smolfile"))

    def test_taken_subnet_moves_the_bundle(self) -> None:
        p = _smol(taken_subnets=(self.subnet,))
        self.assertNotEqual(p.bundle_subnet, self.subnet)
        doc = tomllib.loads(p.smolfile or "")
        self.assertEqual(doc["network"]["allow_cidrs"], [f"{p.bundle_ip}/32"])
        self.assertIn(p.bundle_ip or "", p.proxy_url)

    def test_labels(self) -> None:
        for res in (*self.plan.networks, *self.plan.containers):
            labels = dict(res.labels)
            self.assertEqual(labels[f"{LABEL}.bottle"], "demo")
            self.assertEqual(labels[f"{LABEL}.session"], SESSION)
            self.assertIn(f"{LABEL}.role", labels)
        vm_labels = self.plan.to_json()["resources"]["vm"]["labels"]
        self.assertEqual(vm_labels[f"{LABEL}.bottle"], "demo")
        self.assertEqual(vm_labels[f"{LABEL}.session"], SESSION)
    def test_vm_has_a_role_label(self) -> None:
        # Was a bug (against "every resource labelled bottle/session/role"): the microVM's labels in
        # to_json()["resources"]["vm"] are the plan's session labels without org.claude-bottle.role.
        self.assertEqual(self.plan.to_json()["resources"]["vm"]["labels"][f"{LABEL}.role"], "vm")


class JsonTest(unittest.TestCase):
    def _check(self, p: plan.Plan) -> dict[str, Any]:
        doc = p.to_json()
        self.assertEqual(json.loads(json.dumps(doc)), doc)
        return doc

    def test_docker_keys(self) -> None:
        with tempfile.TemporaryDirectory() as ws:
            m = manifest.parse({"name": "demo", "workspace": ws, "egress": {"allow": ["@npm", "10.0.0.3:5432"]},
                                "resources": {"cpus": 1.5}}, "/nowhere/m.json")
            doc = self._check(plan.build(m, SESSION, uid=1000, gid=1000))
        self.assertEqual(
            set(doc),
            {"name", "runtime", "session", "manifest", "workspace", "egress", "pipelock", "bundle_policy", "agent",
             "labels", "resources"},
        )
        self.assertEqual((doc["name"], doc["runtime"], doc["session"]), ("demo", "docker", SESSION))
        self.assertEqual(doc["manifest"], "/nowhere/m.json")
        self.assertEqual(doc["workspace"], ws)
        self.assertEqual(set(doc["agent"]), {"kind", "image", "command", "env", "user", "resources", "proxy",
                                             "proxy_socket"})
        self.assertEqual(doc["agent"]["resources"], {"memory": "4g", "pids": 1024, "cpus": 1.5})
        self.assertEqual(doc["agent"]["proxy"], "http://127.0.0.1:3128")
        self.assertEqual(doc["agent"]["proxy_socket"], "/run/claude-bottle/bundle/proxy.sock")
        self.assertEqual(doc["pipelock"]["version"], pipelock.PIPELOCK_VERSION)
        self.assertEqual(doc["pipelock"]["config"], pipelock.config(m.egress))
        self.assertEqual(doc["egress"], json.loads(json.dumps(m.egress.to_json())))
        self.assertEqual(doc["egress"]["ssrf_allow"], ["10.0.0.3/32"])
        self.assertEqual(set(doc["resources"]), {"networks", "containers", "volumes"})  # volumes: the kept home
        self.assertEqual(doc["resources"]["networks"], [])
        self.assertEqual({c["role"]: c["networks"] for c in doc["resources"]["containers"]},
                         {"bundle": ["bridge"], "agent": []})
        self.assertEqual({c["role"] for c in doc["resources"]["containers"]}, {"bundle", "agent"})
        for item in doc["resources"]["networks"] + doc["resources"]["containers"]:
            self.assertEqual(item["labels"][f"{LABEL}.bottle"], "demo")
            self.assertEqual(item["labels"][f"{LABEL}.session"], SESSION)
            self.assertIn(f"{LABEL}.role", item["labels"])
        for key in ("bundle", "smolfile", "smolfile_path"):
            self.assertNotIn(key, doc)

    def test_smolmachines_keys(self) -> None:
        p = _smol()
        doc = self._check(p)
        self.assertEqual(doc["runtime"], "smolmachines")
        self.assertEqual(doc["bundle"], {"subnet": p.bundle_subnet, "gateway": p.bundle_gateway, "ip": p.bundle_ip,
                                         "moved_from": None})
        self.assertEqual(doc["smolfile"], p.smolfile)
        self.assertEqual(doc["smolfile_path"], p.smolfile_path)
        self.assertEqual(doc["resources"]["vm"]["name"], p.vm_name)
        self.assertEqual(doc["agent"]["proxy"], f"http://{p.bundle_ip}:8080")
        self.assertEqual(doc["resources"]["networks"][0]["subnet"], p.bundle_subnet)
        self.assertEqual(doc["resources"]["containers"][0]["ip"], p.bundle_ip)

    def test_json_with_odd_env(self) -> None:
        value = "line\nq\"uote\\ \u00e9 \U0001f600 \x01"
        for build in (_docker, _smol):
            with self.subTest(runtime=build.__name__):
                doc = self._check(build(doc={"agent": {"env": {"V": value}}}))
                self.assertEqual(doc["agent"]["env"]["V"], value)

    def test_dry_run_plan_is_pure(self) -> None:
        state = tempfile.mkdtemp(prefix="cb-plan-")
        self.addCleanup(shutil.rmtree, state, True)
        p = _smol(state_dir=state)
        self.assertTrue((p.smolfile_path or "").startswith(state))
        self.assertEqual(os.listdir(state), [])


class BundlePolicyTest(unittest.TestCase):
    def test_policy(self) -> None:
        m = _manifest(egress={"allow": ["*.example.com", "example.com:8443", "ssh://10.0.0.2"]})
        doc = json.loads(plan.bundle_policy(m))
        self.assertEqual(doc["version"], 1)
        self.assertEqual(doc["ssrf_allow"], ["10.0.0.2/32"])
        self.assertEqual(
            doc["rules"],
            [
                {"host": "example.com", "wildcard": True, "ports": [80, 443], "raw_ports": []},  # as "*.example.com"
                {"host": "10.0.0.2", "wildcard": False, "ports": [22], "raw_ports": [22]},
                {"host": "example.com", "wildcard": False, "ports": [8443], "raw_ports": [8443]},
            ],
        )
        self.assertNotIn("upstream_trusted_ca", doc)

    def test_policy_with_trusted_ca(self) -> None:
        d = tempfile.mkdtemp(prefix="cb-plan-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "ca.pem"), "w") as handle:
            handle.write(CERT)
        m = manifest.parse({"name": "demo", "egress": {"trusted_ca": "ca.pem"}}, os.path.join(d, "m.json"))
        doc = json.loads(plan.bundle_policy(m))
        self.assertEqual(doc["upstream_trusted_ca"], CERT)
        self.assertEqual(plan.build(m, SESSION).to_json()["bundle_policy"]["upstream_trusted_ca"], CERT)
        self.assertNotIn("upstream_trusted_ca", _docker().to_json()["bundle_policy"])

    def test_plan_pipelock_matches_renderer(self) -> None:
        p = _docker(doc={"egress": {"allow": ["@go"]}})
        self.assertEqual(p.pipelock_yaml, pipelock.render(_manifest(egress={"allow": ["@go"]}).egress))


if __name__ == "__main__":
    unittest.main()
