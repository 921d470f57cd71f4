"""Integration: a full smolmachines `start` with the fake smolvm (tests/fakes/smolvm) and the real Docker
bundle on its pinned 192.168.N.0/24.

The fake runs the guest command on the host, which is where TSI connects from, so the probe below
sees the bundle exactly as a real VM's traffic would: at <bundle-ip>:8080, from the host. The probe
only talks to that address (ours); the hosts it asks for are refused by the bundle's policy before any
name is resolved or any connection is made. Needs the sidecars image (`python3 -m claude_bottle build
--print-tag`, built by .ci/build-images): skipped without it or without Docker, unless
CLAUDE_BOTTLE_REQUIRE_DOCKER=1, which turns those skips into failures.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr
from unittest import mock
from urllib.parse import urlsplit

from claude_bottle import addressing, cli, paths, smolvm
from claude_bottle.plan import LABEL, PROXY_PORT
from tests import fakes
from tests.integration import support

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRE = os.environ.get("CLAUDE_BOTTLE_REQUIRE_DOCKER") == "1"

PROBE = r"""
import json, os, urllib.error, urllib.request, http.client
from urllib.parse import urlsplit
out = {"env": {k: os.environ[k] for k in sorted(os.environ)}}
proxy = os.environ["HTTP_PROXY"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
for key, url in (("blocked_host", "http://blocked.example/"), ("blocked_port", "http://allowed.example:81/")):
    try:
        with opener.open(url, timeout=20) as reply:
            out[key] = [reply.status, reply.read(200).decode()]
    except urllib.error.HTTPError as err:
        out[key] = [err.code, err.read(200).decode()]
where = urlsplit(proxy)
conn = http.client.HTTPConnection(where.hostname, where.port, timeout=20)
conn.request("CONNECT", "blocked.example:443")
reply = conn.getresponse()
out["connect"] = [reply.status, reply.read(200).decode()]
with open(os.environ["SSL_CERT_FILE"]) as handle:
    out["ca"] = handle.read()
with open("result.json", "w") as handle:
    json.dump(out, handle)
raise SystemExit(7)
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, cwd=ROOT)


def _remove_labelled(label: str) -> None:
    ids = _run("docker", "ps", "--all", "--quiet", "--filter", f"label={label}").stdout.split()
    if ids:
        _run("docker", "rm", "--force", "--volumes", *ids)
    nets = _run("docker", "network", "ls", "--quiet", "--filter", f"label={label}").stdout.split()
    if nets:
        _run("docker", "network", "rm", *nets)


class SmolmachinesStartTest(unittest.TestCase):
    def need(self, condition: bool, reason: str) -> None:
        if not condition:
            if REQUIRE:
                self.fail(f"{reason} (CLAUDE_BOTTLE_REQUIRE_DOCKER=1)")
            self.skipTest(reason)

    def setUp(self) -> None:
        try:
            docker_ok = _run("docker", "version", "--format", "{{.Server.Version}}").returncode == 0
        except FileNotFoundError:
            docker_ok = False
        self.need(docker_ok, "Docker is not reachable")
        self.image = _run(sys.executable, "-m", "claude_bottle", "build", "--print-tag").stdout.strip()
        present = _run("docker", "image", "inspect", self.image).returncode == 0
        self.need(present, f"sidecars image {self.image} is missing: run .ci/build-images (or set "
                           "CLAUDE_BOTTLE_SIDECARS_IMAGE to a built one)")
        self.name = f"it-smol-{secrets.token_hex(3)}"
        self.label = f"{LABEL}.bottle={self.name}"
        self.folder = tempfile.mkdtemp(prefix="claude-bottle-it-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.addCleanup(_remove_labelled, self.label)  # runs first: nothing of ours outlives a failure
        self.fake_state = os.path.join(self.folder, "fake-smolvm")
        self.state = os.path.join(self.folder, "xdg-state")
        self.workspace = os.path.join(self.folder, "ws")
        os.mkdir(self.workspace)
        env = fakes.smolvm_env(self.fake_state)
        overrides = {"PATH": env["PATH"], "FAKE_SMOLVM_STATE": self.fake_state, "XDG_STATE_HOME": self.state,
                     "CLAUDE_BOTTLE_SIDECARS_IMAGE": self.image}
        if not support.pipelock_in_bundle():  # a machine without a hand-built pipelock; mitmdump still gates
            overrides["CLAUDE_BOTTLE_ALLOW_NO_PIPELOCK"] = "1"
        patches = [
            mock.patch.dict(os.environ, overrides),
            mock.patch.object(smolvm, "check_hypervisor"),  # the fake needs no KVM
        ]
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)
        self.manifest = os.path.join(self.folder, "bottle.json")
        with open(self.manifest, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "name": self.name, "runtime": "smolmachines", "workspace": "ws",
                       # The fake never runs the image; any local image gives the artifact cache an id.
                       "agent": {"image": self.image, "command": ["python3", "-c", PROBE]},
                       "egress": {"allow": ["allowed.example"]}}, handle)

    def start(self, *extra: str) -> tuple[int, str]:
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            code = cli.main(["start", self.manifest, *extra])
        return code, stderr.getvalue()

    def assertNothingLeft(self) -> None:
        for kind in ("ps --all", "network ls"):
            listed = _run("docker", *kind.split(), "--quiet", "--filter", f"label={self.label}")
            self.assertEqual(listed.stdout.split(), [], f"docker {kind} still lists {self.label}")
        self.assertEqual(fakes.smolvm_machines(self.fake_state), [])
        # The artifact cache and the sessions' audit logs stay; nothing else does.
        self.assertEqual(sorted(os.listdir(os.path.join(self.state, "claude-bottle"))),
                         sorted([paths.SMOLVM_CACHE_DIR, paths.SESSIONS_DIR]))

    def test_start_runs_the_agent_against_the_bundle_and_removes_everything(self) -> None:
        code, stderr = self.start()
        self.assertEqual(code, 7, stderr)
        with open(os.path.join(self.workspace, "result.json"), encoding="utf-8") as handle:
            result = json.load(handle)
        env = result["env"]
        proxy = env["HTTPS_PROXY"]
        self.assertRegex(proxy, rf"^http://192\.168\.\d+\.2:{PROXY_PORT}$")
        self.assertEqual(env["HTTP_PROXY"], proxy)
        self.assertEqual(set(env) - {"PWD", "SHLVL", "_", "LC_CTYPE"},
                         {"PATH", "HOME", "CLAUDE_BOTTLE", "CLAUDE_BOTTLE_SESSION", "SSL_CERT_FILE",
                          "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE",
                          "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                          "all_proxy", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER"})
        self.assertEqual(result["blocked_host"][0], 403)
        self.assertIn("claude-bottle: blocked: host not in allowlist", result["blocked_host"][1])
        self.assertEqual(result["blocked_port"][0], 403)
        self.assertIn("port 81 not allowed", result["blocked_port"][1])
        self.assertEqual(result["connect"][0], 403)
        self.assertIn("BEGIN CERTIFICATE", result["ca"])
        self.assertNotIn("PRIVATE", result["ca"])
        calls = fakes.smolvm_calls(self.fake_state)
        verbs = [c[1] if c[0] in ("machine", "pack") else c[0] for c in calls]
        self.assertEqual(verbs, ["--version", "create", "create", "start", "exec", "stop", "delete"])
        create = calls[2]
        smolfile_path = create[create.index("--smolfile") + 1]
        self.assertTrue(smolfile_path.startswith(os.path.join(self.state, "claude-bottle") + os.sep))
        self.assertIn(f"{self.workspace}:/workspace", create)
        self.assertNothingLeft()

        # Again, on a smolvm that refuses --from with --smolfile: no VM without its allowlist, nothing left
        # behind, and the artifact (same image id) is not packed twice.
        os.environ["FAKE_SMOLVM_FROM_CONFLICTS"] = "1"
        code, stderr = self.start()
        self.assertEqual(code, 125, stderr)
        self.assertIn("without its network allowlist", stderr)
        calls = fakes.smolvm_calls(self.fake_state)
        self.assertEqual(sum(c[:2] == ["pack", "create"] for c in calls), 1)
        self.assertNothingLeft()

    def test_subnet_clash_moves_the_bundle(self) -> None:
        first = addressing.smolmachines_bundle_subnet(self.name)[0]
        clash = _run("docker", "network", "create", "--label", self.label, "--label", support.TEST_LABEL,
                     "--subnet", first, f"{self.name}-clash")
        self.need(clash.returncode == 0, f"could not create a network on {first}: {clash.stderr.strip()}")
        code, stderr = self.start("--", "python3", "-c",
                                  "import os; open('proxy.txt', 'w').write(os.environ['HTTPS_PROXY'])")
        self.assertEqual(code, 0, stderr)
        self.assertIn(f"{first} is taken by a Docker network or host route", stderr)
        with open(os.path.join(self.workspace, "proxy.txt"), encoding="utf-8") as handle:
            host = urlsplit(handle.read()).hostname or ""
        moved = addressing.first_free_subnet(self.name, [first])
        self.assertEqual(host, moved[2])
        self.assertFalse(ipaddress.ip_address(host) in ipaddress.ip_network(first))
        _run("docker", "network", "rm", f"{self.name}-clash")
        self.assertNothingLeft()

    def test_refused_version_creates_nothing(self) -> None:
        os.environ["FAKE_SMOLVM_VERSION"] = "1.1.2"
        code, stderr = self.start()
        self.assertEqual(code, 125)
        self.assertIn("--unsafe-allow-smolvm-egress-defects", stderr)
        self.assertEqual([c[0] for c in fakes.smolvm_calls(self.fake_state)], ["--version"])
        self.assertFalse(os.path.exists(os.path.join(self.state, "claude-bottle")))
        listed = _run("docker", "ps", "--all", "--quiet", "--filter", f"label={self.label}")
        self.assertEqual(listed.stdout.split(), [])


if __name__ == "__main__":
    unittest.main()
