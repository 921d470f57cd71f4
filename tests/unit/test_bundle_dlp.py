"""claude_bottle.bundle.dlp: the addon's gitleaks runner, placeholder swapping, masking and scrubbing.

gitleaks itself is faked with small scripts here; the real binary, when .ci/build-images has built it,
is checked against the exact flags the addon uses.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import zlib

from tests.tools import find_gitleaks
from claude_bottle.bundle import dlp

PH = "claude-bottle-placeholder-TOKEN-0f3a9c2b7d1e4f5a6b8c9d0e1f2a3b4c"  # as random-looking as a real one
REAL = "sk-real-0123456789"




class FakeGitleaks(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-dlp-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def fake(self, body: str) -> list[str]:
        path = os.path.join(self.dir, f"gitleaks-{len(os.listdir(self.dir))}")
        with open(path, "w") as handle:
            handle.write(f"#!{sys.executable}\nimport json, sys, time\ndata = sys.stdin.buffer.read()\n{body}\n")
        os.chmod(path, 0o755)
        return dlp.gitleaks_argv(path, os.path.join(self.dir, "gitleaks.toml"))

    def scan(self, argv: list[str], data: bytes = b"x", timeout: float = 5) -> dlp.ScanResult:
        return asyncio.run(dlp.run_gitleaks(data, argv, timeout, self.dir))

    def test_verdicts(self) -> None:
        self.assertEqual(self.scan(self.fake("sys.exit(0)")), dlp.ScanResult("clean"))
        report = json.dumps([{"RuleID": "github-pat", "Secret": "REDACTED"}, {"RuleID": "aws-access-token"},
                             {"RuleID": "github-pat"}])
        leak = self.scan(self.fake(f"print({report!r}); sys.exit(99)"))
        self.assertEqual(leak, dlp.ScanResult("leak", ("aws-access-token", "github-pat")))
        failed = dlp.ScanResult("error", reason="gitleaks failed (exit 1)")
        self.assertEqual(self.scan(self.fake("sys.exit(1)")), failed)
        self.assertEqual(self.scan(self.fake("print('garbage'); sys.exit(99)")).rules, ("unreadable-report",))

    def test_stdin_reaches_gitleaks(self) -> None:
        argv = self.fake("sys.exit(99 if data == b'exact bytes' else 0)")
        self.assertEqual(self.scan(argv, b"exact bytes").verdict, "leak")

    def test_a_slow_scan_times_out_and_is_killed(self) -> None:
        marker = os.path.join(self.dir, "still-running")
        argv = self.fake(f"time.sleep(2); open({marker!r}, 'w').close()")
        started = time.monotonic()
        result = self.scan(argv, timeout=0.5)
        self.assertEqual(result, dlp.ScanResult("error", reason="gitleaks timed out after 0.5 s"))
        self.assertLess(time.monotonic() - started, 1.5)
        time.sleep(2)
        self.assertFalse(os.path.exists(marker), "the timed-out gitleaks kept running")

    def test_a_missing_binary_is_an_error(self) -> None:
        result = self.scan(dlp.gitleaks_argv("/nonexistent/gitleaks", "/x.toml"))
        self.assertEqual(result.verdict, "error")
        self.assertIn("cannot run gitleaks", result.reason)

    def test_scanner_slots_fail_closed_when_busy(self) -> None:
        argv = self.fake("time.sleep(1)")

        async def two() -> list[dlp.ScanResult]:
            scanner = dlp.Scanner(argv, timeout=5, slots=1, queue_wait=0.2)
            return list(await asyncio.gather(scanner.scan(b"a"), scanner.scan(b"b")))

        results = asyncio.run(two())
        self.assertEqual(sorted(r.verdict for r in results), ["clean", "error"])
        self.assertIn("scanner busy", next(r.reason for r in results if r.verdict == "error"))


@unittest.skipUnless(find_gitleaks(), "gitleaks not built (run .ci/build-images)")
class RealGitleaksTest(unittest.TestCase):
    argv = dlp.gitleaks_argv(find_gitleaks() or "gitleaks")

    def scan(self, data: bytes) -> dlp.ScanResult:
        return asyncio.run(dlp.run_gitleaks(data, self.argv, 30, os.path.dirname(dlp.CONFIG)))

    def test_the_bundle_config_finds_keys_and_redacts(self) -> None:
        key = "AKIA" + "QJ7K2M4N5P6R3S2T"
        found = self.scan(f"aws_access_key_id = {key}".encode())
        self.assertEqual(found, dlp.ScanResult("leak", ("aws-access-token",)))
        self.assertEqual(self.scan(b"def add(a, b):\n    return a + b\n"), dlp.ScanResult("clean"))

    def test_allow_comments_in_the_scanned_text_are_ignored(self) -> None:
        key = "AKIA" + "QJ7K2M4N5P6R3S2T"
        self.assertEqual(self.scan(f"aws_access_key_id = {key}  # gitleaks:allow".encode()).verdict, "leak")

    def test_a_masked_placeholder_is_clean_and_an_unmasked_one_is_not(self) -> None:
        ph = b"claude-bottle-placeholder-ANTHROPIC_API_KEY-0f3a9c2b7d1e4f5a6b8c9d0e1f2a3b4c"
        head = [(b"x-api-key", ph)]
        self.assertEqual(self.scan(dlp.scan_text("https://api.example.com/v1", head, b"", [ph])).verdict, "clean")
        # Masking hides the placeholder and nothing else: a real key beside it is still found.
        key = b"AKIA" + b"QJ7K2M4N5P6R3S2T"
        body = b"aws_access_key_id = " + key + b"\n"
        self.assertEqual(self.scan(dlp.scan_text("https://api.example.com/v1", head, body, [ph])).verdict, "leak")


class SwapTest(unittest.TestCase):
    def test_substring_of_the_header(self) -> None:
        self.assertEqual(dlp.swap(f"Bearer {PH}", PH, REAL), f"Bearer {REAL}")
        self.assertEqual(dlp.swap(PH, PH, REAL), REAL)
        self.assertEqual(dlp.swap("Bearer other", PH, REAL), "Bearer other")

    def test_inside_a_basic_credential(self) -> None:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            value = "Basic " + encode(f"x-access-token:{PH}".encode()).decode()
            swapped = dlp.swap(value, PH, REAL)
            self.assertEqual(base64.b64decode(swapped.split()[1]), f"x-access-token:{REAL}".encode())
        self.assertEqual(dlp.swap("Basic " + base64.b64encode(b"u:p").decode(), PH, REAL),
                         "Basic " + base64.b64encode(b"u:p").decode())
        self.assertEqual(dlp.swap("Basic !!!", PH, REAL), "Basic !!!")

    def test_header_views(self) -> None:
        basic = b"basic " + base64.b64encode(b"u:" + PH.encode())
        self.assertEqual(dlp.header_views(basic), [basic, b"u:" + PH.encode()])
        self.assertEqual(dlp.header_views(b"Bearer x"), [b"Bearer x"])


class ScanTextTest(unittest.TestCase):
    def test_everything_is_there_and_placeholders_are_masked(self) -> None:
        basic = b"Basic " + base64.b64encode(b"u:" + PH.encode())
        text = dlp.scan_text(f"https://h.example/p?q={PH}", [(b"authorization", basic), (b"x-a", b"1")],
                             b"body " + PH.encode(), [PH.encode()])
        self.assertNotIn(PH.encode(), text)
        self.assertIn(b"https://h.example/p?q=" + dlp.MASK, text)
        self.assertIn(b"authorization: u:" + dlp.MASK, text)
        self.assertIn(b"x-a: 1", text)
        self.assertTrue(text.endswith(b"\n\nbody " + dlp.MASK))


class ScrubberTest(unittest.TestCase):
    pairs = [(REAL.encode(), PH.encode()), (b"second-real", b"claude-bottle-placeholder-B-" + b"0" * 32)]

    def feed(self, chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
        scrub = dlp.Scrubber(self.pairs)
        out = [scrub(c) for c in chunks] + [scrub(b"")]
        return b"".join(out), out

    def test_a_value_split_anywhere_is_replaced(self) -> None:
        data = b"data: you sent Bearer " + REAL.encode() + b" and second-real\n\n"
        expected = dlp.scrub(data, self.pairs)
        self.assertNotIn(REAL.encode(), expected)
        for cut in range(1, len(data) - 1):
            for cut2 in sorted({cut + 1, min(len(data) - 1, cut + 7)}):  # no empty chunk: b"" ends a stream
                with self.subTest(cut=cut, cut2=cut2):
                    joined, _ = self.feed([data[:cut], data[cut:cut2], data[cut2:]])
                    self.assertEqual(joined, expected)

    def test_events_are_not_held_back(self) -> None:
        _, out = self.feed([b"data: 1\n\n", b"data: 2\n\n"])
        self.assertEqual(out, [b"data: 1\n\n", b"data: 2\n\n", b""])
        _, out = self.feed([b"data: sk-", b"real-0123456789\n\n"])  # only a possible start of a value waits
        self.assertEqual(out, [b"data: ", PH.encode() + b"\n\n", b""])

    def test_the_end_of_the_stream_flushes(self) -> None:
        joined, out = self.feed([b"ends with sk-re"])
        self.assertEqual(out, [b"ends with ", b"sk-re"])
        self.assertEqual(joined, b"ends with sk-re")


class EncodedFormsTest(unittest.TestCase):
    pairs = [(REAL.encode(), PH.encode())]

    def test_the_exact_basic_token_sent_comes_back_as_the_placeholder_form(self) -> None:
        sent = dlp.swap("Basic " + base64.b64encode(f"x-access-token:{PH}".encode()).decode(), PH, REAL)
        token = sent.split()[1].encode()
        found = dlp.basic_pairs([b"text/plain", sent.encode(), b"Bearer x"], self.pairs)
        self.assertEqual(found, [(token, base64.b64encode(f"x-access-token:{PH}".encode()))])
        echo = b'{"you sent": "' + sent.encode() + b'"}'
        self.assertEqual(dlp.scrub(echo, dlp.response_pairs(self.pairs, [sent.encode()])),
                         echo.replace(token, found[0][1]))
        self.assertEqual(dlp.basic_pairs([b"Basic " + base64.b64encode(b"u:other")], self.pairs), [])

    def test_base64_of_any_text_holding_the_value_is_scrubbed_at_every_alignment(self) -> None:
        pairs = dlp.response_pairs(self.pairs)
        alphabets = ((base64.b64encode, base64.b64decode), (base64.urlsafe_b64encode, base64.urlsafe_b64decode))
        for encode, decode in alphabets:
            for prefix in range(6):
                with self.subTest(encode=encode.__name__, prefix=prefix):
                    text = encode(b"#" * prefix + b'{"authorization": "Bearer ' + REAL.encode() + b'"}')
                    clean = dlp.scrub(text, pairs)
                    self.assertNotEqual(clean, text)
                    clean = clean[: len(clean) - (len(clean) % 4 == 1)]
                    self.assertNotIn(REAL.encode(), decode(clean + b"=" * (-len(clean) % 4)))

    def test_short_values_get_no_base64_forms(self) -> None:
        self.assertEqual(dlp.encoded_pairs([(b"8 bytes!", b"placeholder")]), [])
        self.assertEqual(len(dlp.encoded_pairs([(b"9 bytes!!", b"placeholder")])), 1)  # one alignment is long enough
        self.assertEqual(len(dlp.encoded_pairs(self.pairs)), 3)  # three alignments, one alphabet (no + or /)
        self.assertEqual(len(dlp.encoded_pairs([(b"\xfb\xff" * 9, b"placeholder")])), 6)  # + and / differ

    def test_content_codings(self) -> None:
        self.assertEqual(dlp.content_codings(""), [])
        self.assertEqual(dlp.content_codings("identity"), [])
        self.assertEqual(dlp.content_codings(" GZip "), ["gzip"])
        self.assertEqual(dlp.content_codings("deflate, br"), ["deflate", "br"])


class ResponseStreamTest(unittest.TestCase):
    pairs = [(REAL.encode(), PH.encode())]
    plain = b"data: you sent Bearer " + REAL.encode() + b"\n\n" + os.urandom(3000).hex().encode() + b"\n\n"

    def run_stream(self, chunks: list[bytes], coding: str | None = None) -> tuple[list[list[bytes]], list[str]]:
        errors: list[str] = []
        stream = dlp.ResponseStream(self.pairs, coding, errors.append)
        return [stream(c) for c in chunks] + [stream(b"")], errors

    def test_a_held_back_chunk_is_no_chunk_not_an_empty_one(self) -> None:
        # b"" would be sent as a chunk, and for HTTP/1 chunked replies that is the end marker.
        out, _ = self.run_stream([b"data: 1\n\n", REAL[:8].encode(), REAL[8:].encode() + b"\n\n"])
        self.assertEqual(out, [[b"data: 1\n\n"], [], [PH.encode() + b"\n\n"], []])

    def test_compressed_streams_are_decoded_and_scrubbed_wherever_they_are_cut(self) -> None:
        expected = dlp.scrub(self.plain, self.pairs)
        bodies = {"gzip": gzip.compress(self.plain), "x-gzip": gzip.compress(self.plain),
                  "deflate": zlib.compress(self.plain)}
        raw = zlib.compressobj(wbits=-15)
        bodies["deflate (raw)"] = raw.compress(self.plain) + raw.flush()
        for coding, body in bodies.items():
            for cut in [1, 2, 3, *range(10, len(body), 97)]:
                with self.subTest(coding=coding, cut=cut):
                    out, errors = self.run_stream([body[:cut], body[cut:]], coding.split()[0])
                    self.assertEqual(errors, [])
                    self.assertEqual(b"".join(c for chunks in out for c in chunks), expected)
                    self.assertTrue(all(c for chunks in out for c in chunks))

    def test_gzip_members_back_to_back_and_trailing_bytes(self) -> None:
        body = gzip.compress(b"one ") + gzip.compress(REAL.encode())
        out, errors = self.run_stream([body], "gzip")
        self.assertEqual((b"".join(sum(out, [])), errors), (b"one " + PH.encode(), []))
        out, errors = self.run_stream([gzip.compress(b"x") + b"\0\0junk"], "gzip")
        self.assertEqual((b"".join(sum(out, [])), errors), (b"x", []))

    def test_an_empty_compressed_body_is_fine(self) -> None:
        self.assertEqual(self.run_stream([], "gzip"), ([[]], []))

    def test_corrupt_or_cut_short_data_fails_once_and_passes_nothing_more(self) -> None:
        body = gzip.compress(self.plain)
        cases = {"corrupt": [body[:20], b"\xff" * 50, body[70:]], "cut short": [body[: len(body) // 2]]}
        for label, chunks in cases.items():
            with self.subTest(label):
                out, errors = self.run_stream(chunks, "gzip")
                self.assertEqual(len(errors), 1)
                self.assertIn("cannot decode the streamed response body", errors[0])
                self.assertNotIn(REAL.encode(), b"".join(sum(out, [])))
                self.assertEqual(out[-1], [])
        self.assertIn("ended early", errors[0])

    def test_a_well_compressed_chunk_comes_out_in_bounded_pieces(self) -> None:
        bomb = gzip.compress(b"\0" * (8 << 20))
        pieces = list(dlp.Inflater("gzip").feed(bomb))
        self.assertEqual(sum(map(len, pieces)), 8 << 20)
        self.assertLessEqual(max(map(len, pieces)), dlp.Inflater.PIECE)

    def test_a_replacement_passes_its_body_once(self) -> None:
        stream = dlp.Replacement(b"refused\n")
        self.assertEqual([stream(b"server bytes"), stream(b"more"), stream(b"")], [[b"refused\n"], [], []])
        stream = dlp.Replacement(b"refused\n")
        self.assertEqual(stream(b""), [b"refused\n"])  # a reply with no body at all


if __name__ == "__main__":
    unittest.main()
