"""The sidecar bundle image on its own: tools, pipelock marker, and supervise.py as PID 1.

Needs Docker and the image built by .ci/build-images. Without them the tests skip, unless
CLAUDE_BOTTLE_REQUIRE_DOCKER=1 (CI), where a missing engine or image is a failure.
"""
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import time
import unittest

from claude_bottle import egress, pipelock
from tests.integration import support

IMAGE = os.environ.get("CLAUDE_BOTTLE_SIDECARS_IMAGE") or support.sidecars_image()
LABEL = "org.claude-bottle.test=1"
SUPERVISE = ["python3", "/opt/claude-bottle/supervise.py"]
MINIMAL_POLICY = {"version": 1, "rules": []}
# Only used when the image has pipelock: what the launcher renders for a manifest that allows nothing
# (strict mode refuses an empty allowlist; the rendering must still start).
MINIMAL_PIPELOCK_YAML = pipelock.render(egress.classify(()))


def docker(*args: str, timeout: float = 120, check: bool = True,
           stdin: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
    return proc


def unavailable(reason: str) -> None:
    if os.environ.get("CLAUDE_BOTTLE_REQUIRE_DOCKER") == "1":
        raise AssertionError(f"CLAUDE_BOTTLE_REQUIRE_DOCKER=1 but {reason}")
    raise unittest.SkipTest(reason)


def config_tar(files: dict[str, str]) -> bytes:
    """A tar for `docker cp - CONTAINER:/etc/claude-bottle`, as the launcher sends it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class BundleImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if shutil.which("docker") is None:
            unavailable("the docker CLI is not installed")
        if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
            unavailable("the Docker daemon is unreachable")
        if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
            unavailable(f"image {IMAGE} is missing (run .ci/build-images)")
        files = cls.run_in_image("ls /opt/claude-bottle; test -x /usr/local/bin/pipelock && echo BIN || true")
        cls.markers = {f for f in files.split() if f.startswith("pipelock-")}
        cls.has_pipelock_binary = "BIN" in files.split()

    @classmethod
    def run_in_image(cls, script: str) -> str:
        proc = docker("run", "--rm", "--label", LABEL, "--network", "none",
                      "--entrypoint", "sh", IMAGE, "-c", script)
        return proc.stdout.decode()

    def create(self) -> str:
        cid = docker("create", "--label", LABEL, "--network", "none", IMAGE).stdout.decode().strip()
        self.addCleanup(docker, "rm", "-f", cid, check=False)
        return cid

    def exec_supervise(self, cid: str, flag: str) -> subprocess.CompletedProcess:
        return docker("exec", cid, *SUPERVISE, flag, check=False, timeout=30)

    def test_image_metadata(self) -> None:
        config = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]
        self.assertEqual(config["User"], "10001:10001")
        self.assertEqual(config["Labels"].get("org.claude-bottle.role"), "sidecars")
        self.assertIn("8080/tcp", config["ExposedPorts"])
        # The session CA, the proxy port and socket first (scanner/boot), then the supervisor as PID 1.
        self.assertEqual(config["Entrypoint"], ["/usr/local/bin/claude-bottle-boot", "/var/lib/claude-bottle/mitm",
                                                "/run/claude-bottle/bundle/ca.pem", "8080",
                                                "/run/claude-bottle/bundle/proxy.sock", "--", *SUPERVISE])

    def test_tools_answer(self) -> None:
        out = self.run_in_image("id -u; mitmdump --version; gitleaks version")
        self.assertEqual(out.split()[0], "10001")
        self.assertIn("Mitmproxy: 8.1.1", out)
        self.assertIn("8.30.1", out)

    def test_the_proxy_loads_none_of_mitmdumps_unused_addons(self) -> None:
        # proxy.py's reason to exist: flask (mitm.it), ldap3 and passlib (proxy auth) are half of
        # mitmdump's start-up; the proxy core and TLS interception must still all be there.
        out = self.run_in_image(
            "cd /opt/claude-bottle && python3 -c 'import sys, proxy; proxy.without_default_addons(); "
            "from mitmproxy import master; "
            "from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig; "
            "print(sorted(m for m in (\"flask\", \"ldap3\", \"passlib\", \"mitmproxy.addons.onboarding\") "
            "if m in sys.modules))'")
        self.assertEqual(out.strip().splitlines()[-1], "[]")

    def test_pipelock_marker_matches_the_binary(self) -> None:
        self.assertEqual(len(self.markers), 1, f"want exactly one marker, got {self.markers}")
        present = self.markers == {"pipelock-present"}
        self.assertEqual(present, self.has_pipelock_binary)
        label = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]["Labels"]
        self.assertEqual(label.get("org.claude-bottle.pipelock"), "present" if present else "absent")
        if present:
            self.run_in_image("/usr/local/bin/pipelock version")

    def test_refuses_to_start_without_a_policy(self) -> None:
        proc = docker("run", "--rm", "--label", LABEL, "--network", "none", IMAGE,
                      check=False, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"/etc/claude-bottle/policy.json", proc.stderr)

    def test_supervisor_lifecycle(self) -> None:
        files = {"policy.json": json.dumps(MINIMAL_POLICY)}
        if self.has_pipelock_binary:
            files["pipelock.yaml"] = MINIMAL_PIPELOCK_YAML
        cid = self.create()
        docker("cp", "-", f"{cid}:/etc/claude-bottle", stdin=config_tar(files))
        docker("start", cid)

        deadline, check = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            check = self.exec_supervise(cid, "--check")
            if check.returncode == 0:
                break
            time.sleep(0.5)
        logs = docker("logs", cid, check=False).stderr.decode(errors="replace")
        self.assertEqual(check.returncode, 0, f"--check never passed: {check.stderr!r}\n{logs[-3000:]}")

        ca = self.exec_supervise(cid, "--ca")
        self.assertEqual(ca.returncode, 0, ca.stderr)
        pem = ca.stdout.decode()
        self.assertTrue(pem.startswith("-----BEGIN CERTIFICATE-----"), pem[:100])
        self.assertNotIn("PRIVATE KEY", pem)
        ssl.PEM_cert_to_DER_cert(pem)   # a well-formed certificate
        mode = docker("exec", cid, "stat", "-c", "%a %U",
                      "/var/lib/claude-bottle/mitm/mitmproxy-ca.pem").stdout.decode().split()
        self.assertEqual(mode, ["600", "bottle"], "the CA key must stay private to the bundle user")
        # What the agent mounts (--volumes-from, read-only): its gate, the CA's public half (no key), and
        # the proxy's socket, which the agent's uid (any) may connect to.
        shared = docker("exec", cid, "sh", "-c", "cd /run/claude-bottle/bundle && ls && stat -c '%F %a' proxy.sock "
                        "&& cat ca.pem").stdout.decode()
        self.assertEqual(shared.split()[:5], ["ca.pem", "gate", "proxy.sock", "socket", "666"])
        self.assertIn("BEGIN CERTIFICATE", shared)
        self.assertNotIn("PRIVATE KEY", shared)
        text = docker("exec", cid, "openssl", "x509", "-noout", "-text", "-in", "/run/claude-bottle/bundle/ca.pem",
                      check=False).stdout.decode()
        if text:  # openssl is in the image: the CA is the one boot made, ECDSA P-256, a CA
            self.assertIn("id-ecPublicKey", text)
            self.assertIn("CA:TRUE", text)

        t0 = time.monotonic()
        docker("stop", "-t", "10", cid, timeout=30)
        elapsed = time.monotonic() - t0
        state = json.loads(docker("inspect", cid).stdout)[0]["State"]
        self.assertEqual(state["ExitCode"], 0, docker("logs", cid, check=False).stderr[-2000:])
        self.assertLess(elapsed, 10.0)


if __name__ == "__main__":
    unittest.main()
