"""claude_bottle.bundle.dlp: request bodies decoded within a bound, and what scan_text makes of headers
(a WebSocket handshake's random key, a value split over two lines of one header name).

The bombs are zeros compressed piece by piece: the inflated bytes never exist in this process.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import secrets
import string
import tracemalloc
import unittest
import zlib

from claude_bottle.bundle import dlp
from tests.tools import find_gitleaks

MiB = 1 << 20


def gzip_bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    return b"".join(c.compress(zeros) for _ in range(size // MiB)) + c.flush()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def github_token() -> str:
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


class DecodeBodyTest(unittest.TestCase):
    def test_each_coding_is_undone(self) -> None:
        text = b"hello, world\n" * 100
        cases = {
            "": text,
            "identity": text,
            "none": text,
            "gzip": gzip.compress(text),
            "x-gzip": gzip.compress(text),
            "GZIP": gzip.compress(text),
            "deflate": zlib.compress(text),
        }
        for coding, raw in cases.items():
            with self.subTest(coding):
                self.assertEqual(dlp.decode_body(raw, coding), dlp.Decoded(text, False))
        with self.subTest("raw deflate, as some clients send it"):
            self.assertEqual(dlp.decode_body(raw_deflate(text), "deflate"), dlp.Decoded(text, False))

    def test_stacked_codings_are_undone_last_first(self) -> None:
        raw = gzip.compress(zlib.compress(b"inner"))
        self.assertEqual(dlp.decode_body(raw, "deflate, gzip").body, b"inner")
        self.assertEqual(dlp.decode_body(gzip.compress(gzip.compress(b"x")), "gzip, identity, gzip").body, b"x")

    def test_gzip_members_back_to_back_and_bytes_after_the_end(self) -> None:
        self.assertEqual(dlp.decode_body(gzip.compress(b"one ") + gzip.compress(b"two"), "gzip").body, b"one two")
        # What follows the compressed data is scanned as it is: a server that keeps the body gets it too.
        self.assertEqual(dlp.decode_body(gzip.compress(b"body") + b"\nafter", "gzip").body, b"body\nafter")
        self.assertEqual(dlp.decode_body(zlib.compress(b"body") + b"after", "deflate").body, b"bodyafter")

    def test_an_empty_body_is_empty_under_any_stdlib_coding(self) -> None:
        for coding in ("gzip", "deflate", ""):
            self.assertEqual(dlp.decode_body(b"", coding), dlp.Decoded(b"", False))

    def test_corrupt_or_cut_off_data_raises(self) -> None:
        whole = gzip.compress(os.urandom(2000))
        cases = [("cut", whole[:-10], "gzip"), ("header only", whole[:10], "gzip"),
                 ("garbage", b"not gzip at all", "gzip"), ("bad deflate", b"\xff" * 20, "deflate")]
        for label, raw, coding in cases:
            with self.subTest(label), self.assertRaises(ValueError):
                dlp.decode_body(raw, coding)

    def test_codings_without_a_bounded_decoder_raise_and_name_nothing_sent(self) -> None:
        for coding in ("br", "zstd", "compress"):
            with self.subTest(coding), self.assertRaisesRegex(ValueError, f"^{coding} cannot be decoded"):
                dlp.decode_body(b"x", coding)
        token = github_token()
        with self.assertRaises(ValueError) as caught:
            dlp.decode_body(b"x", f"gzip, {token}")
        self.assertNotIn(token, str(caught.exception))
        self.assertEqual(str(caught.exception), "an unknown coding")

    def test_the_limit_is_exact(self) -> None:
        self.assertEqual(dlp.decode_body(gzip.compress(b"a" * 100), "gzip", 100), dlp.Decoded(b"a" * 100, False))
        self.assertEqual(dlp.decode_body(gzip.compress(b"a" * 101), "gzip", 100), dlp.Decoded(b"a" * 101, True))
        self.assertEqual(dlp.decode_body(b"a" * 101, "", 100).over, True)
        # Bytes after the end count too.
        self.assertTrue(dlp.decode_body(gzip.compress(b"a" * 90) + b"b" * 11, "gzip", 100).over)
        # An inner stage over the limit: over, without decoding further.
        decoded = dlp.decode_body(gzip.compress(gzip.compress(os.urandom(300))), "gzip, gzip", 100)
        self.assertEqual((len(decoded.body), decoded.over), (101, True))

    def test_a_bomb_stops_past_the_limit_in_bounded_memory_and_time(self) -> None:
        bomb = gzip_bomb(512 * MiB)  # ~500 KB
        for stacked in (False, True):
            with self.subTest(stacked=stacked):
                raw, coding = (gzip.compress(bomb), "gzip, gzip") if stacked else (bomb, "gzip")
                tracemalloc.start()
                try:
                    decoded = dlp.decode_body(raw, coding, 4 * MiB)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                self.assertTrue(decoded.over)
                self.assertEqual(len(decoded.body), 4 * MiB + 1)
                self.assertLess(peak, 4 * (4 * MiB) + 2 * len(raw))

    def test_inflate_bounded_reports_more(self) -> None:
        self.assertEqual(dlp.inflate_bounded(gzip.compress(b"abcdef"), "gzip", 3), (b"abc", True))
        self.assertEqual(dlp.inflate_bounded(gzip.compress(b"abc"), "gzip", 3), (b"abc", False))
        self.assertEqual(dlp.inflate_bounded(b"", "deflate", 3), (b"", False))


class WebSocketKeyTest(unittest.TestCase):
    def test_random_keys_are_left_out(self) -> None:
        for _ in range(200):
            self.assertEqual(dlp.websocket_key_views(base64.b64encode(os.urandom(16))), [])

    def test_a_printable_key_is_scanned_as_text(self) -> None:
        # RFC 6455's own sample key, which some tools still send: its 16 bytes are text.
        self.assertEqual(dlp.websocket_key_views(b"dGhlIHNhbXBsZSBub25jZQ=="), [b"the sample nonce"])

    def test_any_other_shape_is_not_a_key(self) -> None:
        key = base64.b64encode(os.urandom(16))
        for label, value in {
            "longer": base64.b64encode(os.urandom(32)),
            "shorter": base64.b64encode(os.urandom(15)),
            "non-canonical last character": key[:21] + b"B==",
            "url-safe alphabet": b"-_" + key[2:],
            "no padding": key[:22],
            "spaces": b" " + key,
            "token": github_token().encode(),
        }.items():
            with self.subTest(label):
                self.assertIsNone(dlp.websocket_key_views(value))


class ScanTextHeadersTest(unittest.TestCase):
    def test_a_valid_key_is_left_out_of_the_scan(self) -> None:
        key = base64.b64encode(os.urandom(16))
        text = dlp.scan_text("https://h/ws", [(b"Sec-WebSocket-Key", key), (b"Sec-WebSocket-Version", b"13")], b"", [])
        self.assertNotIn(key, text)
        self.assertIn(b"Sec-WebSocket-Version: 13", text)

    def test_the_exemption_is_only_for_that_header_once(self) -> None:
        key = base64.b64encode(os.urandom(16))
        other = dlp.scan_text("u", [(b"X-Key", key)], b"", [])
        self.assertIn(b"X-Key: " + key, other)
        twice = dlp.scan_text("u", [(b"sec-websocket-key", key), (b"sec-websocket-key", key)], b"", [])
        self.assertIn(b"sec-websocket-key: " + key, twice)

    def test_values_of_one_header_name_are_also_scanned_run_together(self) -> None:
        headers = [(b"X-Note", b"first-half"), (b"Accept", b"*/*"), (b"x-note", b"second-half")]
        text = dlp.scan_text("u", headers, b"", [])
        self.assertIn(b"X-Note: first-half\n", text)
        self.assertIn(b"x-note: first-halfsecond-half\n", text)
        self.assertEqual(text.count(b"*/*"), 1)  # a header sent once is not repeated

    def test_a_placeholder_split_over_two_lines_is_masked_whole(self) -> None:
        ph = b"claude-bottle-placeholder-TOKEN-0f3a9c2b7d1e4f5a6b8c9d0e1f2a3b4c"
        text = dlp.scan_text("u", [(b"X-A", ph[:20]), (b"X-A", ph[20:])], b"", [ph])
        self.assertIn(b"x-a: " + dlp.MASK + b"\n", text)


@unittest.skipUnless(find_gitleaks(), "gitleaks not installed (.ci/build-images builds it)")
class RealGitleaksHeadersTest(unittest.TestCase):
    def scan(self, headers: list[tuple[bytes, bytes]]) -> dlp.ScanResult:
        argv = dlp.gitleaks_argv(find_gitleaks() or "gitleaks")
        return asyncio.run(dlp.run_gitleaks(dlp.scan_text("https://127.0.0.1/ws", headers, b"", []), argv, 20))

    def test_handshakes_with_random_keys_are_clean(self) -> None:
        for _ in range(10):
            key = base64.b64encode(os.urandom(16))
            headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", key),
                       (b"Sec-WebSocket-Version", b"13"),
                       (b"Sec-WebSocket-Extensions", b"permessage-deflate")]
            self.assertEqual(self.scan(headers).verdict, "clean", key)

    def test_a_token_split_over_two_lines_of_one_header_is_found(self) -> None:
        token = github_token().encode()
        self.assertIn("github-pat", self.scan([(b"X-Note", token[:17]), (b"X-Note", token[17:])]).rules)


if __name__ == "__main__":
    unittest.main()
