"""Unit tests for the Kubernetes runtime: the pure rendering (kubernetes.py, kubernetes_policy.py), the
kubectl argv, and the executor's order and teardown against a fake kubectl (kubernetes_run.py).

The real API server's word on the same objects is tests/integration/test_kubernetes.py's."""

from __future__ import annotations

import base64
import json
import unittest
from typing import Any
from unittest import mock

from claude_bottle import kubernetes, kubernetes_argv, kubernetes_run, manifest, plan
from claude_bottle.errors import BottleError, ManifestError, RuntimeFailure
from claude_bottle.plan import LABEL
from tests.fakes.runner import PEM, FakeRunner

SESSION = "abcd1234"


def kube_plan(doc: dict[str, Any] | None = None, environ: dict[str, str] | None = None,
              **kw: Any) -> kubernetes.KubePlan:
    doc = dict(doc or {})
    doc.setdefault("name", "demo")
    doc["runtime"] = "kubernetes"
    m = manifest.parse(doc, "/nowhere/bottle.json")
    base = plan.build(m, SESSION, uid=1000, gid=1000, launcher="laptop:4242", environ=environ or {},
                      placeholder_seed="seed", **kw)
    return kubernetes.adapt(base, m)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix))


SECRET_DOC = {"secrets": {"TOKEN": {"from_env": "TOK", "inject": {"hosts": ["api.example.com"], "header": "x-token"}}},
              "egress": {"allow": ["api.example.com"]}}


class NamesAndLabelsTest(unittest.TestCase):
    def test_longest_name_fits_a_service_name(self) -> None:
        p = kube_plan({"name": "a" * 40})
        for obj in kubernetes.render(p):
            name = obj["metadata"]["name"]
            if obj["kind"] in ("Service", "Pod"):
                self.assertLessEqual(len(name), 63, name)
                self.assertRegex(name, r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

    def test_every_object_carries_bottle_session_and_role(self) -> None:
        p = kube_plan({"kubernetes": {"namespace": "team-a", "create_namespace": True}})
        objects = kubernetes.render(p, ca_pem=PEM)
        self.assertEqual(objects[0]["kind"], "Namespace")
        self.assertNotIn("namespace", objects[0]["metadata"])
        for obj in objects:
            md = obj["metadata"]
            self.assertEqual(md["labels"][f"{LABEL}.bottle"], "demo")
            self.assertEqual(md["labels"][f"{LABEL}.session"], SESSION)
            self.assertIn(f"{LABEL}.role", md["labels"])
            # "host:pid" is no valid label value: the launcher is an annotation
            self.assertNotIn(f"{LABEL}.launcher", md["labels"])
            self.assertEqual(md["annotations"][f"{LABEL}.launcher"], "laptop:4242")
            if obj["kind"] != "Namespace":
                self.assertEqual(md["namespace"], "team-a")

    def test_no_namespace_object_unless_asked(self) -> None:
        self.assertEqual(by_kind(kubernetes.render(kube_plan()), "Namespace"), [])

    def test_order_is_creation_order(self) -> None:
        kinds = [o["kind"] for o in kubernetes.render(kube_plan(SECRET_DOC, {"TOK": "v"}), ca_pem=PEM)]
        self.assertEqual(kinds, ["ConfigMap", "Secret", "Pod", "Service", "NetworkPolicy", "NetworkPolicy",
                                 "ConfigMap", "Pod"])

    def test_dump_is_one_list(self) -> None:
        doc = json.loads(kubernetes.dump(kubernetes.render(kube_plan())))
        self.assertEqual((doc["apiVersion"], doc["kind"]), ("v1", "List"))
        self.assertEqual(len(doc["items"]), 6)


class SecurityTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = kube_plan({"resources": {"memory": "512m", "cpus": 0.5}})
        self.objects = kubernetes.render(self.p)
        self.bundle = named(self.objects, "Pod", "-bundle")
        self.agent = named(self.objects, "Pod", "-agent")

    def test_both_pods_are_restricted(self) -> None:
        for pod in (self.bundle, self.agent):
            spec = pod["spec"]
            self.assertIs(spec["automountServiceAccountToken"], False)
            self.assertEqual(spec["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
            self.assertIs(spec["securityContext"]["runAsNonRoot"], True)
            self.assertEqual(spec["restartPolicy"], "Never")
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                self.assertIs(spec[flag], False)
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c["securityContext"]
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertIs(sc["privileged"], False)
                self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
                self.assertIs(sc["runAsNonRoot"], True)
                self.assertEqual(sc["runAsUser"], kubernetes.UID)
                self.assertIn("memory", c["resources"]["limits"])

    def test_agent_limits_come_from_the_manifest(self) -> None:
        limits = self.agent["spec"]["containers"][0]["resources"]["limits"]
        self.assertEqual(limits, {"memory": "512Mi", "cpu": "0.5"})
        self.assertEqual(self.p.agent_user, "10001:10001")

    def test_memory_quantities(self) -> None:
        self.assertEqual([kubernetes.quantity(m) for m in ("4g", "512m", "64k", "1048576")],
                         ["4Gi", "512Mi", "64Ki", "1048576"])

    def test_runtime_class_only_on_the_agent_and_only_when_asked(self) -> None:
        self.assertNotIn("runtimeClassName", self.agent["spec"])
        objects = kubernetes.render(kube_plan({"kubernetes": {"runtime_class_name": "gvisor"}}))
        self.assertEqual(named(objects, "Pod", "-agent")["spec"]["runtimeClassName"], "gvisor")
        self.assertNotIn("runtimeClassName", named(objects, "Pod", "-bundle")["spec"])

    def test_agent_has_no_resolver(self) -> None:
        spec = self.agent["spec"]
        self.assertEqual(spec["dnsPolicy"], "None")
        self.assertEqual(spec["dnsConfig"], {"nameservers": ["127.0.0.1"]})

    def test_command_is_args_so_the_entrypoint_stays(self) -> None:
        c = self.agent["spec"]["containers"][0]
        self.assertNotIn("command", c)
        self.assertEqual(c["args"], list(self.p.agent_command))
        self.assertEqual(c["workingDir"], "/workspace")


class SecretTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = kube_plan(SECRET_DOC, {"TOK": "hunter2"})

    def test_values_only_in_the_secret_and_only_when_given(self) -> None:
        values = b'{"TOKEN": "hunter2"}'
        objects = kubernetes.render(self.p, secrets_json=values)
        secret = by_kind(objects, "Secret")[0]
        self.assertEqual(base64.b64decode(secret["data"]["secrets.json"]), values)
        self.assertIs(secret["immutable"], True)
        rest = json.dumps([o for o in objects if o["kind"] != "Secret"])
        self.assertNotIn("hunter2", rest)
        self.assertNotIn(base64.b64encode(values).decode(), rest)
        dry = kubernetes.render(self.p)
        self.assertNotIn("data", by_kind(dry, "Secret")[0])  # fillable: not immutable without values
        self.assertNotIn("hunter2", json.dumps(self.p.to_json()))

    def test_mounted_only_into_the_bundle_as_0400(self) -> None:
        objects = kubernetes.render(self.p, secrets_json=b"{}")
        bundle = named(objects, "Pod", "-bundle")
        vol = next(v for v in bundle["spec"]["volumes"] if "secret" in v)
        self.assertEqual(vol["secret"], {"secretName": f"cb-demo-{SESSION}-secrets", "defaultMode": 0o400})
        self.assertEqual(bundle["spec"]["securityContext"]["fsGroup"], kubernetes.UID)
        env = {e["name"]: e["value"] for e in bundle["spec"]["containers"][0]["env"]}
        self.assertEqual(env["CLAUDE_BOTTLE_SECRETS"], f"{kubernetes.SECRETS_DIR}/secrets.json")
        agent = named(objects, "Pod", "-agent")
        self.assertFalse([v for v in agent["spec"]["volumes"] if "secret" in v or "projected" in v])
        agent_env = {e["name"]: e["value"] for e in agent["spec"]["containers"][0]["env"]}
        self.assertTrue(agent_env["TOKEN"].startswith("claude-bottle-placeholder-"))

    def test_config_map_holds_the_policy(self) -> None:
        cm = named(kubernetes.render(self.p), "ConfigMap", "-config")
        self.assertEqual(cm["data"]["policy.json"], self.p.bundle_policy)
        self.assertEqual(cm["data"]["pipelock.yaml"], self.p.pipelock_yaml)

    def test_ca_config_map_takes_a_certificate_only(self) -> None:
        self.assertEqual(kubernetes.ca_config_map(self.p, PEM)["data"], {"ca.pem": PEM})
        with self.assertRaises(ValueError):
            kubernetes.ca_config_map(self.p, PEM + "-----BEGIN PRIVATE KEY-----\nx\n")


class ProxyTest(unittest.TestCase):
    def test_static_form_uses_service_links(self) -> None:
        p = kube_plan()
        agent = named(kubernetes.render(p), "Pod", "-agent")
        env = {e["name"]: e["value"] for e in agent["spec"]["containers"][0]["env"]}
        for var in plan.PROXY_VARS:
            self.assertEqual(env[var], f"http://$(CB_DEMO_{SESSION.upper()}_BUNDLE_SERVICE_HOST):8080")
        self.assertIs(agent["spec"]["enableServiceLinks"], True)
        self.assertEqual(p.proxy_url, env["HTTPS_PROXY"])

    def test_literal_cluster_ip_when_known(self) -> None:
        agent = kubernetes.agent_object(kube_plan(), bundle_ip="10.96.7.8")
        env = {e["name"]: e["value"] for e in agent["spec"]["containers"][0]["env"]}
        self.assertEqual({env[v] for v in plan.PROXY_VARS}, {"http://10.96.7.8:8080"})
        self.assertIs(agent["spec"]["enableServiceLinks"], False)
        self.assertEqual(env["SSL_CERT_FILE"], plan.CA_PATH)

    def test_service_selects_the_bundle_on_the_proxy_port(self) -> None:
        svc = by_kind(kubernetes.render(kube_plan()), "Service")[0]
        self.assertEqual(svc["spec"]["selector"], {f"{LABEL}.session": SESSION, f"{LABEL}.role": "bundle"})
        self.assertEqual([p["port"] for p in svc["spec"]["ports"]], [8080])


class WorkspaceTest(unittest.TestCase):
    def volume(self, pod: dict[str, Any]) -> dict[str, Any]:
        return next(v for v in pod["spec"]["volumes"] if v["name"] == "workspace")

    def test_scratch_by_default(self) -> None:
        agent = kubernetes.agent_object(kube_plan({"kubernetes": {"storage": "2Gi"}}))
        self.assertEqual(self.volume(agent), {"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}})
        self.assertNotIn("initContainers", agent["spec"])

    def test_claim(self) -> None:
        agent = kubernetes.agent_object(kube_plan({"kubernetes": {"workspace": {"claim": "team-ws"}}}))
        self.assertEqual(self.volume(agent)["persistentVolumeClaim"], {"claimName": "team-ws"})

    def test_git_clone_runs_first_through_the_bundle(self) -> None:
        doc = {"egress": {"allow": ["@github"]},
               "kubernetes": {"workspace": {"git": "https://github.com/o/r.git", "ref": "main"}}}
        agent = kubernetes.agent_object(kube_plan(doc), bundle_ip="10.96.0.9")
        (clone,) = agent["spec"]["initContainers"]
        self.assertEqual(clone["command"], ["git", "clone", "--depth=1", "--branch", "main", "--",
                                            "https://github.com/o/r.git", "/workspace"])
        env = {e["name"]: e["value"] for e in clone["env"]}
        self.assertEqual(env["HTTPS_PROXY"], "http://10.96.0.9:8080")
        self.assertEqual(env["GIT_SSL_CAINFO"], plan.CA_PATH)


class NetworkPolicyTest(unittest.TestCase):
    def policies(self, allow: list[str], **kube: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        objects = kubernetes.render(kube_plan({"egress": {"allow": allow}, "kubernetes": kube}))
        return named(objects, "NetworkPolicy", "-agent")["spec"], named(objects, "NetworkPolicy", "-bundle")["spec"]

    def test_agent_reaches_only_the_bundle_proxy_and_nothing_reaches_it(self) -> None:
        agent, _ = self.policies(["@anthropic", "db.example.com:5432"])
        self.assertEqual(agent["policyTypes"], ["Ingress", "Egress"])
        self.assertEqual(agent["ingress"], [])
        self.assertEqual(agent["egress"], [{
            "to": [{"podSelector": {"matchLabels": {f"{LABEL}.session": SESSION, f"{LABEL}.role": "bundle"}}}],
            "ports": [{"protocol": "TCP", "port": 8080}]}])
        self.assertNotIn("53", json.dumps(agent))

    def test_bundle_ingress_only_from_the_agent(self) -> None:
        _, bundle = self.policies([])
        self.assertEqual(bundle["ingress"], [{
            "from": [{"podSelector": {"matchLabels": {f"{LABEL}.session": SESSION, f"{LABEL}.role": "agent"}}}],
            "ports": [{"protocol": "TCP", "port": 8080}]}])

    def test_nothing_allowed_means_dns_only(self) -> None:
        _, bundle = self.policies([])
        self.assertEqual(len(bundle["egress"]), 1)
        self.assertEqual(bundle["egress"][0]["ports"], [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])

    def test_public_rules_open_their_ports_outside_the_cluster_ranges(self) -> None:
        _, bundle = self.policies(["@anthropic", "*.example.org", "db.example.com:5432", "ssh://github.com"])
        public = bundle["egress"][1]
        self.assertEqual([p["port"] for p in public["ports"]], [22, 80, 443, 5432])
        v4, v6 = public["to"]
        self.assertEqual(v4["ipBlock"]["cidr"], "0.0.0.0/0")
        self.assertIn("10.0.0.0/8", v4["ipBlock"]["except"])
        self.assertIn("169.254.0.0/16", v4["ipBlock"]["except"])
        self.assertEqual(v6["ipBlock"], {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]})

    def test_a_named_private_address_is_opened_alone(self) -> None:
        _, bundle = self.policies(["10.1.2.3:5432", "[fd12::5]:443"])
        extra = bundle["egress"][1:]
        self.assertEqual(extra, [
            {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]},
            {"to": [{"ipBlock": {"cidr": "fd12::5/128"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        ])

    def test_cluster_ranges_from_the_manifest(self) -> None:
        _, bundle = self.policies(["example.com", "10.1.2.3:80"], cluster_cidrs=["10.244.0.0/16", "10.96.0.0/12"])
        public = bundle["egress"][1]["to"]
        self.assertEqual(public[0]["ipBlock"]["except"], ["10.244.0.0/16", "10.96.0.0/12"])
        self.assertNotIn("except", public[1]["ipBlock"])
        # 10.1.2.3 is outside the cluster's ranges now: the public rule covers it, no extra rule
        self.assertEqual(len(bundle["egress"]), 2)


class SandboxTest(unittest.TestCase):
    def test_same_pod_spec_inside_a_sandbox(self) -> None:
        p = kube_plan()
        pod = kubernetes.agent_object(p, "pod")
        for version in kubernetes.SANDBOX_VERSIONS:
            box = kubernetes.agent_object(p, "sandbox", sandbox_version=version)
            self.assertEqual(box["apiVersion"], f"agents.x-k8s.io/{version}")
            self.assertEqual(box["kind"], "Sandbox")
            self.assertEqual(box["spec"]["podTemplate"]["spec"], pod["spec"])
            # the policies select the pod by these: the controller copies them onto it
            self.assertEqual(box["spec"]["podTemplate"]["metadata"]["labels"], pod["metadata"]["labels"])

    def test_unknown_kind_or_version(self) -> None:
        with self.assertRaises(ValueError):
            kubernetes.agent_object(kube_plan(), "deployment")
        with self.assertRaises(ValueError):
            kubernetes.agent_object(kube_plan(), "sandbox", sandbox_version="v2")

    def test_static_kind(self) -> None:
        self.assertEqual(kubernetes.static_agent_kind(kube_plan().settings()), "pod")
        p = kube_plan({"kubernetes": {"agent": "sandbox"}})
        self.assertEqual(named(kubernetes.render(p, agent_kind="sandbox"), "Sandbox", "-agent")["kind"], "Sandbox")


class PlanJsonTest(unittest.TestCase):
    def test_dry_run_json_has_the_objects(self) -> None:
        doc = json.loads(json.dumps(kube_plan().to_json()))
        self.assertEqual(doc["runtime"], "kubernetes")
        self.assertEqual(doc["kubernetes"]["settings"]["namespace"], "default")
        self.assertEqual([o["kind"] for o in doc["kubernetes"]["objects"]][-1], "Pod")
        self.assertEqual(doc["resources"]["networks"], [])
        self.assertNotIn("ssh", doc)


# ---- the executor, against a fake kubectl -----------------------------------------------------

VERSION = json.dumps({"clientVersion": {"gitVersion": "v1.37.2"}, "serverVersion": {"gitVersion": "v1.37.2"}})


class FakeKubectl:
    """Enough of kubectl for one session: answers by subcommand, records what was applied."""

    def __init__(self, exit_code: int = 3, ready: bool = True, crd: str = "") -> None:
        self.exit_code = exit_code
        self.ready = ready
        self.crd = crd
        self.applied: list[dict[str, Any]] = []
        self.deleted = False
        self.runner = FakeRunner(self.answer, attach=lambda argv: 0)

    def answer(self, argv: list[str]) -> tuple[int, str, str] | None:
        verb = argv[1]
        if verb == "version":
            return 0, VERSION, ""
        if verb == "get" and argv[2] == "namespace":
            return 0, "namespace/default\n", ""
        if verb == "get" and argv[2] == kubernetes_argv.SANDBOX_CRD:
            return (0, self.crd, "") if self.crd else (1, "", "NotFound")
        if verb in ("apply", "create"):
            return 0, "", ""
        if verb == "wait":
            return (0, "condition met", "") if self.ready else (1, "", "timed out waiting for the condition")
        if verb == "exec":
            return 0, json.dumps({"ca": PEM, "pipelock": True}), ""
        if verb == "get" and argv[2] == "service":
            return 0, json.dumps({"spec": {"clusterIP": "10.96.1.2"}}), ""
        if verb == "get" and argv[2] == "pods":
            state = {"terminated": {"exitCode": self.exit_code}}
            return 0, json.dumps({"items": [{"metadata": {"name": f"cb-demo-{SESSION}-agent"},
                                             "status": {"phase": "Running", "containerStatuses": [
                                                 {"name": "agent", "state": state}]}}]}), ""
        if verb == "delete":
            self.deleted = True
            return 0, "", ""
        if verb == "get":  # listings by label: empty once deleted
            return 0, json.dumps({"items": [] if self.deleted else [{"kind": "Pod", "metadata": {"name": "x"}}]}), ""
        if verb == "logs":
            return 0, "", ""
        return None

    def inputs(self, verb: str) -> list[dict[str, Any]]:
        return [json.loads(i) for a, i in self.runner.inputs if a[1] == verb and i is not None]


class ExecutorTest(unittest.TestCase):
    def run_session(self, fake: FakeKubectl, p: kubernetes.KubePlan | None = None, values: dict[str, str] | None = None
                    ) -> int:
        with mock.patch("sys.stdin.isatty", return_value=False), mock.patch.object(kubernetes_run.time, "sleep"):
            return kubernetes_run.start(p or kube_plan(), values or {}, fake.runner, "/tmp/claude-bottle-test-state")

    def test_whole_session_in_order_and_removed(self) -> None:
        fake = FakeKubectl(exit_code=3)
        with mock.patch.object(kubernetes_run, "finish"):
            self.assertEqual(self.run_session(fake), 3)
        verbs = [c[1] for c in fake.runner.calls]
        self.assertLess(verbs.index("apply"), verbs.index("wait"))
        self.assertLess(verbs.index("exec"), len(verbs) - 1 - verbs[::-1].index("apply"))
        bundle_doc, agent_doc = fake.inputs("apply")
        self.assertNotIn("Pod/agent", [o["kind"] + "/" + o["metadata"]["labels"][f"{LABEL}.role"]
                                       for o in bundle_doc["items"]])
        ca, agent = agent_doc["items"]
        self.assertEqual(ca["data"]["ca.pem"], PEM)
        env = {e["name"]: e["value"] for e in agent["spec"]["containers"][0]["env"]}
        self.assertEqual(env["HTTPS_PROXY"], "http://10.96.1.2:8080")
        deletes = [c for c in fake.runner.calls if c[1] == "delete"]
        self.assertTrue(deletes)
        self.assertIn(f"{LABEL}.session={SESSION}", deletes[0])
        self.assertNotIn("namespaces", deletes[0])
        self.assertIn("attach", verbs)

    def test_secret_values_reach_only_the_secret(self) -> None:
        fake = FakeKubectl(exit_code=0)
        p = kube_plan(SECRET_DOC, {"TOK": "hunter2"})
        with mock.patch.object(kubernetes_run, "finish"):
            self.assertEqual(self.run_session(fake, p, {"TOKEN": "hunter2"}), 0)
        bundle_doc, agent_doc = fake.inputs("apply")
        secret = next(o for o in bundle_doc["items"] if o["kind"] == "Secret")
        self.assertIn("hunter2", base64.b64decode(secret["data"]["secrets.json"]).decode())
        self.assertNotIn("hunter2", json.dumps(agent_doc))

    def test_bundle_never_ready_is_a_clear_error_and_still_removed(self) -> None:
        fake = FakeKubectl(ready=False)
        with mock.patch.object(kubernetes_run, "finish"), self.assertRaises(BottleError) as cm:
            self.run_session(fake)
        self.assertIn("did not become ready within 180 s", str(cm.exception))
        self.assertTrue(fake.deleted)
        self.assertNotIn("attach", [c[1] for c in fake.runner.calls])

    def test_sandbox_when_the_crd_is_served(self) -> None:
        fake = FakeKubectl(exit_code=0, crd="v1beta1 v1alpha1")
        with mock.patch.object(kubernetes_run, "finish"):
            self.run_session(fake)
        agent = fake.inputs("apply")[1]["items"][1]
        self.assertEqual((agent["apiVersion"], agent["kind"]), ("agents.x-k8s.io/v1beta1", "Sandbox"))
        first_delete = next(c for c in fake.runner.calls if c[1] == "delete")
        self.assertTrue(first_delete[2].startswith("sandboxes.agents.x-k8s.io,"), first_delete)

    def test_sandbox_asked_for_but_absent(self) -> None:
        fake = FakeKubectl()
        with self.assertRaises(RuntimeFailure) as cm:
            self.run_session(fake, kube_plan({"kubernetes": {"agent": "sandbox"}}))
        self.assertIn("serves no Sandbox API", str(cm.exception))
        self.assertNotIn("apply", [c[1] for c in fake.runner.calls])

    def test_missing_namespace_is_bad_input(self) -> None:
        fake = FakeKubectl()
        base = fake.answer
        fake.runner.handler = lambda a: (1, "", "NotFound") if a[1:3] == ["get", "namespace"] else base(a)
        with self.assertRaises(ManifestError) as cm:
            self.run_session(fake)
        self.assertEqual(cm.exception.field, "kubernetes.namespace")


class PreflightTest(unittest.TestCase):
    def check(self, answer: tuple[int, str, str]) -> str:
        with self.assertRaises(RuntimeFailure) as cm:
            kubernetes_run.preflight(FakeRunner(lambda a: answer), "prod")
        self.assertEqual(cm.exception.exit_code, 125)
        return str(cm.exception)

    def test_not_installed(self) -> None:
        self.assertIn("kubectl: command not found", self.check((127, "", "kubectl: command not found")))

    def test_too_old(self) -> None:
        old = json.dumps({"clientVersion": {"gitVersion": "v1.21.3"}})
        self.assertIn("v1.21.3 is too old", self.check((1, old, "")))

    def test_cluster_unreachable(self) -> None:
        client_only = json.dumps({"clientVersion": {"gitVersion": "v1.32.4"}})
        msg = self.check((1, client_only, "The connection to the server 127.0.0.1:6443 was refused"))
        self.assertIn("context 'prod' is not reachable", msg)
        self.assertIn("was refused", msg)

    def test_old_server(self) -> None:
        old = json.dumps({"clientVersion": {"gitVersion": "v1.30.0"}, "serverVersion": {"gitVersion": "v1.24.0"}})
        self.assertIn("runs Kubernetes v1.24.0", self.check((0, old, "")))

    def test_ok(self) -> None:
        self.assertEqual(kubernetes_run.preflight(FakeRunner(lambda a: (0, VERSION, "")), None),
                         ("v1.37.2", "v1.37.2"))


class ArgvTest(unittest.TestCase):
    def test_context_and_namespace_are_explicit(self) -> None:
        argv = kubernetes_argv.apply("prod", "team")
        self.assertEqual(argv[:3], ["kubectl", "--context", "prod"])
        self.assertIn("--server-side", argv)
        self.assertEqual(argv[argv.index("--namespace") + 1], "team")
        self.assertEqual(kubernetes_argv.apply(None, "team", dry_run=True)[-1], "--dry-run=server")
        self.assertEqual(kubernetes_argv.base(None), ["kubectl"])

    def test_attach_tty_only_when_there_is_one(self) -> None:
        self.assertIn("--tty", kubernetes_argv.attach(None, "ns", "p", True))
        self.assertNotIn("--tty", kubernetes_argv.attach(None, "ns", "p", False))


class ListSessionsTest(unittest.TestCase):
    def test_groups_by_session_with_the_launcher(self) -> None:
        items = [{"kind": "Pod", "metadata": {"name": "cb-a-1-bundle", "namespace": "ns",
                                              "labels": {f"{LABEL}.bottle": "a", f"{LABEL}.session": "1"},
                                              "annotations": {f"{LABEL}.launcher": "h:1"}},
                  "status": {"phase": "Running"}},
                 {"kind": "Service", "metadata": {"name": "cb-a-1-bundle", "namespace": "ns",
                                                  "labels": {f"{LABEL}.bottle": "a", f"{LABEL}.session": "1"}}}]
        runner = FakeRunner(lambda a: (0, json.dumps({"items": items if "pods" in a[2] else []}), ""))
        with mock.patch.object(kubernetes_run, "configured", return_value=True):
            (found,) = kubernetes_run.list_sessions(runner)
        self.assertEqual((found.name, found.session, found.namespace, found.launcher), ("a", "1", "ns", "h:1"))
        self.assertEqual(found.objects, (("Pod", "cb-a-1-bundle", "Running"), ("Service", "cb-a-1-bundle", "")))

    def test_no_cluster_configured_asks_nothing(self) -> None:
        runner = FakeRunner()
        with mock.patch.object(kubernetes_run, "configured", return_value=False):
            self.assertEqual(kubernetes_run.list_sessions(runner), [])
        self.assertEqual(runner.calls, [])


if __name__ == "__main__":
    unittest.main()
