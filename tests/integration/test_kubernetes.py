"""The Kubernetes runtime against a real control plane: etcd and kube-apiserver built from the Go
module proxy (tests/k8s/build.sh, cached) and started on loopback (tests/k8s/up.sh).

What this proves: every rendered object set, for every class of egress rule and every option, is
accepted by the real API server's validation and admission (server-side apply, dry run and for real,
into a namespace that enforces Pod Security "restricted"); broken renderings are refused; the
executor applies, reads the Service's real ClusterIP, and leaves nothing behind; `ps` and `cleanup`
find and remove a session by its labels. What it does not: no kubelet runs, so no container starts
and no NetworkPolicy is enforced here (the README says how far that goes, and what would).

Skips by name when Go is missing; under CLAUDE_BOTTLE_REQUIRE_DOCKER=1 that is a failure.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Any
from unittest import mock

from claude_bottle import kubernetes, kubernetes_argv, kubernetes_run, manifest, plan
from claude_bottle.commands import sessions
from claude_bottle.plan import LABEL
from claude_bottle.runner import Result, SubprocessRunner
from tests.integration.support import REPO, unavailable

GO = os.environ.get("GO", "/usr/local/go/bin/go")
NS = "bottles"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
SECRETS = {"TOKEN": {"from_env": "CB_K8S_TEST_TOKEN", "inject": {"hosts": ["api.anthropic.com"], "header": "x-api-key"}}}

# One manifest per class of rule (and per option), each rendered, applied and removed.
CASES: dict[str, dict[str, Any]] = {
    "nothing allowed": {"egress": {"allow": []}},
    "host": {"egress": {"allow": ["example.com"]}},
    "wildcard": {"egress": {"allow": ["*.example.org"]}},
    "host:port": {"egress": {"allow": ["db.example.com:5432"]}},
    "ssh": {"egress": {"allow": ["ssh://github.com", "ssh://git.example.com:2222"]}},
    "presets": {"egress": {"allow": ["@anthropic", "@github", "@npm", "@pypi", "@go"]}},
    "public address": {"egress": {"allow": ["93.184.215.14:8443", "[2606:4700::1111]:443"]}},
    "private addresses": {"egress": {"allow": ["10.1.2.3:5432", "192.168.7.7", "100.64.1.1:22", "[fd12::5]:443"]}},
    "secrets and dlp": {"egress": {"allow": ["@anthropic"], "dlp": {"default": "warn"}}, "secrets": SECRETS},
    "git workspace": {"egress": {"allow": ["@github"]},
                      "kubernetes": {"workspace": {"git": "https://github.com/o/r.git", "ref": "main"}}},
    "claim workspace": {"kubernetes": {"workspace": {"claim": "team-workspace"}, "storage": "1Gi"}},
    "runtime class and limits": {"resources": {"memory": "512m", "cpus": 0.5},
                                 "kubernetes": {"runtime_class_name": "gvisor"}},
    "cluster ranges": {"egress": {"allow": ["example.com", "10.1.2.3:80"]},
                       "kubernetes": {"cluster_cidrs": ["10.96.0.0/12", "10.244.0.0/16"]}},
}


class Cluster:
    """The control plane of this module's tests: started once, stopped at the end."""

    dir = ""
    kubectl = ""
    env: Any = None


def setUpModule() -> None:
    if not (os.path.exists(GO) or shutil.which("go")):
        unavailable(f"Go toolchain not found at {GO} (tests/k8s/build.sh builds kube-apiserver, etcd, kubectl)")
    if not shutil.which("openssl"):
        unavailable("openssl not found (tests/k8s/up.sh makes the cluster's certificates)")
    Cluster.dir = tempfile.mkdtemp(prefix="cb-k8s-")
    print("test_kubernetes: building (cached) and starting etcd + kube-apiserver on loopback...", file=sys.stderr)
    proc = subprocess.run(["bash", os.path.join(REPO, "tests/k8s/up.sh"), Cluster.dir], stdout=subprocess.PIPE,
                          text=True, timeout=2400)
    if proc.returncode != 0:
        raise AssertionError(f"tests/k8s/up.sh failed ({proc.returncode}); see its stderr above")
    kubeconfig = proc.stdout.strip().splitlines()[-1]
    with open(os.path.join(Cluster.dir, "kubectl.path")) as handle:
        Cluster.kubectl = handle.read().strip()
    # The launcher's own code runs `kubectl` from PATH with the user's kubeconfig: give it ours.
    Cluster.env = mock.patch.dict(os.environ, {"KUBECONFIG": kubeconfig,
                                               "PATH": os.path.dirname(Cluster.kubectl) + os.pathsep + os.environ["PATH"],
                                               "CB_K8S_TEST_TOKEN": "sk-test-value"})
    Cluster.env.start()
    k("create", "namespace", NS)
    # What a cluster's controllers and installer would have done: PSA "restricted" on the namespace,
    # its default ServiceAccount (a controller-manager's job), the RuntimeClass, agent-sandbox's CRD.
    k("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    k("create", "serviceaccount", "default", "--namespace", NS)
    apply_json({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"},
                "handler": "runsc"})
    with open(os.path.join(REPO, "tests/k8s/sandbox-crd.json"), "rb") as handle:
        k("apply", "--server-side", "-f", "-", input=handle.read())
    k("wait", "--for=condition=Established", "--timeout=60s", f"crd/{kubernetes_argv.SANDBOXES}")


def tearDownModule() -> None:
    if Cluster.env is not None:
        Cluster.env.stop()
    if Cluster.dir:
        subprocess.run(["bash", os.path.join(REPO, "tests/k8s/down.sh"), Cluster.dir], timeout=60)
        shutil.rmtree(Cluster.dir, ignore_errors=True)


def k(*argv: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([Cluster.kubectl, *argv], input=input, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(argv)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc


def apply_json(obj: dict[str, Any], *extra: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return k("apply", "--server-side", "--field-manager=claude-bottle", "-f", "-", *extra,
             input=json.dumps(obj).encode(), check=check)


def kube_plan(doc: dict[str, Any]) -> kubernetes.KubePlan:
    doc = {"name": "itest", **copy.deepcopy(doc), "runtime": "kubernetes"}
    doc.setdefault("kubernetes", {}).setdefault("namespace", NS)
    m = manifest.parse(doc, os.path.join(REPO, "bottle.json"))
    from claude_bottle import session

    base = plan.build(m, session.new_id(), launcher="itest-host:4242", environ=dict(os.environ),
                      placeholder_seed=session.placeholder_seed())
    return kubernetes.adapt(base, m)


def labelled(p: kubernetes.KubePlan, namespace: str = NS) -> list[str]:
    kinds = (kubernetes_argv.SANDBOXES, *kubernetes_argv.KINDS)
    out = k(*kubernetes_argv.list_by_label(None, namespace, f"{LABEL}.session={p.session}", kinds)[1:]).stdout
    return [f"{i['kind']}/{i['metadata']['name']}" for i in json.loads(out or b"{}").get("items", [])]


class ApplyEveryRenderingTest(unittest.TestCase):
    def render(self, p: kubernetes.KubePlan, **kw: Any) -> list[dict[str, Any]]:
        values = b'{"TOKEN": "sk-test-value"}' if p.secrets else None
        return kubernetes.render(p, ca_pem=PEM, secrets_json=values, **kw)

    def round_trip(self, p: kubernetes.KubePlan, objects: list[dict[str, Any]]) -> None:
        doc = kubernetes.as_list(objects)
        dry = apply_json(doc, "--dry-run=server", check=False)
        self.assertEqual(dry.returncode, 0, dry.stderr.decode())
        self.assertEqual(labelled(p), [], "a server-side dry run stored something")
        real = apply_json(doc, check=False)
        self.assertEqual(real.returncode, 0, real.stderr.decode())
        self.assertEqual(len(labelled(p)), len(objects))
        problems = kubernetes_run.teardown(SubprocessRunner(), None, NS, p.session,
                                           any(o["kind"] == "Sandbox" for o in objects), False)
        self.assertEqual(problems, [])
        self.assertEqual(labelled(p), [])

    def test_every_class_of_rule_and_option(self) -> None:
        for name, doc in CASES.items():
            with self.subTest(case=name):
                p = kube_plan(doc)
                self.round_trip(p, self.render(p))

    def test_static_rendering_as_render_prints_it(self) -> None:
        p = kube_plan(CASES["secrets and dlp"])
        self.round_trip(p, kubernetes.render(p))  # no CA yet, no values: still a valid, appliable set

    def test_agent_as_a_sandbox_in_both_served_versions(self) -> None:
        for version in kubernetes.SANDBOX_VERSIONS:
            with self.subTest(version=version):
                p = kube_plan(CASES["presets"])
                objects = self.render(p, agent_kind="sandbox", sandbox_version=version)
                self.assertEqual(objects[-1]["apiVersion"], f"agents.x-k8s.io/{version}")
                self.round_trip(p, objects)

    def test_own_namespace_is_created_and_deleted(self) -> None:
        p = kube_plan({"kubernetes": {"namespace": "cb-itest-own", "create_namespace": True}})
        objects = self.render(p)
        self.assertEqual(objects[0]["kind"], "Namespace")
        k("create", "-f", "-", input=json.dumps(objects[0]).encode())
        k("create", "serviceaccount", "default", "--namespace", "cb-itest-own")  # the controller's job elsewhere
        real = apply_json(kubernetes.as_list(objects[1:]), check=False)
        self.assertEqual(real.returncode, 0, real.stderr.decode())
        self.assertEqual(kubernetes_run.teardown(SubprocessRunner(), None, "cb-itest-own", p.session, False, True), [])
        self.assertEqual(labelled(p, "cb-itest-own"), [])
        # No namespace controller runs here to finish the deletion: it is Terminating, by our label.
        got = json.loads(k("get", "namespace", "cb-itest-own", "-o", "json", check=False).stdout or b"{}")
        self.assertTrue(not got or got["metadata"].get("deletionTimestamp"), got)

    def test_render_command_output_applies(self) -> None:
        path = os.path.join(Cluster.dir, "render.json")
        with open(path, "w") as handle:
            json.dump({"name": "itest", "runtime": "kubernetes", "egress": {"allow": ["@anthropic"]},
                       "kubernetes": {"namespace": NS}}, handle)
        out = subprocess.run([sys.executable, "-m", "claude_bottle", "render", "--target", "kubernetes", path],
                             capture_output=True, cwd=REPO, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        self.assertIn(b"CA ConfigMap", out.stderr)
        dry = k("apply", "--server-side", "--dry-run=server", "-f", "-", input=out.stdout, check=False)
        self.assertEqual(dry.returncode, 0, dry.stderr.decode())


def _agent(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return objects[-1]["spec"]["containers"][0]


def _policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-bundle"))


# Each breaks one thing; the real server must refuse the set, and the message says why.
BROKEN: dict[str, tuple[Any, str]] = {
    "privileged agent": (lambda o: _agent(o)["securityContext"].update(privileged=True), "privileged"),
    "capabilities kept": (lambda o: _agent(o)["securityContext"].pop("capabilities"), "violates PodSecurity"),
    "escalation allowed": (lambda o: _agent(o)["securityContext"].update(allowPrivilegeEscalation=True),
                           "violates PodSecurity"),
    "root agent": (lambda o: (_agent(o)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
                              o[-1]["spec"]["securityContext"].update(runAsUser=0, runAsNonRoot=False)),
                   "violates PodSecurity"),
    "no seccomp": (lambda o: (_agent(o)["securityContext"].pop("seccompProfile"),
                              o[-1]["spec"]["securityContext"].pop("seccompProfile")), "violates PodSecurity"),
    "host path": (lambda o: o[-1]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
                  "violates PodSecurity"),
    "launcher as a label": (lambda o: o[-1]["metadata"]["labels"].update({f"{LABEL}.launcher": "host:4242"}),
                            "Invalid value"),
    "except outside its cidr": (lambda o: _policy(o)["spec"]["egress"][1]["to"][0]["ipBlock"].update(
        {"except": ["fd00::/8"]}), "except"),
    "port out of range": (lambda o: _policy(o)["spec"]["egress"][1]["ports"].append({"protocol": "TCP", "port": 70000}),
                          "port"),
    "service name too long": (lambda o: next(x for x in o if x["kind"] == "Service")["metadata"].update(
        name="cb-" + "a" * 70), "must be no more than 63"),
    "secret not base64": (lambda o: next(x for x in o if x["kind"] == "Secret")["data"].update(
        {"secrets.json": "not base64!"}), "illegal base64"),
}


class BrokenRenderingsTest(unittest.TestCase):
    def test_each_is_refused(self) -> None:
        for name, (breaks, why) in BROKEN.items():
            with self.subTest(case=name):
                p = kube_plan({"egress": {"allow": ["@anthropic"]}, "secrets": SECRETS})
                objects = kubernetes.render(p, ca_pem=PEM, secrets_json=b"{}")
                breaks(objects)
                dry = apply_json(kubernetes.as_list(objects), "--dry-run=server", check=False)
                self.assertNotEqual(dry.returncode, 0, f"{name}: accepted")
                self.assertIn(why, dry.stderr.decode(), name)
                self.assertEqual(labelled(p), [])

    def test_sandbox_without_a_pod_template(self) -> None:
        p = kube_plan({})
        box = kubernetes.agent_object(p, "sandbox")
        del box["spec"]["podTemplate"]
        dry = apply_json(box, "--dry-run=server", check=False)
        self.assertNotEqual(dry.returncode, 0)
        self.assertIn("podTemplate", dry.stderr.decode())


class KubeletStandIn(SubprocessRunner):
    """The real kubectl and API server for everything, except what only a kubelet could answer (no node
    runs here): the bundle's readiness and its CA, and the agent's container having exited 7."""

    def __init__(self) -> None:
        self.service_ip = ""
        self.applied: list[bytes] = []

    def run(self, argv: Any, *, input: bytes | None = None, timeout: float | None = None) -> Result:
        argv = list(argv)
        if argv[1] == "wait":
            return Result(tuple(argv), 0, "pod condition met\n", "")
        if argv[1] == "exec":
            return Result(tuple(argv), 0, json.dumps({"ca": PEM, "pipelock": True}), "")
        if argv[1] == "logs":
            return Result(tuple(argv), 0, "", "")
        if argv[1] == "apply" and input is not None:
            self.applied.append(input)
        result = super().run(argv, input=input, timeout=timeout)
        if argv[1:3] == ["get", "service"] and result.returncode == 0:
            self.service_ip = json.loads(result.stdout)["spec"]["clusterIP"]
        if argv[1:3] == ["get", "pods"] and "org.claude-bottle.role=agent" in argv[-1] and result.returncode == 0:
            doc = json.loads(result.stdout)
            for pod in doc["items"]:  # the real pod, with the status a kubelet would have written
                pod["status"] = {"phase": "Failed", "containerStatuses": [
                    {"name": "agent", "state": {"terminated": {"exitCode": 7}}}]}
            return Result(result.argv, 0, json.dumps(doc), result.stderr)
        return result


class ExecutorTest(unittest.TestCase):
    def test_preflight_against_the_real_server(self) -> None:
        client, server = kubernetes_run.preflight(SubprocessRunner(), None)
        self.assertTrue(client.startswith("v1.") and server.startswith("v1.37"), (client, server))

    def test_session_applies_reads_the_cluster_ip_and_leaves_nothing(self) -> None:
        p = kube_plan({"egress": {"allow": ["@anthropic"]}, "secrets": SECRETS, "kubernetes": {"agent": "pod"}})
        runner = KubeletStandIn()
        with mock.patch.object(kubernetes_run, "finish"), mock.patch("sys.stdin.isatty", return_value=False):
            status = kubernetes_run.start(p, {"TOKEN": "sk-test-value"}, runner, Cluster.dir)
        self.assertEqual(status, 7)
        self.assertTrue(runner.service_ip.startswith("10.96."), runner.service_ip)
        agent = json.loads(runner.applied[-1])["items"][-1]
        env = {e["name"]: e["value"] for e in agent["spec"]["containers"][0]["env"]}
        self.assertEqual(env["HTTPS_PROXY"], f"http://{runner.service_ip}:8080")
        self.assertEqual(labelled(p), [])

    def test_auto_picks_the_served_sandbox_and_removes_it(self) -> None:
        # The CRD is served here, so "auto" makes a Sandbox; with no agent-sandbox controller to make
        # its pod, the bounded wait ends with a clear error, and the Sandbox goes with the rest.
        p = kube_plan({"egress": {"allow": ["@anthropic"]}})
        runner = KubeletStandIn()
        with mock.patch.object(kubernetes_run, "finish"), mock.patch.object(kubernetes_run, "AGENT_TIMEOUT", 3.0), \
                mock.patch("sys.stdin.isatty", return_value=False), self.assertRaises(kubernetes_run.BottleError) as cm:
            kubernetes_run.start(p, {}, runner, Cluster.dir)
        self.assertIn("the agent did not start within 3 s", str(cm.exception))
        agent = json.loads(runner.applied[-1])["items"][-1]
        self.assertEqual((agent["kind"], agent["apiVersion"]), ("Sandbox", "agents.x-k8s.io/v1beta1"))
        self.assertEqual(labelled(p), [])

    def test_missing_namespace_refused_before_anything(self) -> None:
        p = kube_plan({"kubernetes": {"namespace": "no-such-namespace"}})
        with self.assertRaises(manifest.ManifestError):
            kubernetes_run.start(p, {}, KubeletStandIn(), Cluster.dir)


class SessionsCommandTest(unittest.TestCase):
    def test_ps_finds_and_cleanup_removes_by_label(self) -> None:
        p = kube_plan({"egress": {"allow": ["example.com"]}})
        self.assertEqual(apply_json(kubernetes.as_list(kubernetes.render(p, ca_pem=PEM))).returncode, 0)
        runner = SubprocessRunner()
        found = sessions.find_all(runner, docker=False)
        self.assertIn(p.session, found)
        bottle = found[p.session]
        self.assertEqual((bottle.name, bottle.launcher), ("itest", "itest-host:4242"))
        self.assertEqual(bottle.cluster[0].namespace, NS)
        self.assertIn(("Pod", f"cb-itest-{p.session}-agent", "Pending"), bottle.cluster[0].objects)
        with mock.patch("builtins.print"):
            sessions.cleanup(runner, "itest", force=True, docker=False)
        self.assertEqual(labelled(p), [])
        self.assertNotIn(p.session, sessions.find_all(runner, docker=False))


if __name__ == "__main__":
    unittest.main()


# ---- opt-in: a one-node cluster that runs the pods and enforces the policies -------------------

CANARY = os.environ.get("CLAUDE_BOTTLE_RUN_CANARIES") == "1"
# Every pod runs this with its role's part: TCP listeners, a UDP echo, then probes of the others.
# "open" means a TCP connect (or a UDP echo) got through; anything else within 3 s is "blocked".
PROBE = r"""
import json, os, socket, sys, threading, time
def serve_tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    while True: s.accept()[0].close()
def serve_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(64); s.sendto(data, peer)
def tcp(host, port):
    try: socket.create_connection((host, port), timeout=3).close(); return "open"
    except OSError as e: return f"blocked ({type(e).__name__})"
def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    try: s.sendto(b"ping", (host, port)); s.recvfrom(64); return "open"
    except OSError as e: return f"blocked ({type(e).__name__})"
for port in map(int, filter(None, os.environ.get("TCP", "").split(","))):
    threading.Thread(target=serve_tcp, args=(port,), daemon=True).start()
threading.Thread(target=serve_udp, args=(5353,), daemon=True).start()
time.sleep(float(os.environ.get("DELAY", "0")))
out = {}
for item in filter(None, os.environ.get("PROBES", "").split(",")):
    kind, name, port = item.split(":")
    host = os.environ[name]
    out[f"{kind} {name}:{port}"] = (tcp if kind == "tcp" else udp)(host, int(port))
print("PROBES " + json.dumps(out, sort_keys=True), flush=True)
time.sleep(float(os.environ.get("LINGER", "300")))  # serving the others' probes; teardown ends it
"""


def _probe_container(c: dict[str, Any], env: dict[str, str]) -> None:
    c["command"] = ["python3", "-c", PROBE]
    c.pop("args", None)
    c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    # Inside the pod, like the bundle's own probe: a probe from the node would be policy's business too.
    port = int(env["TCP"].split(",")[0])
    c["readinessProbe"] = {"exec": {"command": ["python3", "-c", f"import socket; socket.create_connection("
                                                f"('127.0.0.1', {port}), 1)"]}, "periodSeconds": 1}


@unittest.skipUnless(CANARY, "the one-node enforcement canary is opt-in: set CLAUDE_BOTTLE_RUN_CANARIES=1 "
                             "(tests/k8s/node.sh: containerd, kubelet, kube-network-policies)")
class EnforcementCanaryTest(unittest.TestCase):
    """The rendered NetworkPolicies on a node that enforces them (kube-network-policies): the bottle's
    pods, labels, security and policies as rendered; only their processes are probes (python3 from
    the sidecars image) instead of mitmdump and the agent, so the test says what the network allows."""

    node = ""

    @classmethod
    def setUpClass(cls) -> None:
        image = os.environ.get("CLAUDE_BOTTLE_K8S_TEST_IMAGE") or next(iter(subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "claude-bottle/sidecars"],
            capture_output=True, text=True, timeout=60).stdout.split()), "")
        if not image:
            unavailable("no claude-bottle/sidecars image in Docker for the node's pods (set CLAUDE_BOTTLE_K8S_TEST_IMAGE)")
        cls.image = image
        proc = subprocess.run(["bash", os.path.join(REPO, "tests/k8s/node.sh"), Cluster.dir, image],
                              stdout=subprocess.PIPE, text=True, timeout=1800)
        if proc.returncode == 4:  # the host cannot enforce at all (node.sh said why): nothing to prove here
            raise unittest.SkipTest("tests/k8s/node.sh: this kernel cannot run kube-network-policies (no CONFIG_NFT_QUEUE)")
        if proc.returncode != 0:
            raise AssertionError(f"tests/k8s/node.sh failed ({proc.returncode}); see its stderr above")
        cls.node = proc.stdout.strip().splitlines()[-1]

    def pod(self, obj: dict[str, Any], env: dict[str, str]) -> str:
        obj["spec"]["nodeName"] = self.node
        obj["spec"]["containers"][0]["image"] = self.image
        obj["spec"]["containers"][0]["imagePullPolicy"] = "Never"
        obj["spec"].pop("initContainers", None)
        _probe_container(obj["spec"]["containers"][0], env)
        apply_json(obj)
        name = obj["metadata"]["name"]
        k("wait", "--namespace", NS, f"pod/{name}", "--for=condition=Ready", "--timeout=120s")
        return json.loads(k("get", "pod", name, "--namespace", NS, "-o", "json").stdout)["status"]["podIP"]

    def result(self, name: str) -> dict[str, str]:
        """The pod's probe line, from the kubelet's log file (the node has no address the API server
        could fetch logs from: see tests/k8s/node.sh)."""
        import glob
        import time

        logs = ""
        for _ in range(60):
            files = glob.glob(os.path.join(Cluster.dir, "podlogs", f"{NS}_{name}_*", "*", "*.log"))
            logs = "".join(open(f, encoding="utf-8", errors="replace").read() for f in files)
            line = next((x for x in logs.splitlines() if " PROBES " in x), None)
            if line:
                return dict(json.loads(line.split(" PROBES ", 1)[1]))
            time.sleep(1)
        raise AssertionError(f"{name} printed no probe results: {logs[-2000:]}")

    def test_the_policies_hold(self) -> None:
        p = kube_plan({"egress": {"allow": ["example.com"]}, "kubernetes": {"agent": "pod"}})
        objects = kubernetes.render(p, ca_pem=PEM)
        self.addCleanup(kubernetes_run.teardown, SubprocessRunner(), None, NS, p.session, False, False)
        for obj in objects:
            if obj["kind"] in ("ConfigMap", "NetworkPolicy", "Service"):
                apply_json(obj)
        bundle = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-bundle"))
        agent = copy.deepcopy(objects[-1])
        # Two pods outside the bottle, labelled for teardown but selected by no policy.
        outsider = copy.deepcopy(agent)
        outsider["metadata"]["name"] = outsider["metadata"]["name"].replace("-agent", "-outsider")
        outsider["metadata"]["labels"][f"{LABEL}.role"] = "outsider"
        ips = {"OUTSIDER": self.pod(outsider, {"TCP": "8080"})}
        ips["BUNDLE"] = self.pod(bundle, {"TCP": "8080,9090", "OUTSIDER": ips["OUTSIDER"], "DELAY": "8",
                                          "PROBES": "tcp:OUTSIDER:8080"})
        ips["AGENT"] = self.pod(agent, {"TCP": "7000", **ips,
                                        "PROBES": "tcp:BUNDLE:8080,tcp:BUNDLE:9090,tcp:OUTSIDER:8080,"
                                                  "udp:OUTSIDER:5353,udp:BUNDLE:5353"})
        peer = copy.deepcopy(outsider)
        peer["metadata"]["name"] = peer["metadata"]["name"].replace("-outsider", "-peer")
        self.pod(peer, {"TCP": "8080", **ips,
                        "PROBES": "tcp:AGENT:7000,udp:AGENT:5353,tcp:BUNDLE:8080,tcp:OUTSIDER:8080,"
                                  "udp:OUTSIDER:5353"})
        seen = {"agent": self.result(agent["metadata"]["name"]), "peer": self.result(peer["metadata"]["name"]),
                "bundle": self.result(bundle["metadata"]["name"])}
        print(f"\nenforcement canary: {json.dumps(seen, indent=1)}", file=sys.stderr)
        want = {
            "agent": {"tcp BUNDLE:8080": "open", "tcp BUNDLE:9090": "blocked", "tcp OUTSIDER:8080": "blocked",
                      "udp OUTSIDER:5353": "blocked", "udp BUNDLE:5353": "blocked"},
            "peer": {"tcp AGENT:7000": "blocked", "udp AGENT:5353": "blocked", "tcp BUNDLE:8080": "blocked",
                     "tcp OUTSIDER:8080": "open", "udp OUTSIDER:5353": "open"},
            "bundle": {"tcp OUTSIDER:8080": "blocked"},
        }
        got = {role: {probe: r.split(" ")[0] for probe, r in results.items()} for role, results in seen.items()}
        self.assertEqual(got, want)
