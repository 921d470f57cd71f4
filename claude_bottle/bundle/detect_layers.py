"""A scan's state and bounds (the decode budget, what it found, the texts queued) and the binary
layers of bytes: gzip, zlib, raw deflate, bzip2, xz, zip members, git packs, UTF-16, strings.
detect.py's _Scan builds on it (through detect_decode)."""

from __future__ import annotations

import bz2
import io
import lzma
import os
import re
import struct
import sys
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator

if __package__:  # the tests import this as claude_bottle.bundle.detect_layers
    from claude_bottle.bundle.detect_text import _printable_ascii, _texty
    from claude_bottle.bundle.detect_secrets import _binary_keys
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _printable_ascii, _texty  # noqa: E402
    from detect_secrets import _binary_keys  # noqa: E402


MAX_DEPTH = 6  # decoding layers below a view as sent (chains of three and more are common)
BUDGET_BASE = 1 << 20  # decoded bytes one request may produce: this, plus 8x its own size ...
BUDGET_MAX = 40 << 20  # ... up to this
INFLATE_MAX = 16 << 20  # what one compressed stream may inflate to (a package tarball, not a bomb)
INFLATE_TOTAL = 32 << 20  # what all the compressed streams of one request may inflate to
ZIP_MEMBERS = 64  # members of one zip archive that are read
MAX_VIEWS = 20000  # texts one request may be read as (each decoded piece is one); past it: decode-limit
MIN_B64 = 16  # shortest base64 / base32 token worth decoding
MIN_HEX = 16  # shortest hex run worth decoding (8 bytes)


_STRINGS = re.compile(rb"[\x20-\x7e\t\r\n]{12,}")


class _Budget(Exception):
    pass


class _Layers:
    def __init__(self, placeholders: Iterable[bytes], size: int) -> None:
        self.placeholders = [p.decode("latin-1") for p in placeholders if p]
        self.budget = min(BUDGET_MAX, BUDGET_BASE + 8 * size)
        self.inflate_left = INFLATE_TOTAL
        self.found: dict[tuple[str, str, str], None] = {}
        self.seen: set[int] = set()
        self.queue: deque[tuple[str, str, tuple[str, ...], str]] = deque()
        self.now = time.time()
        self.over = ""

    def add(self, rule: str, where: str, layers: tuple[str, ...]) -> None:
        self.found[(rule, where, ">".join(layers))] = None

    def inflated(self, n: int, where: str) -> None:
        """Decompressed bytes: bounded on their own (a small body may rightly inflate a lot, a
        tarball), and they bring their own room to decode what is in them."""
        self.inflate_left -= n
        if self.inflate_left < 0:
            self.over = where
            raise _Budget
        self.budget += 2 * n

    def spend(self, n: int, where: str) -> None:
        self.budget -= n
        if self.budget < 0:
            self.over = where
            raise _Budget

    # text views

    def text(self, text: str, where: str, layers: tuple[str, ...], kind: str) -> None:
        self.queue.append((text, where, layers, kind))

    def binary(self, data: bytes, where: str, layers: tuple[str, ...], kind: str) -> None:
        """Bytes (a body, or what a decoder made): their text, what they inflate to, or their strings."""
        if not data:
            return
        for text, layer in self._texts(data, where):
            self.text(text, where, layers + ((layer,) if layer else ()), kind)
        if _binary_keys(data):
            self.add("private-key", where, layers)

    def _texts(self, data: bytes, where: str) -> Iterator[tuple[str, str]]:
        head = data[:8]
        if head[:2] == b"\x1f\x8b":
            yield from self._inflated(data, 16 + zlib.MAX_WBITS, "gzip", where)
            return
        if len(data) > 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0:
            yield from self._inflated(data, zlib.MAX_WBITS, "zlib", where)
            return
        if head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
            yield from self._unpacked(data, "bzip2" if head[:3] == b"BZh" else "xz", where)
            return
        if head[:4] == b"PK\x03\x04":
            yield from self._zip(data, where)
            return
        pack = data.find(b"PACK\x00\x00\x00", 0, 4096)
        if pack != -1 and data[pack + 7 : pack + 8] in (b"\x02", b"\x03"):
            if pack:
                yield data[:pack].decode("latin-1"), ""
            yield from self._pack(data[pack:], where)
            return
        text = _utf16(data)
        if text is not None:
            yield text, "utf-16"
            return
        try:
            text = data.decode("utf-8")
            if _texty(text):
                yield text, ""
                return
        except UnicodeDecodeError:
            pass
        if _printable_ascii(data, 0.95):
            yield data.decode("latin-1"), ""
            return
        # Binary: its printable strings, and a raw deflate stream if it is one.
        strings = b"\n".join(_STRINGS.findall(data[: 8 << 20]))
        if strings:
            self.spend(len(strings), where)
            yield strings.decode("latin-1"), "strings"
        if len(data) >= 16:
            yield from self._inflated(data, -zlib.MAX_WBITS, "deflate", where, quiet=True)

    def _inflated(self, data: bytes, wbits: int, layer: str, where: str, quiet: bool = False) -> Iterator[tuple[str, str]]:
        """Inflate within INFLATE_MAX (more is a bomb, or data hidden behind one: decode-limit). Quiet:
        a guess (raw deflate has no magic), so failing or inflating to non-text says nothing."""
        out = bytearray()
        rest = data
        try:
            while rest:
                d = zlib.decompressobj(wbits)
                out += d.decompress(rest, INFLATE_MAX + 1 - len(out))
                if len(out) > INFLATE_MAX:  # a guess that inflates this far was no guess: a bomb
                    self.over = where
                    raise _Budget
                if not d.eof:
                    if quiet:
                        return
                    break  # truncated: scan what there is
                rest = d.unused_data
                if wbits != 16 + zlib.MAX_WBITS or rest[:2] != b"\x1f\x8b":
                    break  # gzip members may follow each other; other bytes after the end are ignored
        except zlib.error:
            if quiet:
                return
            if not out:  # says it is compressed and is not: the bytes as they are
                yield data.decode("latin-1"), ""
                return
        if quiet and (len(out) < 16 or not _printable_ascii(bytes(out[:4096]), 0.9)):
            return
        self.inflated(len(out), where)
        for text, sub in self._texts(bytes(out), where):
            yield text, layer + (">" + sub if sub else "")

    def _unpacked(self, data: bytes, layer: str, where: str) -> Iterator[tuple[str, str]]:
        d = bz2.BZ2Decompressor() if layer == "bzip2" else lzma.LZMADecompressor()
        try:
            out = d.decompress(data, INFLATE_MAX + 1)
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            yield data.decode("latin-1"), ""
            return
        if len(out) > INFLATE_MAX:
            self.over = where
            raise _Budget
        self.inflated(len(out), where)
        for text, sub in self._texts(out, where):
            yield text, layer + (">" + sub if sub else "")

    def _zip(self, data: bytes, where: str) -> Iterator[tuple[str, str]]:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                infos = z.infolist()[:ZIP_MEMBERS]
                for info in infos:
                    if info.flag_bits & 1 or info.is_dir():
                        continue
                    with z.open(info) as member:
                        out = member.read(INFLATE_MAX + 1)
                    if len(out) > INFLATE_MAX:
                        self.over = where
                        raise _Budget
                    self.inflated(len(out), where)
                    for text, sub in self._texts(out, where):
                        yield text, "zip" + (">" + sub if sub else "")
        except _Budget:
            raise
        except Exception:  # noqa: BLE001 - a damaged or exotic archive: read its bytes as they are
            yield data.decode("latin-1"), ""

    def _pack(self, data: bytes, where: str) -> Iterator[tuple[str, str]]:
        """A git pack (what a push sends): every object inflated, deltas as their literal bytes."""
        try:
            count = struct.unpack(">I", data[8:12])[0]
        except struct.error:
            return
        pos = 12
        texts: list[bytes] = []
        for _ in range(min(count, 100000)):
            if pos >= len(data):
                break
            c = data[pos]
            kind = (c >> 4) & 7
            pos += 1
            while c & 0x80 and pos < len(data):
                c = data[pos]
                pos += 1
            if kind == 6:  # ofs-delta: a variable-length offset
                while pos < len(data) and data[pos] & 0x80:
                    pos += 1
                pos += 1
            elif kind == 7:  # ref-delta: the base's id
                pos += 20
            d = zlib.decompressobj()
            try:
                out = d.decompress(data[pos:], INFLATE_MAX + 1)
            except zlib.error:
                break
            if len(out) > INFLATE_MAX:
                self.over = where
                raise _Budget
            self.inflated(len(out), where)
            texts.append(out)
            if not d.eof:
                break
            pos = len(data) - len(d.unused_data)
        joined = b"\n".join(texts)
        if joined:
            yield joined.decode("utf-8", "replace"), "git-pack"


def _worth(raw: bytes) -> bool:
    """Decoded bytes worth a closer look: text, compressed data, UTF-16, or a key's DER."""
    head = raw[:4]
    if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04" or head[:3] == b"BZh" or head[:4] == b"\xfd7zX":
        return True
    if len(raw) > 2 and raw[0] == 0x78 and (raw[0] << 8 | raw[1]) % 31 == 0:
        return True
    if _binary_keys(raw):
        return True
    return _printable_ascii(raw, 0.95) or _utf16(raw[:512]) is not None or _utf8_texty(raw)


def _utf8_texty(raw: bytes) -> bool:
    if raw.isascii():
        return False
    try:
        return _texty(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def _utf16(data: bytes) -> str | None:
    if len(data) < 8:
        return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        enc = "utf-16"
    else:
        sample = data[:4096]
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) >= 0.4 * len(odd) and even.count(0) <= 0.05 * len(even):
            enc = "utf-16-le"
        elif even.count(0) >= 0.4 * len(even) and odd.count(0) <= 0.05 * len(odd):
            enc = "utf-16-be"
        else:
            return None
    text = data[: len(data) // 2 * 2].decode(enc, "replace")
    return text if _texty(text, 0.9) else None
