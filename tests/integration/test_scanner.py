"""The bundle's DLP scanner (claude_bottle/bundle/scanner) under dlp.Scanner, on a temporary socket.

The real binary, built from the module's source (by .ci/build-images, or here when Go is installed),
against the real `gitleaks stdin` the addon otherwise runs per request: the same findings, allow
comments ignored, many scans at once, and every failure an "error" verdict. Skipped when neither a
scanner nor Go is at hand, unless CLAUDE_BOTTLE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

from claude_bottle.bundle import dlp
from tests.integration import secret_shapes
from tests.integration import test_addon_mitmdump as tam
from tests.integration.test_addon_dlp import REAL, DlpBase
from tests.tools import find_gitleaks

ROOT = Path(__file__).resolve().parents[2]
SCANNER_SRC = ROOT / "claude_bottle" / "bundle" / "scanner"
SOURCES = ("go.mod", "go.sum", "main.go", "gate/main.go", "boot/main.go")  # hashed as offline/build-images does
CONFIG = ROOT / "claude_bottle" / "bundle" / "gitleaks.toml"
REQUIRED = os.environ.get("CLAUDE_BOTTLE_REQUIRE_DOCKER") == "1"
ENGINE = "regexp github.com/wasilibs/go-re2"  # built -tags gore2regex, as the image's (see main.go)


def source_hash() -> str:
    return hashlib.sha256(b"".join((SCANNER_SRC / name).read_bytes() for name in SOURCES)).hexdigest()[:12]


def find_go() -> str | None:
    found = shutil.which("go")
    return found or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)


def scanner_binary() -> str | None:
    """$CLAUDE_BOTTLE_SCANNER, or the binary .ci/build-images built from this source (built here, into
    the same cache, when Go is installed)."""
    if os.environ.get("CLAUDE_BOTTLE_SCANNER"):
        return os.environ["CLAUDE_BOTTLE_SCANNER"]
    cache = os.environ.get("CLAUDE_BOTTLE_CACHE") or os.path.expanduser("~/.cache/claude-bottle")
    binary = os.path.join(cache, f"scanner-{source_hash()}", "claude-bottle-scanner")
    if os.access(binary, os.X_OK) and ENGINE in subprocess.run([binary, "-version"], capture_output=True,
                                                               text=True, timeout=30).stdout:
        return binary
    go = find_go()
    if go is None:
        return None
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    print(f"building {binary} with {go}", file=sys.stderr, flush=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    argv = [go, "build", "-tags", "gore2regex", "-trimpath", "-ldflags", "-s -w", "-o", binary + ".partial", "."]
    proc = subprocess.run(argv, cwd=SCANNER_SRC, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"building the scanner failed: {proc.stderr[-2000:]}")
    os.replace(binary + ".partial", binary)
    return binary


SCANNER: str | None = None
GITLEAKS = find_gitleaks()


def setUpModule() -> None:
    global SCANNER
    SCANNER = scanner_binary()
    missing = [name for name, path in (("the scanner (or Go to build it)", SCANNER), ("gitleaks", GITLEAKS))
               if path is None]
    if missing and REQUIRED:
        raise RuntimeError(f"CLAUDE_BOTTLE_REQUIRE_DOCKER=1 but {', '.join(missing)} not found")
    if missing:
        raise unittest.SkipTest(f"{', '.join(missing)} not found (.ci/build-images builds both)")


class ScannerProcess:
    """One real scanner serving the bundle's config on `path`."""

    def __init__(self, path: str, *args: str) -> None:
        self.path = path
        self.proc = subprocess.Popen([SCANNER or "claude-bottle-scanner", "-socket", path, "-config", str(CONFIG), *args],
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not ping(path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the scanner did not come up: {self.stderr}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.stderr is None or self.proc.stderr.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()


def ping(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(path)
            s.sendall(b"\0\0\0\0")
            return s.recv(64)[4:] == b'{"rules":[]}'
    except OSError:
        return False


def inputs() -> dict[str, bytes]:
    aws = secret_shapes.aws_access_key()
    shaped = {label: body for label, (_, body) in secret_shapes.bodies().items()}
    ph = b"claude-bottle-placeholder-ANTHROPIC_API_KEY-0f3a9c2b7d1e4f5a6b8c9d0e1f2a3b4c"
    return {
        **shaped,
        "clean": b"def add(a, b):\n    return a + b\n",
        "empty": b"",
        "request": dlp.scan_text("https://api.example.com/v1/messages?x=1", [(b"content-type", b"application/json"),
                                 (b"x-api-key", ph)], b'{"messages": [{"role": "user", "content": "hi"}]}', [ph]),
        "unmasked-placeholder": dlp.scan_text("https://api.example.com/v1", [(b"x-api-key", ph)], b"", []),
        "basic-auth": dlp.scan_text("https://git.example.com/r.git", [(b"authorization", b"Basic " + base64.b64encode(
            f"x-access-token:{secret_shapes.github_token()}".encode()))], b"", []),
        "base64-body": b"blob=" + base64.b64encode(f"aws_access_key_id = {aws}".encode()),
        "big-clean": b"lorem ipsum dolor sit amet\n" * 20000,  # ~540 kB: gitleaks stdin cuts it in chunks
        "big-with-key-at-end": b"lorem ipsum dolor sit amet\n" * 20000 + f"aws_access_key_id = {aws}\n".encode(),
    }


class ScannerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-scanner-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock = os.path.join(self.dir, "scanner.sock")
        self.scanner = ScannerProcess(self.sock)
        self.addCleanup(self.scanner.stop)

    def via_socket(self, texts: list[bytes], **kw: object) -> list[dlp.ScanResult]:
        async def go() -> list[dlp.ScanResult]:
            scanner = dlp.Scanner(socket_path=self.sock, **kw)  # type: ignore[arg-type]
            try:
                return list(await asyncio.gather(*(scanner.scan(t) for t in texts)))
            finally:
                scanner.close()

        return asyncio.run(go())

    def via_gitleaks(self, text: bytes) -> dlp.ScanResult:
        return asyncio.run(dlp.run_gitleaks(text, dlp.gitleaks_argv(GITLEAKS or "gitleaks", str(CONFIG)), 60,
                                            str(CONFIG.parent)))

    def test_same_findings_as_gitleaks_stdin(self) -> None:
        cases = inputs()
        got = dict(zip(cases, self.via_socket(list(cases.values()))))
        for label, text in cases.items():
            with self.subTest(label):
                self.assertEqual(got[label], self.via_gitleaks(text))
        expected = {label: rule for label, (rule, _) in secret_shapes.bodies().items()}
        for label, rule in {**expected, "basic-auth": "github-pat", "base64-body": "aws-access-token",
                            "big-with-key-at-end": "aws-access-token"}.items():
            with self.subTest(label):
                self.assertIn(rule, got[label].rules)
        for label in ("clean", "empty", "request", "big-clean"):
            self.assertEqual(got[label], dlp.ScanResult("clean"), label)

    def test_allow_comments_do_not_suppress(self) -> None:
        text = f"aws_access_key_id = {secret_shapes.aws_access_key()}  # gitleaks:allow\n".encode()
        self.assertEqual(self.via_socket([text]), [dlp.ScanResult("leak", ("aws-access-token",))])
        self.assertEqual(self.via_gitleaks(text), dlp.ScanResult("leak", ("aws-access-token",)))

    def test_text_that_looks_like_a_tar_file_is_still_scanned(self) -> None:
        # gitleaks' file-type check sees "ustar" at offset 257 and skips the whole input as binary; the
        # scanner scans every request as text, so here it finds what `gitleaks stdin` misses.
        head = b"https://example.com/upload\n"
        text = head + b"x" * (257 - len(head)) + b"ustar\x0000\n" + f"k = {secret_shapes.aws_access_key()}\n".encode()
        self.assertEqual(self.via_socket([text]), [dlp.ScanResult("leak", ("aws-access-token",))])
        self.assertEqual(self.via_gitleaks(text), dlp.ScanResult("clean"))

    def test_many_scans_at_once_each_get_their_own_verdict(self) -> None:
        texts = [f"n={i}\n".encode() + (f"k = {secret_shapes.aws_access_key()}".encode() if i % 3 == 0 else b"")
                 for i in range(200)]
        results = self.via_socket(texts)
        for i, result in enumerate(results):
            self.assertEqual(result, dlp.ScanResult("leak", ("aws-access-token",)) if i % 3 == 0
                             else dlp.ScanResult("clean"), i)

    def test_connections_are_kept_and_reused(self) -> None:
        async def go() -> tuple[int, list[dlp.ScanResult]]:
            scanner = dlp.Scanner(socket_path=self.sock, slots=2)
            results = [await scanner.scan(b"hello") for _ in range(20)]
            idle = len(scanner.idle)
            scanner.close()
            return idle, results

        idle, results = asyncio.run(go())
        self.assertEqual(idle, 1)
        self.assertEqual(set(results), {dlp.ScanResult("clean")})

    def test_a_scanner_that_is_down_fails_closed_and_a_restarted_one_is_used_again(self) -> None:
        async def go() -> list[dlp.ScanResult]:
            scanner = dlp.Scanner(socket_path=self.sock, timeout=5)
            out = [await scanner.scan(b"one")]
            self.scanner.stop()  # the pooled connection dies with it
            out.append(await scanner.scan(b"two"))
            self.scanner = ScannerProcess(self.sock)
            out.append(await scanner.scan(f"k = {secret_shapes.aws_access_key()}".encode()))
            scanner.close()
            return out

        self.addCleanup(lambda: self.scanner.stop())
        first, down, again = asyncio.run(go())
        self.assertEqual(first, dlp.ScanResult("clean"))
        self.assertEqual(down.verdict, "error")
        self.assertIn("the scanner is not answering on", down.reason)
        self.assertEqual(again, dlp.ScanResult("leak", ("aws-access-token",)))

    def test_no_socket_at_all_fails_closed(self) -> None:
        started = time.monotonic()
        (result,) = asyncio.run(self._one(os.path.join(self.dir, "nothing-here.sock"), b"x", timeout=0.5))
        self.assertEqual(result.verdict, "error")
        self.assertIn("No such file", result.reason)
        self.assertIn("after waiting 0.5 s for it to start", result.reason)
        self.assertLess(time.monotonic() - started, 5)

    def test_a_scanner_that_never_answers_times_out(self) -> None:
        mute = socket.socket(socket.AF_UNIX)
        path = os.path.join(self.dir, "mute.sock")
        mute.bind(path)
        mute.listen()
        self.addCleanup(mute.close)
        started = time.monotonic()
        (result,) = asyncio.run(self._one(path, b"x", timeout=0.5))
        self.assertEqual(result, dlp.ScanResult("error", reason="the scanner timed out after 0.5 s"))
        self.assertLess(time.monotonic() - started, 3)

    def test_an_oversize_request_is_an_error(self) -> None:
        small = ScannerProcess(os.path.join(self.dir, "small.sock"), "-max-bytes", "1000")
        self.addCleanup(small.stop)
        (result, after) = asyncio.run(self._one(small.path, b"a" * 2000, b"b" * 10))
        self.assertEqual(result.verdict, "error")
        self.assertIn("over the scanner's 1000-byte limit", result.reason)
        self.assertEqual(after, dlp.ScanResult("clean"))  # the next scan opens a new connection

    @staticmethod
    async def _one(path: str, *texts: bytes, timeout: float = 5) -> list[dlp.ScanResult]:
        scanner = dlp.Scanner(socket_path=path, timeout=timeout)
        try:
            return [await scanner.scan(t) for t in texts]
        finally:
            scanner.close()

    def test_the_supervisor_readiness_ping_accepts_it(self) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("cb_sup_for_scanner", ROOT / "claude_bottle/bundle/supervise.py")
        assert spec is not None and spec.loader is not None
        sup = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = sup
        spec.loader.exec_module(sup)
        self.assertTrue(sup.scanner_answers(self.sock))
        self.assertFalse(sup.scanner_answers(os.path.join(self.dir, "nothing-here.sock")))

    def test_a_bad_config_stops_the_scanner(self) -> None:
        bad = os.path.join(self.dir, "bad.toml")
        Path(bad).write_text("[[rules]]\nid = 'x'\nregex = '''(unclosed'''\n")
        proc = subprocess.run([SCANNER or "x", "-socket", os.path.join(self.dir, "b.sock"), "-config", bad],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertIn("cannot load the gitleaks config", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "b.sock")))


class AddonWithScannerTest(DlpBase):
    """The addon under the real mitmdump, scanning through the scanner: its gitleaks is a stand-in that
    fails every scan, so a request only passes when the socket answered."""

    scanner: ScannerProcess

    @classmethod
    def setUpClass(cls) -> None:
        if tam.MITM_PYTHON is None or tam.OPENSSL is None:
            if REQUIRED:
                raise RuntimeError("CLAUDE_BOTTLE_REQUIRE_DOCKER=1 but mitmdump or openssl is not installed")
            raise unittest.SkipTest("mitmdump or openssl not installed (apt-get install mitmproxy openssl)")
        super().setUpClass()

    @classmethod
    def setUpProxies(cls) -> None:
        cls.sock = str(cls.tmp / "scanner.sock")
        cls.scanner = ScannerProcess(cls.sock)
        broken = cls.tmp / "failing-gitleaks"
        broken.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
        broken.chmod(0o755)
        # A scan waits for a scanner that is (re)starting, up to the DLP timeout: short here, so the
        # scanner-down test sees the refusal well inside its client's timeout.
        kw = {"env": {"CLAUDE_BOTTLE_SCANNER_SOCKET": cls.sock, "CLAUDE_BOTTLE_GITLEAKS": str(broken),
                      "CLAUDE_BOTTLE_DLP_TIMEOUT": "3"},
              "secrets": {"version": 1, "values": {"TOKEN": REAL}}}
        cls.scan = cls.start_proxy(cls.policy("scan", [{"host": "localhost", "wildcard": False, "mode": "skip"}]), **kw)
        cls.warn = cls.start_proxy(cls.policy("warn"), **kw)

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, "scanner", None) is not None:
            cls.scanner.stop()
        super().tearDownClass()

    def post(self, proxy: tam.Mitmdump, body: bytes, host: str = "127.0.0.1") -> tuple[int, bytes, dict[str, str]]:
        return self.request(proxy, host, "/echo", method="POST", body=body)

    def test_keys_are_blocked_and_clean_bodies_pass(self) -> None:
        for label, (rule, body) in secret_shapes.bodies().items():
            with self.subTest(label):
                status, reply, _ = self.post(self.scan, body)
                self.assertEqual(status, 403, reply)
                self.assertIn(b"secret detected by gitleaks: ", reply)
                self.assertIn(rule.encode(), reply)
        status, reply, _ = self.post(self.scan, b'{"content": "def f():\\n    return 1"}')
        self.assertEqual(status, 200, reply)

    def test_a_warn_mode_burst_is_scanned_whole(self) -> None:
        before = len(self.warn.events("warning"))
        burst, statuses = 64, []
        gate = threading.Barrier(burst)

        def one() -> None:
            body = f'{{"aws_access_key_id": "{secret_shapes.aws_access_key()}"}}'.encode()
            gate.wait()
            statuses.append(self.post(self.warn, body)[0])

        threads = [threading.Thread(target=one) for _ in range(burst)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(statuses, [200] * burst)

        def verdicts() -> list[dict[str, object]]:  # gitleaks' (the addon's other detectors log apart)
            return [e for e in self.warn.events("warning")[before:] if e.get("kind") == "dlp_error"
                    or "gitleaks" in str(e.get("reason"))]

        self.warn.wait_for(lambda: len(verdicts()) >= burst, timeout=60)
        self.assertEqual([(e["kind"], e["rules"]) for e in verdicts()], [("dlp", ["aws-access-token"])] * burst,
                         verdicts()[:3])

    def test_the_scanner_down_fails_closed(self) -> None:
        self.scanner.stop()
        try:
            status, reply, _ = self.post(self.scan, b"hello")
            self.assertEqual(status, 403, reply)
            self.assertIn(b"DLP scan failed: the scanner is not answering on", reply)
            self.assertIn(b"(failing closed)", reply)
            status, _, _ = self.post(self.scan, b"hello", host="localhost")  # a skip host needs no scanner
            self.assertEqual(status, 200)
        finally:
            type(self).scanner = ScannerProcess(self.sock)
        self.assertEqual(self.post(self.scan, b"hello")[0], 200)  # back: the addon's pool reconnects


if __name__ == "__main__":
    unittest.main()
