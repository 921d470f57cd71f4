"""The text layers: percent-encoding, HTML entities, \\u / \\x escapes, base64 (both alphabets,
wrapped over lines), base32, hex (plain, delimited, dumps) and string concatenation (for detect.py)."""

from __future__ import annotations

import base64
import binascii
import html
import os
import re
import sys
import urllib.parse

if __package__:  # the tests import this as claude_bottle.bundle.detect_decode
    from claude_bottle.bundle.detect_text import _HEX, _Parts, _printable_ascii, _table, _tr
    from claude_bottle.bundle.detect_hosts import _B32_ATOM
    from claude_bottle.bundle.detect_layers import _Layers, MIN_B64, MIN_HEX, _worth
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _HEX, _Parts, _printable_ascii, _table, _tr  # noqa: E402
    from detect_hosts import _B32_ATOM  # noqa: E402
    from detect_layers import _Layers, MIN_B64, MIN_HEX, _worth  # noqa: E402


_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#\d{2,7}|#[xX][0-9A-Fa-f]{2,6}|[A-Za-z]{2,8});")
_UESC = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[0-7]{3})")
_HEX_SEP = re.compile(r"[0-9A-Fa-f]{2}([:\- ,.|])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2})*(?![0-9A-Fa-f])")
_HEX_BSX = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){8,}")
_HEX_0X = re.compile(r"0[xX][0-9A-Fa-f]{2}(?:[,\s]{1,3}0[xX][0-9A-Fa-f]{2}){7,}")
_HEX_SHAPE = _table(lambda c: "h" if c in "0123456789abcdefABCDEF" else c if c in ":- ,.|" else "x", "x")
_B64_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_HEXCLEAN = re.compile(r"\\x|0[xX]|[^0-9A-Fa-f]")
_HEXDUMP = re.compile(
    r"(?m)^[ \t]*(?:0x)?[0-9a-fA-F]{4,8}:?[ \t]+((?:[0-9a-fA-F]{4}[ \t]){1,8}(?:[0-9a-fA-F]{2}[ \t])?|(?:[0-9a-fA-F]{2}[ \t]{1,2}){1,16})"
)  # xxd and hexdump -C: the offset, then the bytes; the text column is left out
_CONCAT = re.compile(r"""(["'`])[ \t]*\+[ \t]*(?:\\?\r?\n)?[ \t]*\1""")
_IDENT_ONLY = re.compile(r"[a-z_]+|[A-Z_]+|\d+")


class _Decoder(_Layers):
    def _decode(self, parts: _Parts, where: str, layers: tuple[str, ...], kind: str) -> None:
        text = parts.text
        child = "dec"
        words: list[str] | None = None
        # Percent-encoding, HTML entities, \u and \x escapes: each whitespace-separated token that
        # has them, decoded on its own (a form body is one token; a JSON value is one).
        for marker, layer in (("%", "url"), ("&", "html"), ("\\", "escapes")):
            if marker not in text:
                continue
            if words is None:
                words = list(set(text.split()))
            for w in words:
                if marker not in w:
                    continue
                if layer == "url":
                    if _PCT.search(w) is None:
                        continue
                    raw = urllib.parse.unquote_to_bytes(w.encode("utf-8", "surrogatepass"))
                    self.spend(len(raw), where)
                    self.binary(raw, where, layers + (layer,), child)
                    continue
                if layer == "html":
                    if len(_ENTITY.findall(w)) < 3:
                        continue
                    out = html.unescape(w)
                else:
                    if len(_UESC.findall(w)) < 4:
                        continue
                    out = _UESC.sub(_unescape_one, w)
                self.spend(len(out), where)
                self.text(out, where, layers + (layer,), child)
        # base64 wrapped over lines (base64(1) wraps at 76, PEM at 64): the lines joined
        if "\n" in text and any(56 <= len(t) <= 80 for t in parts.b64):
            self._b64_blocks(text, where, layers, child)
        for t in parts.b64:
            if _HEX.fullmatch(t) or (t[:2] in ("0x", "0X") and _HEX.fullmatch(t, 2)):
                self._hex(t[2:] if t[1] in "xX" else t, where, layers, child)
            elif _B32_ATOM.fullmatch(t):
                self._b32(t, where, layers, child)
            else:
                self._b64(t, where, layers, child)
        self._hex_delimited(text, where, layers, child)
        if "+" in text:
            windows: list[tuple[int, int]] = []
            for m in _CONCAT.finditer(text):
                a, z = max(0, m.start() - 200), m.end() + 400
                if windows and a <= windows[-1][1]:
                    windows[-1] = (windows[-1][0], z)
                elif len(windows) < 64:
                    windows.append((a, z))
                else:
                    break
            for a, z in windows:  # "ghp_abc" + "def...": the pieces joined, around each join
                joined = _CONCAT.sub("", text[a:z])
                self.spend(len(joined), where)
                self.text(joined, where, layers + ("concat",), child)

    def _b64_blocks(self, text: str, where: str, layers: tuple[str, ...], child: str) -> None:
        lines = text.split("\n")
        block: list[str] = []
        for line in lines + [""]:
            t = line.strip()
            if len(t) >= 16 and _B64_LINE.fullmatch(t) and (not block or len(block[-1]) >= 40):
                block.append(t)
                continue
            if len(block) >= 2:
                self._b64("".join(block), where, layers, child)
            block = [t] if len(t) >= 40 and _B64_LINE.fullmatch(t) else []

    def _b32(self, tok: str, where: str, layers: tuple[str, ...], child: str) -> None:
        try:
            s = tok.upper().rstrip("=")
            raw = base64.b32decode(s + "=" * (-len(s) % 8))
        except (binascii.Error, ValueError):
            return
        if _printable_ascii(raw, 0.95) or raw[:2] == b"\x1f\x8b":
            self.spend(len(raw), where)
            self.binary(raw, where, layers + ("base32",), child)

    def _hex_delimited(self, text: str, where: str, layers: tuple[str, ...], child: str) -> None:
        """de:ad:be:ef, DE-AD-BE-EF, "de ad be ef", \\xde\\xad, 0xde, 0xad, and xxd / hexdump -C dumps."""
        if text.count("\\x") >= 8:
            for m in _HEX_BSX.finditer(text):
                self._hex(_HEXCLEAN.sub("", m.group()), where, layers, child)
        if text.count("0x") + text.count("0X") >= 8:
            for m in _HEX_0X.finditer(text):
                self._hex(_HEXCLEAN.sub("", m.group()), where, layers, child)
        shape = _tr(text, _HEX_SHAPE)
        for d in ":- ,.|":
            needle = ("hh" + d) * 7 + "hh"
            i = shape.find(needle)
            while i != -1:
                m = _HEX_SEP.match(text, i)
                if m is None:
                    i = shape.find(needle, i + 1)
                    continue
                self._hex(_HEXCLEAN.sub("", m.group()), where, layers, child)
                i = shape.find(needle, m.end())
        if "\n" in text and shape.find("hhhh hhhh hhhh hhhh") != -1 or shape.find("hh hh hh hh hh hh hh hh  hh") != -1:
            dump = [m.group(1) for m in _HEXDUMP.finditer(text)]
            if len(dump) >= 2:
                self._hex(_HEXCLEAN.sub("", "".join(dump)), where, layers, child)

    def _b64(self, tok: str, where: str, layers: tuple[str, ...], child: str, split: bool = True) -> None:
        core = tok.rstrip("=")
        if len(core) < MIN_B64 or "%" in core or _HEX.fullmatch(core) or _IDENT_ONLY.fullmatch(core):
            return
        raw = _b64decode(core)
        if raw is not None and len(raw) >= 8 and _worth(raw):
            self.spend(len(raw), where)
            self.binary(raw, where, layers + ("base64",), child)
        elif split and 0 < core.count("/") <= 8 and 2 * MIN_B64 <= len(core) <= 2048:  # a path, a base64 segment in it
            for piece in core.split("/"):
                if len(piece) >= MIN_B64:
                    self._b64(piece, where, layers, child, False)

    def _hex(self, tok: str, where: str, layers: tuple[str, ...], child: str) -> None:
        if len(tok) < MIN_HEX or len(tok) % 2:
            tok = tok[: len(tok) // 2 * 2]
            if len(tok) < MIN_HEX:
                return
        raw = bytes.fromhex(tok)
        if _worth(raw):
            self.spend(len(raw), where)
            self.binary(raw, where, layers + ("hex",), child)


def _b64decode(core: str) -> bytes | None:
    if "-" in core or "_" in core:
        if "+" in core or "/" in core:
            return None  # both alphabets: not one base64 string
        core = core.replace("-", "+").replace("_", "/")
    if len(core) % 4 == 1:
        core = core[:-1]
    try:
        return binascii.a2b_base64(core + "=" * (-len(core) % 4))
    except (binascii.Error, ValueError):
        return None


def _unescape_one(m: re.Match[str]) -> str:
    s = m.group()
    if s[1] == "u":
        return chr(int(s[2:], 16))
    if s[1] == "x":
        return chr(int(s[2:], 16))
    return chr(int(s[1:], 8))
