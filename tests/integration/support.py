"""Shared pieces of the integration tests: Docker availability, images, the launcher as a subprocess.

On a laptop without Docker these tests skip with a reason; CI sets CLAUDE_BOTTLE_REQUIRE_DOCKER=1 so a
missing engine, image or tool fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_TEST_IMAGE = os.environ.get("CLAUDE_BOTTLE_TEST_AGENT_IMAGE", "claude-bottle/agent-test:dev")
TEST_LABEL = "org.claude-bottle.test=1"  # fixtures made outside a Scratch
REQUIRED = os.environ.get("CLAUDE_BOTTLE_REQUIRE_DOCKER") == "1"
PIPELOCK_LABEL = "org.claude-bottle.pipelock"  # images.PIPELOCK_LABEL: "present" or "absent"


def sh(argv: list[str], timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def unavailable(reason: str) -> None:
    if REQUIRED:
        raise AssertionError(f"required for CI but missing: {reason}")
    raise unittest.SkipTest(reason)


def require_docker() -> None:
    if shutil.which("docker") is None:
        unavailable("docker CLI not installed")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        unavailable("Docker daemon not reachable")


def sidecars_image() -> str:
    out = sh([sys.executable, "-m", "claude_bottle", "build", "--print-tag"], cwd=REPO)
    return out.stdout.strip()


def require_images() -> str:
    require_docker()
    tag = sidecars_image()
    for image in (tag, AGENT_TEST_IMAGE):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            unavailable(f"image {image} missing; run .ci/build-images")
    return tag


_PIPELOCK: list[bool] = []


def pipelock_in_bundle() -> bool:
    """Whether the sidecars image holds pipelock, read from the image itself (its label, which its build
    checks against its contents): machines where nobody built pipelock by hand test without it."""
    if not _PIPELOCK:
        tag = sidecars_image()
        proc = sh(["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{PIPELOCK_LABEL}"}}}}', tag],
                  check=False)
        _PIPELOCK.append(proc.returncode == 0 and proc.stdout.strip() == "present")
    return _PIPELOCK[0]


def require_pipelock(what: str) -> None:
    """Skip, naming what was not checked, when the bundle has no pipelock; never a failure, since a
    machine without a hand-built pipelock must still pass (the closing line lists these skips)."""
    require_images()
    if not pipelock_in_bundle():
        raise unittest.SkipTest(f"pipelock absent from the sidecars image: {what} not checked")


_STATE_HOME: list[str] = []


def state_home() -> str:
    """One temporary XDG_STATE_HOME for this test process (removed at exit), so the session logs the
    launcher saves never land in the real user's state directory."""
    if not _STATE_HOME:
        import atexit

        _STATE_HOME.append(tempfile.mkdtemp(prefix="cb-itest-state-"))
        atexit.register(shutil.rmtree, _STATE_HOME[0], True)
    return _STATE_HOME[0]


def launcher_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO
    env["XDG_STATE_HOME"] = state_home()
    if not pipelock_in_bundle():
        env["CLAUDE_BOTTLE_ALLOW_NO_PIPELOCK"] = "1"  # said by name in every such run's skips
    env.update(extra)
    return env


def labelled(bottle: str) -> list[str]:
    """Every container and network carrying this bottle's label (what must be gone after a run)."""
    found: list[str] = []
    for argv in (
        ["docker", "ps", "-aq", "--filter", f"label=org.claude-bottle.bottle={bottle}"],
        ["docker", "network", "ls", "-q", "--filter", f"label=org.claude-bottle.bottle={bottle}"],
    ):
        found += sh(argv).stdout.split()
    return found


def probe_result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON a probe printed inside the bottle as `PROBE-RESULT {...}`, or a failure showing why not."""
    line = next((l for l in run.stdout.splitlines() if l.startswith("PROBE-RESULT ")), None)
    if line is None:
        raise AssertionError(f"probe printed no result; rc={run.returncode}\n"
                             f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}")
    result = json.loads(line.removeprefix("PROBE-RESULT "))
    assert isinstance(result, dict)
    return result


_NAMED: list[str] = []


def unique_name(prefix: str) -> str:
    """A fresh name; a bottle of that name keeps a state volume by design, removed when the tests exit."""
    if not _NAMED:
        import atexit

        atexit.register(_remove_state_volumes)
    name = f"{prefix}-{secrets.token_hex(3)}"
    _NAMED.append(name)
    return name


def _remove_state_volumes() -> None:
    volumes = [f"claude-bottle-{n}-state" for n in _NAMED]
    try:
        listed = sh(["docker", "volume", "ls", "-q", "--filter", "label=org.claude-bottle.role=state"], check=False)
        mine = sorted(set(listed.stdout.split()) & set(volumes))
        if mine:
            sh(["docker", "volume", "rm", "-f", *mine], check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        pass


class Scratch:
    """A temp dir plus Docker objects labelled as this scratch's fixtures, all removed by close()."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-itest-")
        self.label = f"org.claude-bottle.test={os.path.basename(self.dir)}"

    def network(self, name: str, *extra: str) -> str:
        sh(["docker", "network", "create", "--label", self.label, *extra, name])
        return name

    def container(self, name: str, *argv: str) -> str:
        sh(["docker", "run", "-d", "--name", name, "--label", self.label, *argv])
        return name

    def ip(self, container: str, network: str) -> str:
        fmt = "{{json .NetworkSettings.Networks}}"
        nets = json.loads(sh(["docker", "inspect", "--format", fmt, container]).stdout)
        return nets[network]["IPAddress"]

    def write(self, name: str, content: str, mode: int = 0o644) -> str:
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(content)
        os.chmod(path, mode)
        return path

    def manifest(self, doc: dict[str, Any], name: str = "manifest.json") -> str:
        return self.write(name, json.dumps(doc))

    def close(self) -> None:
        """By label, so a container whose `docker run` was cut short is found too; never raises."""
        for kind, rm in (("container", ["docker", "rm", "-f"]), ("network", ["docker", "network", "rm"])):
            ls = ["docker", "ps", "-aq"] if kind == "container" else ["docker", "network", "ls", "-q"]
            try:
                ids = sh([*ls, "--filter", f"label={self.label}"], check=False).stdout.split()
                if ids:
                    proc = sh([*rm, *ids], timeout=300, check=False)
                    if proc.returncode != 0:
                        print(f"warning: removing test {kind}s failed: {proc.stderr.strip()}", file=sys.stderr)
            except subprocess.TimeoutExpired:
                print(f"warning: removing test {kind}s timed out", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_tls(scratch: Scratch, ip: str, *names: str) -> tuple[str, str, str]:
    """A test CA and a server cert for `ip` (IP SAN) and any DNS `names`, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        unavailable("openssl CLI not installed")
    d = scratch.dir
    ca_key, ca_pem = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = os.path.join(d, "srv.key"), os.path.join(d, "srv.csr"), os.path.join(d, "srv.pem")
    sans = ",".join([f"IP:{ip}", *(f"DNS:{n}" for n in names)])
    ext = scratch.write("srv.ext", f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                                    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cb test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", ca_key, "-out", ca_pem])
    sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}", "-keyout", key, "-out", csr])
    sh(["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", crt])
    for path in (key, crt, ca_pem):
        os.chmod(path, 0o644)  # read by the upstream container's server
    return ca_pem, crt, key
