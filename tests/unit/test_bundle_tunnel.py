"""The addon's own CONNECT to pipelock (bundle/tunnel.py), against stand-in proxies on loopback."""

from __future__ import annotations

import asyncio
import unittest

from claude_bottle.bundle import tunnel


class PureTest(unittest.TestCase):
    def test_connect_request_brackets_ipv6_and_sends_idna(self) -> None:
        self.assertEqual(tunnel.connect_request("::1", 22), b"CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n\r\n")
        self.assertIn(b"CONNECT xn--mnchen-3ya.de:443 ", tunnel.connect_request("münchen.de", 443))

    def test_parse_head(self) -> None:
        head = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n\r\n"
        self.assertEqual(tunnel.parse_head(head), (403, b"Forbidden", 25))
        self.assertEqual(tunnel.parse_head(b"HTTP/1.1 200 Connection Established\r\n\r\n")[0], 200)
        with self.assertRaises(ValueError):
            tunnel.parse_head(b"SSH-2.0-x\r\n\r\n")

    def test_reason_drops_pipelock_prefix_and_control_characters(self) -> None:
        self.assertEqual(tunnel.reason_text(403, b"Forbidden", b"CONNECT blocked: domain not in allowlist\n"),
                         "domain not in allowlist")
        self.assertEqual(tunnel.reason_text(403, b"Forbidden", b""), "Forbidden")
        self.assertEqual(tunnel.reason_text(403, b"", b"blocked: a\x1b[31mb\n"), "a?[31mb")
        self.assertEqual(len(tunnel.reason_text(403, b"", b"x" * 5000)), tunnel.REASON_LIMIT)

    def test_only_policy_statuses_count_as_blocked(self) -> None:
        self.assertTrue(tunnel.Refused(403, "").blocked)
        self.assertTrue(tunnel.Refused(429, "").blocked)
        self.assertFalse(tunnel.Refused(502, "tunnel dial failed").blocked)
        self.assertFalse(tunnel.Refused(0, "no answer").blocked)


async def _proxy(reply: bytes, then: bytes = b"") -> tuple[asyncio.base_events.Server, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(reply + then)
        await writer.drain()
        if reply.startswith(b"HTTP/1.1 200"):
            data = await reader.read(100)
            writer.write(b"echo:" + data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


class OpenTunnelTest(unittest.TestCase):
    def run_with(self, reply: bytes, then: bytes = b"") -> tuple[object, list[bytes], bytes]:
        async def go() -> tuple[object, list[bytes], bytes]:
            server, seen = await _proxy(reply, then)
            port = server.sockets[0].getsockname()[1]
            got = await tunnel.open_tunnel(("127.0.0.1", port), "example.com", 3306, 5)
            data = b""
            if isinstance(got, tunnel.Tunnel):
                data = await got.reader.read(100)  # what the server said first, already behind the 200
                got.writer.write(b"ping")
                data += await got.reader.read(100)
                got.close()
            server.close()
            return got, seen, data

        return asyncio.run(go())

    def test_tunnel_keeps_a_greeting_sent_right_behind_the_200(self) -> None:
        got, seen, data = self.run_with(b"HTTP/1.1 200 Connection Established\r\n\r\n", b"220 smtp ready\r\n")
        self.assertIsInstance(got, tunnel.Tunnel)
        self.assertEqual(seen, [b"CONNECT example.com:3306 HTTP/1.1\r\nHost: example.com:3306\r\n\r\n"])
        self.assertEqual(data, b"220 smtp ready\r\necho:ping")

    def test_refusal_carries_pipelock_reason(self) -> None:
        body = b"CONNECT blocked: SSRF: private address\n"
        got, _, _ = self.run_with(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertEqual(got, tunnel.Refused(403, "SSRF: private address"))

    def test_no_proxy_is_a_refusal_that_says_so(self) -> None:
        async def go() -> object:
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            server.close()
            await server.wait_closed()
            return await tunnel.open_tunnel(("127.0.0.1", port), "example.com", 443, 2)

        got = asyncio.run(go())
        self.assertIsInstance(got, tunnel.Refused)
        assert isinstance(got, tunnel.Refused)
        self.assertEqual(got.status, 0)
        self.assertIn("pipelock did not answer the CONNECT for example.com:443", got.reason)

    def test_garbage_reply_is_refused(self) -> None:
        got, _, _ = self.run_with(b"SSH-2.0-not-a-proxy\r\n\r\n")
        self.assertIsInstance(got, tunnel.Refused)


class StandInTest(unittest.TestCase):
    def test_accepts_once_then_closes(self) -> None:
        async def go() -> tuple[bytes, bool]:
            stand_in = tunnel.StandIn()
            host, port = await stand_in.start()
            reader, writer = await asyncio.open_connection(host, port)
            first = await reader.read(10)  # closed at once: nothing is ever served here
            writer.close()
            await asyncio.sleep(0.05)
            try:
                await asyncio.open_connection(host, port)
                again = True
            except OSError:
                again = False
            return first, again

        first, again = asyncio.run(go())
        self.assertEqual(first, b"")
        self.assertFalse(again, "the stand-in must not accept a second connection")


if __name__ == "__main__":
    unittest.main()
