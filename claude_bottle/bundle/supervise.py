#!/usr/bin/env python3
"""PID 1 of the claude-bottle sidecar bundle: agent -> mitmdump :8080 -> pipelock :8888 -> net.

A third child, the scanner (scanner/main.go: gitleaks' engine with the rules loaded once), answers the
addon's DLP scans on a Unix socket when the image has it.

`--check`: readiness probe for `docker exec` (exit 0 = ready); `--ca`: print the public CA cert.
Stdlib only: the bundle image carries no pip packages.
"""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__:  # the launcher's tests import this as claude_bottle.bundle.supervise
    from claude_bottle.bundle import shared
else:  # in the bundle: run as a script next to shared.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import shared  # noqa: E402

CONF_DIR = Path(shared.CONFIG_DIR)   # the launcher docker-cp's its config files here
POLICY = CONF_DIR / "policy.json"
PIPELOCK_CONFIG = CONF_DIR / "pipelock.yaml"
STATE_DIR = Path("/var/lib/claude-bottle")
MITM_CONFDIR = STATE_DIR / "mitm"
CA_CERT = MITM_CONFDIR / "mitmproxy-ca-cert.pem"   # public half; mitmproxy-ca.pem holds the key
UPSTREAM_CA = STATE_DIR / "upstream-ca.pem"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PIPELOCK_BIN = Path("/usr/local/bin/pipelock")
ADDON = Path("/opt/claude-bottle/addon.py")
PROXY = Path("/opt/claude-bottle/proxy.py")
ADDON_READY = STATE_DIR / "addon-ready"  # mitmdump's pid, written by the addon once it is enforcing
SCANNER_BIN = Path("/usr/local/bin/claude-bottle-scanner")
BOOT_BIN = Path("/usr/local/bin/claude-bottle-boot")  # scanner/boot/main.go: the image's entrypoint
SCANNER_SOCKET = STATE_DIR / "scanner.sock"  # private to the bundle's user; the addon connects here
GITLEAKS_CONFIG = Path("/opt/claude-bottle/gitleaks.toml")
# Loopback only, whatever the YAML says: pipelock does no TLS inspection, so the
# agent must never reach it except through mitmdump.
PIPELOCK_LISTEN = shared.PIPELOCK_LISTEN
PIPELOCK_URL = f"http://{PIPELOCK_LISTEN}"
HEALTH_URL = f"{PIPELOCK_URL}/health"
MITM_PORT = shared.PROXY_PORT
# Every address when the plan says nothing: only the bottle's own network reaches the bundle (smolmachines,
# Kubernetes). Loopback in the Docker runtime, whose agent comes in by PROXY_SOCKET (shared.py).
MITM_LISTEN_HOST = os.environ.get(shared.PROXY_HOST_ENV) or "0.0.0.0"
PROXY_SOCKET = shared.PROXY_SOCKET
STOP_GRACE_S = 5.0   # then SIGKILL; well inside `docker stop`'s default 10 s
STABLE_S = 30.0      # a child that ran this long starts its backoff afresh
# Base64 body only: a match can never span into a "-----BEGIN PRIVATE KEY-----" block.
CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def log(msg: str) -> None:
    print(f"claude-bottle-supervise: {msg}", file=sys.stderr, flush=True)


def backoff_delay(failures: int, base: float = 0.5, cap: float = 8.0) -> float:
    """Delay before restarting after the `failures`-th crash in a row: 0.5, 1, 2, 4, 8, 8..."""
    return 0.0 if failures <= 0 else min(cap, base * 2 ** min(failures - 1, 16))


def pipelock_argv(binary: str = str(PIPELOCK_BIN), config: str = str(PIPELOCK_CONFIG),
                  listen: str = PIPELOCK_LISTEN) -> list[str]:
    return [binary, "run", "--config", config, "--listen", listen]


def mitmdump_argv(*, confdir: str = str(MITM_CONFDIR), addon: str = str(ADDON), port: int = MITM_PORT,
                  listen_host: str = MITM_LISTEN_HOST, upstream_ca: str | None = None) -> list[str]:
    # proxy.py is mitmdump with only the addons the bundle uses (it starts in about a third of the time).
    # Regular mode with eager connects, said explicitly (the addon refuses any other mode): a CONNECT is
    # answered only once its server side is open, which the addon routes through pipelock. Only the
    # bottle's networks reach :8080, and nothing here blocks "global" clients (TSI's need not look local).
    argv = ["python3", str(PROXY), "--mode", "regular", "--set", "connection_strategy=eager"]
    argv += ["--listen-host", listen_host, "-p", str(port), "--set", f"confdir={confdir}",
             # stdout carries the addon's JSON decision lines and nothing else
             "--set", "termlog_verbosity=warn"]
    if upstream_ca:
        argv += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    return argv + ["-s", addon]


def scanner_argv(binary: str = str(SCANNER_BIN), socket_path: str = str(SCANNER_SOCKET),
                 config: str = str(GITLEAKS_CONFIG)) -> list[str]:
    return [binary, "-socket", socket_path, "-config", config]


def scanner_answers(path: str | Path | None = None, timeout: float = 1.0) -> bool:
    """The scanner answers a ping (an empty request, scanned like any other) with a clean verdict."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path or SCANNER_SOCKET))
            sock.sendall(b"\0\0\0\0")
            reply = b""
            while len(reply) < 4 or len(reply) < 4 + int.from_bytes(reply[:4], "big"):
                chunk = sock.recv(4096)
                if not chunk or len(reply) > 4096:
                    return False
                reply += chunk
        return bool(json.loads(reply[4:].decode()) == {"rules": []})
    except (OSError, ValueError):
        return False


def cert_blocks(pem_text: str) -> str:
    """Only the CERTIFICATE blocks of a PEM text, so a private key can never slip out."""
    return "".join(m.group(0) + "\n" for m in CERT_RE.finditer(pem_text))


def upstream_ca_bundle(system_pem: str, extra_pem: str) -> str:
    """System trust plus the policy's CA (mitmdump's option replaces its store, not adds)."""
    extra = cert_blocks(extra_pem)
    if not extra:
        raise ValueError("upstream_trusted_ca holds no PEM certificate")
    return system_pem.rstrip("\n") + "\n" + extra


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: Callable[[], bool] = lambda: True   # gate checked before each (re)start
    pass_fds: tuple[int, ...] = ()   # kept open in the child: mitmdump's listening socket
    proc: subprocess.Popen[bytes] | None = None
    failures: int = 0
    started_at: float = 0.0
    next_start: float = 0.0


class Supervisor:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.stopping = self.signalled = False
        self.deadline, self.stop_signal = 0.0, signal.SIGTERM

    def send(self, signum: int) -> None:
        for c in self.children:
            try:
                if c.proc is not None:
                    os.kill(c.proc.pid, signum)
            except ProcessLookupError:
                pass

    def on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.send(signum)   # pipelock reloads its config on SIGHUP
        elif not self.stopping:   # SIGTERM/SIGINT: the main loop passes it on
            self.stopping, self.stop_signal = True, signal.Signals(signum)
            self.deadline = time.monotonic() + STOP_GRACE_S
            log(f"{self.stop_signal.name}: stopping children")

    def reap(self) -> None:
        while True:   # as PID 1 we inherit every orphan in the container: reap them all
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for c in self.children:
                if c.proc is not None and c.proc.pid == pid:
                    self.exited(c, os.waitstatus_to_exitcode(status))

    def exited(self, c: Child, code: int) -> None:
        assert c.proc is not None
        c.proc.returncode, c.proc = code, None   # reaped here: Popen must not poll it
        if self.stopping:
            log(f"{c.name} stopped ({code})")
            return
        now = time.monotonic()
        c.failures = 1 if now - c.started_at >= STABLE_S else c.failures + 1
        c.next_start = now + backoff_delay(c.failures)
        log(f"{c.name} exited ({code}); restart #{c.failures} in {backoff_delay(c.failures):g}s")

    def start_due(self) -> None:
        now = time.monotonic()
        for c in self.children:
            if c.proc is not None or now < c.next_start:
                continue
            if not c.ready():
                c.next_start = now + 0.5
                continue
            try:   # stdout/stderr inherited: child logs reach `docker logs` unchanged
                c.proc, c.started_at = subprocess.Popen(c.argv, pass_fds=c.pass_fds), now
                log(f"started {c.name} (pid {c.proc.pid}): {' '.join(c.argv)}")
            except OSError as e:
                c.failures += 1
                c.next_start = now + backoff_delay(c.failures)
                log(f"cannot start {c.name}: {e}")

    def run(self) -> int:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self.on_signal)
        while True:
            self.reap()
            if not self.stopping:
                self.start_due()
            elif all(c.proc is None for c in self.children):
                return 0
            elif not self.signalled:   # sent from here, so no child is half-started
                self.send(self.stop_signal)
                self.signalled = True
            elif time.monotonic() >= self.deadline:
                log(f"children ignored {self.stop_signal.name} for {STOP_GRACE_S:g}s: SIGKILL")
                self.send(signal.SIGKILL)
                self.deadline = float("inf")
            time.sleep(0.2)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """GET answered 200, straight to the address (never through a proxy). A raw request rather than
    urllib: importing urllib.request was more than half of the supervisor's own start-up."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name, int(port)), timeout=timeout) as sock:
            sock.sendall(f"GET /{rest} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            head = sock.recv(64)
    except (OSError, ValueError):
        return False
    return head.split(b" ", 2)[1:2] == [b"200"]


def read_ca() -> str:
    try:
        return cert_blocks(CA_CERT.read_text())
    except OSError:
        return ""


def addon_running() -> bool:
    """The addon wrote its mitmdump's pid, and that process is still running."""
    try:
        pid = int(ADDON_READY.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def not_ready() -> str | None:
    """Why the bundle is not ready yet, or None when it is."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        mitm_up = sock.connect_ex(("127.0.0.1", MITM_PORT)) == 0
    for failed, reason in ((PIPELOCK_BIN.exists() and not http_ok(HEALTH_URL),
                            f"pipelock {HEALTH_URL} did not answer 200"),
                           (SCANNER_BIN.exists() and not scanner_answers(),
                            f"the scanner does not answer a ping on {SCANNER_SOCKET}"),
                           (not mitm_up, f"mitmdump does not accept TCP on 127.0.0.1:{MITM_PORT}"),
                           (not read_ca(), f"no CA certificate at {CA_CERT}"),
                           (not addon_running(), "the mitmdump addon has not reported ready")):
        if failed:
            return reason
    return None


def check() -> int:
    reason = not_ready()
    if reason is not None:
        print(f"not ready: {reason}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def wait_ready(timeout: float, interval: float = 0.05) -> int:
    """Block until ready, then print {"ca": PEM, "pipelock": bool} as one JSON line.

    One `docker exec` instead of a poll loop of them: each exec costs the launcher ~0.1 s."""
    deadline = time.monotonic() + timeout
    while (reason := not_ready()) is not None:
        if time.monotonic() >= deadline:
            print(f"not ready after {timeout:g} s: {reason}", file=sys.stderr)
            return 1
        time.sleep(interval)
    print(json.dumps({"ca": read_ca(), "pipelock": PIPELOCK_BIN.exists()}))
    return 0


def print_ca() -> int:
    pem = read_ca()
    if not pem:
        print(f"no CA certificate at {CA_CERT}", file=sys.stderr)
        return 1
    sys.stdout.write(pem)
    return 0


def serve() -> int:
    os.environ["CLAUDE_BOTTLE_ADDON_READY"] = str(ADDON_READY)  # inherited by mitmdump, read by the addon
    try:   # fail closed: without its policy the bundle must not forward anything
        policy = json.loads(POLICY.read_text())
        if not isinstance(policy, dict):
            raise ValueError(f"{POLICY} is not a JSON object")
        extra_ca = policy.get("upstream_trusted_ca")
        upstream_ca = str(UPSTREAM_CA) if extra_ca else None
        if extra_ca:
            UPSTREAM_CA.write_text(upstream_ca_bundle(SYSTEM_CA.read_text(), str(extra_ca)))
        MITM_CONFDIR.mkdir(parents=True, exist_ok=True)
        if PIPELOCK_BIN.exists() and not PIPELOCK_CONFIG.is_file():
            raise ValueError(f"pipelock is present but {PIPELOCK_CONFIG} is missing")
        make_ca()
        listener = proxy_listener()
        local = unix_listener()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        log(f"cannot start: {e}")
        return 1
    log(f"listening on {MITM_LISTEN_HOST}:{MITM_PORT} (fd {listener.fileno()}) and {PROXY_SOCKET} "
        f"(fd {local.fileno()}) for mitmdump")
    children = bundle_children(upstream_ca, PIPELOCK_BIN.exists(), SCANNER_BIN.exists(), listener.fileno(),
                               local.fileno())
    return Supervisor(children).run()


def make_ca(binary: Path = BOOT_BIN, confdir: Path = MITM_CONFDIR, shared_cert: str = shared.SHARED_CA) -> None:
    """The session CA, which the image's entrypoint (claude-bottle-boot) has normally made already:
    the agent, started beside the bundle, waits for its certificate in the shared volume
    (gate/main.go), and mitmdump loads it instead of making its own. Made (or shared) again here so
    that no path starts the proxy without it."""
    cert = confdir / "mitmproxy-ca-cert.pem"
    if cert.is_file() and os.path.isfile(shared_cert):
        return
    result = subprocess.run([str(binary), str(confdir), shared_cert, "0", "-", "--", "true"], capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0 or not cert.is_file():
        raise ValueError(f"making the session CA failed: {result.stderr.strip() or result.returncode}")


def proxy_listener(host: str = MITM_LISTEN_HOST, port: int = MITM_PORT) -> socket.socket:
    """The agent-facing port, bound before any child starts and handed to each mitmdump it starts:
    the one claude-bottle-boot bound and left us ($CLAUDE_BOTTLE_LISTEN_FD), or one bound here.

    A connection made while mitmdump is still starting (or restarting) waits in this socket's backlog
    instead of being refused: the agent can start at the same time as the bundle (see gate/main.go)."""
    inherited = os.environ.get("CLAUDE_BOTTLE_LISTEN_FD", "")
    if inherited.isdigit():
        listener = socket.socket(fileno=int(inherited))
        if listener.getsockname()[1] != port:
            where = listener.getsockname()
            listener.close()
            raise ValueError(f"the inherited socket is bound to {where}, not port {port}")
    else:
        listener = socket.create_server((host, port), backlog=1024)
    listener.set_inheritable(True)
    return listener


def unix_listener(path: str = PROXY_SOCKET) -> socket.socket:
    """The same, for the Unix socket in the volume the agent mounts: the one claude-bottle-boot bound
    ($CLAUDE_BOTTLE_UNIX_FD), or one bound here, connectable by the agent's uid, whatever it is."""
    inherited = os.environ.get("CLAUDE_BOTTLE_UNIX_FD", "")
    if inherited.isdigit():
        listener = socket.socket(fileno=int(inherited))
        if listener.family != socket.AF_UNIX or listener.getsockname() != path:
            where = listener.getsockname()
            listener.close()
            raise ValueError(f"the inherited socket is bound to {where!r}, not {path}")
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(1024)
    listener.set_inheritable(True)
    return listener


def bundle_children(upstream_ca: str | None, pipelock: bool, scanner: bool, listen_fd: int | None = None,
                    unix_fd: int | None = None) -> list[Child]:
    """The children to run, all started at once, and the environment mitmdump inherits to find them.

    mitmdump (proxy.py) takes about half a second to start and asks pipelock (up in ~70 ms) and the
    scanner (~0.5 s) nothing before the first request; readiness still waits for pipelock's /health
    and a scanner ping. mitmdump serves the sockets `listen_fd` (TCP) and `unix_fd` the supervisor
    bound, when given them."""
    children = []
    if scanner:
        os.environ["CLAUDE_BOTTLE_SCANNER_SOCKET"] = str(SCANNER_SOCKET)  # read by the addon (dlp.py)
        children.append(Child("scanner", scanner_argv()))
    else:
        os.environ.pop("CLAUDE_BOTTLE_SCANNER_SOCKET", None)
        log(f"no scanner at {SCANNER_BIN}: each DLP scan runs one gitleaks process (slow)")
    if pipelock:
        os.environ["CLAUDE_BOTTLE_PIPELOCK_URL"] = PIPELOCK_URL  # read by the addon
        children.append(Child("pipelock", pipelock_argv()))
    else:
        log("!!! WARNING: pipelock is ABSENT from this image: mitmdump connects out directly "
            "and only the mitmdump addon guards egress (a dev/CI build, not for real use) !!!")
    fds = {"CLAUDE_BOTTLE_LISTEN_FD": listen_fd, "CLAUDE_BOTTLE_UNIX_FD": unix_fd}
    for name, fd in fds.items():
        if fd is not None:
            os.environ[name] = str(fd)
        else:
            os.environ.pop(name, None)
    children.append(Child("mitmdump", mitmdump_argv(upstream_ca=upstream_ca),
                          pass_fds=tuple(fd for fd in fds.values() if fd is not None)))
    return children


def main(argv: list[str]) -> int:
    probes = {"--check": check, "--ca": print_ca}
    if len(argv) == 1 and argv[0] in probes:
        return probes[argv[0]]()
    if len(argv) == 2 and argv[0] == "--wait":
        try:
            return wait_ready(float(argv[1]))
        except ValueError:
            pass
    if argv:
        print("usage: supervise.py [--check | --ca | --wait SECONDS]", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
