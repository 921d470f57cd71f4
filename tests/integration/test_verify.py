"""`claude-bottle verify` on real bottles, both ways: a sound bottle passes, and the same bottle with a
hole opened on purpose fails, naming each way out the hole gives.

Everything aimed at is a container of ours on a network of ours:
- "the internet" (the bundle's egress.network) is an internal network holding ALLOWED (HTTP, and HTTPS
  with a test CA the manifest trusts) and QUIET (allowed, but listening on nothing: "unreachable");
- "the outside" is a server on another internal network, HOLE, that answers TCP 80/443 over IPv4 and
  IPv6, echoes UDP on 53, answers ping (its kernel does), and carries the --outside-name as an alias.

The hole is made by the test alone, so product code carries no test switch: the launcher runs with a
`docker` wrapper first on its PATH that passes every call through to the real docker and, right after
the agent container is created (before it starts), takes it off "none" (the agent has no network) and
connects it to HOLE. That is a real route around
the bundle: the agent then reaches the outside server directly. HOLE is internal and gives the host no
address on it (inhibit_ipv4), so even through the hole nothing can leave the machine: the battery's
fixed targets (the metadata address) meet a gateway that does not exist, as in a sound bottle.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import unittest
from typing import Any

from tests.integration import support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
BASE_IMAGE = os.environ.get("CLAUDE_BOTTLE_TEST_BASE_IMAGE", "claude-bottle/base:bookworm")  # no python3 in it
OUTSIDE_SERVER = r"""
import socket, threading
def tcp(port, family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(64)
    while True:
        s.accept()[0].close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
threads = [threading.Thread(target=tcp, args=(p, f), daemon=True) for p in (80, 443)
           for f in (socket.AF_INET, socket.AF_INET6)] + [threading.Thread(target=udp, args=(53,), daemon=True)]
for t in threads:
    t.start()
print("outside ready", flush=True)
threads[0].join()
"""
# Test-only, and only on the PATH of the launcher this test runs: the real docker, then the hole.
WRAPPER = """#!/bin/sh
"{real}" "$@"; rc=$?
if [ "$rc" = 0 ] && [ "$1" = create ]; then
  name=""; agent=""; prev=""
  for a in "$@"; do
    [ "$prev" = --name ] && name=$a
    [ "$a" = org.claude-bottle.role=agent ] && agent=1
    prev=$a
  done
  if [ -n "$agent" ]; then
    # The agent is made with no network ("none"), which Docker joins to no other: leave it, then join HOLE.
    "{real}" network disconnect none "$name" >&2 || exit 70
    "{real}" network connect "{hole}" "$name" >&2 || exit 70
    echo "connected $name to {hole}" >> "{log}"
  fi
fi
exit $rc
"""
HOLE_CLASSES = {"direct TCP", "direct UDP (a DNS query)", "ICMP echo", "DNS lookup", "IPv6"}


def by_check(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for check in report["checks"]:
        out.setdefault(check["check"], []).append(check)
    return out


class VerifyBothWays(unittest.TestCase):
    sound: subprocess.CompletedProcess[str]
    holed: subprocess.CompletedProcess[str]

    @classmethod
    def setUpClass(cls) -> None:
        support.require_images()
        cls.scratch = s = support.Scratch()
        try:
            cls._start(s)
        except BaseException:
            s.close()
            raise

    @classmethod
    def _start(cls, s: support.Scratch) -> None:
        inet = s.network(support.unique_name("cbtest-vinet"), "--internal")
        v6 = f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}:1::/64"
        cls.hole = s.network(support.unique_name("cbtest-vhole"), "--internal", "--ipv6", "--subnet", v6,
                             "--opt", "com.docker.network.bridge.inhibit_ipv4=true")
        shutil.copy(os.path.join(FILES, "upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        common = ["--network", inet, "--user", "0", "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE]
        allowed, quiet = support.unique_name("cbtest-vallowed"), support.unique_name("cbtest-vquiet")
        for name in (allowed, quiet):
            s.container(name, *common, "sleep", "infinity")
        cls.allowed, cls.quiet = s.ip(allowed, inet), s.ip(quiet, inet)
        ca, _, _ = support.make_tls(s, cls.allowed)
        support.sh(["docker", "exec", "-d", allowed, "python3", "/srv/upstream.py", "allowed", "80", "443",
                    "/srv/srv.pem", "/srv/srv.key"])
        cls.outside_name = support.unique_name("outside") + ".verify.test"
        outside = s.container(support.unique_name("cbtest-voutside"), "--network", cls.hole, "--network-alias",
                              cls.outside_name, support.AGENT_TEST_IMAGE, "python3", "-c", OUTSIDE_SERVER)
        support.wait_for(lambda: "outside ready" in support.sh(["docker", "logs", outside]).stdout, 30, "the outside")
        fmt = "{{json .NetworkSettings.Networks}}"
        nets = json.loads(support.sh(["docker", "inspect", "--format", fmt, outside]).stdout)
        cls.outside, cls.outside6 = nets[cls.hole]["IPAddress"], nets[cls.hole]["GlobalIPv6Address"]
        cls.bottle = support.unique_name("itest-verify")
        cls.manifest = s.manifest({
            "name": cls.bottle, "agent": {"image": support.AGENT_TEST_IMAGE},
            "egress": {"allow": [cls.allowed, cls.quiet], "trusted_ca": ca, "network": inet},
            # Bound to QUIET, so the placeholder's wrong host is ALLOWED, which answers HTTPS.
            "secrets": {"TEST_TOKEN": {"from_env": "TEST_TOKEN",
                                       "inject": {"hosts": [cls.quiet], "header": "authorization"}}},
        })
        cls.sound = cls.verify()
        bin_dir = os.path.join(s.dir, "bin")
        os.makedirs(bin_dir)
        cls.hole_log = os.path.join(s.dir, "hole.log")
        real = shutil.which("docker") or "docker"
        wrapper = os.path.join(bin_dir, "docker")
        with open(wrapper, "w") as handle:
            handle.write(WRAPPER.format(real=real, hole=cls.hole, log=cls.hole_log))
        os.chmod(wrapper, 0o755)
        cls.holed = cls.verify(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))

    @classmethod
    def verify(cls, manifest: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claude_bottle", "verify", manifest or cls.manifest, "--format=json",
             "--outside", cls.outside, "--outside6", cls.outside6, "--outside-name", cls.outside_name],
            capture_output=True, text=True, timeout=600, cwd=support.REPO,
            env=support.launcher_env(TEST_TOKEN="cbtest-verify-" + secrets.token_hex(8), **env),
        )

    @classmethod
    def tearDownClass(cls) -> None:
        cls.scratch.close()

    def report(self, run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        try:
            doc = json.loads(run.stdout)
        except ValueError:
            raise AssertionError(f"no JSON report; rc={run.returncode}\nstdout:\n{run.stdout[-3000:]}\n"
                                 f"stderr:\n{run.stderr[-3000:]}") from None
        assert isinstance(doc, dict)
        return doc

    def test_sound_bottle_passes_with_every_escape_refused(self) -> None:
        doc = self.report(self.sound)
        escapes = [c for c in doc["checks"] if c["kind"] == "escape"]
        self.assertEqual([(c["check"], c["target"], c["detail"]) for c in escapes if c["result"] != "refused"], [])
        self.assertEqual(self.sound.returncode, 0, self.sound.stderr[-3000:])
        self.assertTrue(doc["passed"])
        self.assertLessEqual(HOLE_CLASSES | {"bundle's other ports"}, {c["check"] for c in escapes})

    def test_sound_bottle_reports_reachability_without_failing(self) -> None:
        reach = {c["target"]: c for c in by_check(self.report(self.sound))["allowed rule"]}
        self.assertEqual(reach[self.allowed]["result"], "reached", reach[self.allowed])
        self.assertIn("HTTPS 200", reach[self.allowed]["detail"])
        self.assertEqual(reach[self.quiet]["result"], "unreachable", reach[self.quiet])  # and still exit 0

    def test_secrets_checks_are_refused_for_their_own_reasons(self) -> None:
        checks = by_check(self.report(self.sound))
        (placeholder,) = checks["placeholder, wrong host"]
        self.assertEqual(placeholder["result"], "refused")
        self.assertIn("placeholder for secret TEST_TOKEN", placeholder["detail"])
        self.assertEqual(placeholder["observed"]["via"], "https", placeholder)  # the wrong host itself, over TLS
        dlp = {c["target"]: c for c in checks["fake secret in a body"]}
        self.assertEqual(set(dlp), {self.allowed, self.quiet})
        for host, check in dlp.items():
            self.assertEqual((check["result"], check["observed"]["status"]), ("refused", 403), check)
            self.assertRegex(check["detail"].lower(), r"dlp|gitleaks", check)
        self.assertEqual(dlp[self.allowed]["observed"]["via"], "https")  # QUIET has no TLS: over plain HTTP
        self.assertEqual(dlp[self.quiet]["observed"]["via"], "http")

    def test_hole_fails_the_run_and_names_each_way_out(self) -> None:
        with open(self.hole_log) as handle:
            self.assertIn(f"to {self.hole}", handle.read())  # the hole was really opened
        doc = self.report(self.holed)
        self.assertEqual(self.holed.returncode, 1, self.holed.stderr[-3000:])
        self.assertFalse(doc["passed"])
        failed = {(c["check"], c["target"]) for c in doc["checks"] if c["failed"]}
        expected = {("direct TCP", f"{self.outside}:443"), ("direct TCP", f"{self.outside}:80"),
                    ("direct UDP (a DNS query)", f"{self.outside}:53"), ("ICMP echo", self.outside),
                    ("DNS lookup", self.outside_name), ("IPv6", f"[{self.outside6}]:443")}
        icmp = by_check(doc)["ICMP echo"][0]
        if "ping socket: socket: EACCES" in icmp["detail"]:  # an engine that keeps ping sockets closed
            expected.discard(("ICMP echo", self.outside))
        self.assertEqual(failed, expected, json.dumps([c for c in doc["checks"] if c["failed"]], indent=1))
        self.assertEqual(by_check(doc)["direct TCP"][0]["detail"], "connected")

    def test_hole_leaves_the_bundles_refusals_standing(self) -> None:
        checks = by_check(self.report(self.holed))
        for name in ("cloud metadata, direct", "cloud metadata, via proxy", "bundle's other ports",
                     "bundle, not as a proxy", "host no rule names", "port no rule names",
                     "placeholder, wrong host", "fake secret in a body"):
            for check in checks[name]:
                self.assertEqual(check["result"], "refused", check)

    def test_both_runs_remove_everything(self) -> None:
        self.assertEqual(support.labelled(self.bottle), [])
        label = f"label=org.claude-bottle.bottle={self.bottle}"
        volumes = support.sh(["docker", "volume", "ls", "-q", "--filter", label])
        self.assertEqual(volumes.stdout.split(), [])  # verify never makes the bottle's kept home

    def test_an_image_without_python3_is_a_clear_error(self) -> None:
        if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
            support.unavailable(f"image {BASE_IMAGE} missing; run .ci/build-images")
        bottle = support.unique_name("itest-nopy")
        manifest = self.scratch.manifest({"name": bottle, "agent": {"image": BASE_IMAGE}}, name="nopy.json")
        run = self.verify(manifest)
        self.assertEqual(run.returncode, 2, run.stderr[-3000:])
        self.assertIn(f"agent.image: {BASE_IMAGE} has no python3 on its PATH", run.stderr)
        self.assertEqual(run.stdout, "")
        self.assertEqual(support.labelled(bottle), [])


if __name__ == "__main__":
    unittest.main()
