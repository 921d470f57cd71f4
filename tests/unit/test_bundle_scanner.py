"""claude_bottle/bundle/scanner: its Go unit tests (`go test ./...`), run when Go is installed; and
dlp.Scanner's socket client against small stand-in servers (the real scanner: tests/integration/test_scanner.py).

The module needs gitleaks v8.30.1 and its dependencies from the Go module proxy (or the module cache);
when Go is missing, or the modules cannot be had, the Go test skips and says which.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from collections.abc import Awaitable, Callable
from pathlib import Path

from claude_bottle.bundle import dlp

SCANNER_SRC = Path(__file__).resolve().parents[2] / "claude_bottle" / "bundle" / "scanner"


def find_go() -> str | None:
    found = shutil.which("go")
    return found or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)


GO = find_go()


@unittest.skipIf(GO is None, "go not installed (the scanner's Go tests need Go >= 1.24.11)")
class GoTest(unittest.TestCase):
    def go(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
        return subprocess.run([GO or "go", *args], cwd=SCANNER_SRC, env=env, capture_output=True, text=True,
                              timeout=timeout)

    def test_go_test(self) -> None:
        print("scanner: go mod download + go test ./... (the first run compiles gitleaks)", file=sys.stderr, flush=True)
        download = self.go("mod", "download", timeout=600)
        if download.returncode != 0:
            self.skipTest(f"the scanner's Go modules cannot be had: {download.stderr.strip()[-300:]}")
        gofmt = Path(GO or "go").with_name("gofmt")
        if gofmt.exists():
            out = subprocess.run([str(gofmt), "-l", "."], cwd=SCANNER_SRC, capture_output=True, text=True, timeout=60)
            self.assertEqual((out.returncode, out.stdout), (0, ""), f"not gofmt-formatted: {out.stdout}{out.stderr}")
        proc = self.go("test", "-tags", "gore2regex", "-count=1", "./...", timeout=900)  # as the image builds it
        self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-4000:])
        self.assertIn("ok", proc.stdout)


class ParseReplyTest(unittest.TestCase):
    def test_verdicts(self) -> None:
        self.assertEqual(dlp.parse_reply(b'{"rules":[]}'), dlp.ScanResult("clean"))
        self.assertEqual(dlp.parse_reply(b'{"rules":["github-pat","aws-access-token","github-pat"]}'),
                         dlp.ScanResult("leak", ("aws-access-token", "github-pat")))
        self.assertEqual(dlp.parse_reply(b'{"rules":["<>"]}'), dlp.ScanResult("leak", ("unnamed-rule",)))
        self.assertEqual(dlp.parse_reply(b'{"error":"scan timed out after 10s"}'),
                         dlp.ScanResult("error", reason="scanner: scan timed out after 10s"))

    def test_anything_else_is_an_error(self) -> None:
        for payload in (b"", b"garbage", b"[]", b'{"rules": "x"}', b'{}', b"\xff\xfe"):
            with self.subTest(payload):
                self.assertEqual(dlp.parse_reply(payload).verdict, "error")


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class SocketClientTest(unittest.TestCase):
    """dlp.Scanner over a Unix socket served by a stand-in written here."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-scan-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "s.sock")

    def run_with(self, handler: Handler, texts: list[bytes], **kw: float) -> list[dlp.ScanResult]:
        writers: list[asyncio.StreamWriter] = []
        tasks: list[asyncio.Task[None]] = []

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def go() -> list[dlp.ScanResult]:
            server = await asyncio.start_unix_server(tracked, self.path)
            scanner = dlp.Scanner(socket_path=self.path, **kw)  # type: ignore[arg-type]
            try:
                return [await scanner.scan(t) for t in texts]
            finally:
                scanner.close()
                server.close()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.sleep(0.01)  # the transports finish closing
                await server.wait_closed()

        return asyncio.run(go())

    @staticmethod
    async def read_frame(reader: asyncio.StreamReader) -> bytes:
        return await reader.readexactly(int.from_bytes(await reader.readexactly(4), "big"))

    def test_each_request_is_one_frame_and_connections_are_reused(self) -> None:
        seen: list[bytes] = []
        connections = []

        async def echo_rules(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            while True:
                data = await self.read_frame(reader)
                seen.append(data)
                reply = b'{"rules":["x"]}' if b"KEY" in data else b'{"rules":[]}'
                writer.write(len(reply).to_bytes(4, "big") + reply)

        results = self.run_with(echo_rules, [b"a", b"KEY", b"", b"b" * 100_000])
        self.assertEqual([r.verdict for r in results], ["clean", "leak", "clean", "clean"])
        self.assertEqual(seen, [b"a", b"KEY", b"", b"b" * 100_000])
        self.assertEqual(len(connections), 1)

    def test_a_connection_closed_while_idle_is_replaced(self) -> None:
        async def one_answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.read_frame(reader)
            writer.write(b"\0\0\0\x0c" + b'{"rules":[]}')
            await writer.drain()
            writer.close()  # like a scanner that restarted since

        results = self.run_with(one_answer_each, [b"a", b"b", b"c"])
        self.assertEqual([r.verdict for r in results], ["clean"] * 3)

    def test_broken_replies_fail_closed(self) -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await self.read_frame(reader)
            if data == b"huge":
                writer.write((64 << 20).to_bytes(4, "big"))
            elif data == b"short":
                writer.write(b"\0\0\0\x10{")
            else:
                writer.write(b"\0\0\0\x03abc")
            await writer.drain()
            writer.close()

        results = self.run_with(garbage, [b"huge", b"short", b"text"])
        self.assertEqual([r.verdict for r in results], ["error"] * 3)
        self.assertIn("ValueError", results[0].reason)
        self.assertIn("IncompleteReadError", results[1].reason)
        self.assertEqual(results[2].reason, "unreadable reply from the scanner")

    def test_a_silent_scanner_times_out_and_a_missing_one_is_an_error(self) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        (result,) = self.run_with(silent, [b"x"], timeout=0.3)
        self.assertEqual(result, dlp.ScanResult("error", reason="the scanner timed out after 0.3 s"))
        missing = asyncio.run(dlp.Scanner(socket_path=os.path.join(self.dir, "none.sock"), timeout=0.3).scan(b"x"))
        self.assertEqual(missing.verdict, "error")
        self.assertIn("the scanner is not answering on", missing.reason)

    def test_a_scanner_still_starting_is_waited_for(self) -> None:
        # The agent starts beside the bundle: its first request may come before the scanner's socket.
        path = os.path.join(self.dir, "late.sock")

        async def go() -> dlp.ScanResult:
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                size = int.from_bytes(await reader.readexactly(4), "big")
                await reader.readexactly(size)
                reply = b'{"rules": []}'
                writer.write(len(reply).to_bytes(4, "big") + reply)
                await writer.drain()

            async def late() -> asyncio.AbstractServer:
                await asyncio.sleep(0.3)
                return await asyncio.start_unix_server(answer, path)

            starting = asyncio.create_task(late())
            result = await dlp.Scanner(socket_path=path, timeout=5).scan(b"x")
            (await starting).close()
            return result

        self.assertEqual(asyncio.run(go()), dlp.ScanResult("clean"))

    def test_the_process_path_is_kept_when_no_socket_is_set(self) -> None:
        scanner = dlp.Scanner(["/nonexistent/gitleaks"], socket_path="")
        result = asyncio.run(scanner.scan(b"x"))
        self.assertIn("cannot run gitleaks", result.reason)


if __name__ == "__main__":
    unittest.main()
