"""Text shape helpers and the token views of a text (_Parts), shared by the detectors of detect.py."""

from __future__ import annotations

import math
import re
from collections.abc import Callable


# ---------- small helpers ----------


def _entropy(s: str) -> float:
    n = len(s)
    if n == 0:
        return 0.0
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _classes(s: str) -> int:
    """How many of lower, upper, digit, other a string uses."""
    lower = upper = digit = other = 0
    for c in s:
        if "a" <= c <= "z":
            lower = 1
        elif "A" <= c <= "Z":
            upper = 1
        elif "0" <= c <= "9":
            digit = 1
        else:
            other = 1
    return lower + upper + digit + other


def _class_of(c: str) -> int:
    if "a" <= c <= "z":
        return 0
    if "A" <= c <= "Z":
        return 1
    if "0" <= c <= "9":
        return 2
    return 3


def _switch_ratio(s: str) -> float:
    """Share of neighbouring characters of different classes: about 0.6 for random base62, under
    0.3 for words, camelCase and paths."""
    if len(s) < 2:
        return 0.0
    prev = _class_of(s[0])
    n = 0
    for c in s[1:]:
        k = _class_of(c)
        n += k != prev
        prev = k
    return n / (len(s) - 1)


_VOWELS = frozenset("aeiouyAEIOUY")
_HUMPS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_PIECE_SPLIT = re.compile(r"[_\-.\s/:]+")
_ANY_SPLIT = re.compile(r"[^A-Za-z0-9]+")


def _wordy_piece(p: str) -> bool:
    """camelCase, CONSTANT, snake pieces: humps of words (AWSAccessKeyId, IAmSensitive, RIPEMD160state)
    rather than the one- and two-character humps of random text (Xk9mP2vL8q)."""
    if not p.isalnum() or not p.isascii():
        return False
    if len(p) <= 4:
        return True  # k8s, pkg, v1, x509: too short to say anything
    humps = _HUMPS.findall(p)
    alpha = [h for h in humps if h.isalpha()]
    if len(alpha) > 1 and sum(map(len, alpha)) < 2.5 * len(alpha) or sum(len(h) == 1 for h in alpha) > max(1, len(alpha) // 4):
        return False
    # words have vowels (acronyms of up to six capitals aside); random letters mostly don't
    if sum(not h.isdigit() and len(h) > 1 and not (h.isupper() and len(h) <= 6) and not _VOWELS.intersection(h) for h in humps) > 1:
        return False
    digits = [h for h in humps if h.isdigit()]
    return len(digits) <= 2 and all(len(h) <= 4 for h in digits) and not humps[0].isdigit() or len(humps) == 1 and p.isdigit() and len(p) <= 4


def _wordy(s: str, any_sep: bool = False) -> bool:
    """Made of words (snake_case, kebab-case, camelCase, CONSTANT_CASE, dotted, paths), not random. With
    any_sep, also words joined by other punctuation (geheim$parole, a docs example of a password)."""
    pieces = [p for p in _PIECE_SPLIT.split(s) if p and not _ANY_SPLIT.fullmatch(p)]
    if pieces and all(_wordy_piece(p) for p in pieces):
        return True
    # a slug: words with numbers and short hex ids among them (how-to-x-46a63d6da4de, 325462-manual)
    if len(pieces) >= 3:
        words = sum(p.isalpha() and len(p) >= 2 and _wordy_piece(p) for p in pieces)
        if words * 2 >= len(pieces) and all(_wordy_piece(p) or p.isdigit() or (len(p) <= 24 and _HEX.fullmatch(p)) for p in pieces):
            return True
    if any_sep:
        words = [p for p in _ANY_SPLIT.split(s) if p]
        return len(words) > 1 and all(w.isalpha() and len(w) >= 3 and _wordy_piece(w) for w in words)
    return False


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def _texty(s: str, strict: float = 0.97) -> bool:
    """Mostly printable: what a secret, a config file or prose decodes to (random bytes do not)."""
    if not s:
        return False
    sample = s if len(s) <= 65536 else s[:32768] + s[-32768:]
    return len(_CTRL.findall(sample)) <= (1 - strict) * len(sample)


def _printable_ascii(b: bytes, strict: float = 0.97) -> bool:
    if not b:
        return False
    sample = b if len(b) <= 65536 else b[:65536]
    bad = len(sample) - len(sample.translate(None, _NONPRINT_BYTES))
    return bad <= (1 - strict) * len(sample)


_NONPRINT_BYTES = bytes(c for c in range(256) if c < 0x20 and c not in (9, 10, 13) or c >= 0x7F)

# ---------- token views ----------
# The regex engine tries a pattern at every position unless it starts with a literal or a narrow
# class, about 30 ms a MiB a pattern: candidates are cut out with str.translate and split instead
# (C speed), and only they are looked at further. Patterns over whole texts start with a literal.

# '%' is kept inside runs so that a percent-encoded string is one run (the decoded layer has its pieces)
_B64CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-%")
_IDCHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~$")
def _table(keep: Callable[[str], str], other: str = " ") -> bytes:
    """A bytes.translate table: ASCII mapped by keep, the rest (non-ASCII text) to `other`."""
    return bytes(ord(keep(chr(c))) if c < 128 else ord(other) for c in range(256))


def _tr(text: str, table: bytes) -> str:
    """str.translate at bytes speed, one character for one (str.translate with a dict falls to a
    slow path on non-ASCII text): non-Latin-1 characters map as '?' does, positions stay."""
    return text.encode("latin-1", "replace").translate(table).decode("latin-1")


_B64_TABLE = _table(lambda c: c if c in _B64CHARS else " ")
_ID_TABLE = _table(lambda c: c if c in _IDCHARS else " ")


class _Parts:
    """One text and the candidates cut out of it, each computed once when first asked for."""

    __slots__ = ("text", "_low", "_b64", "_ids")

    def __init__(self, text: str) -> None:
        self.text = text
        self._low: str | None = None
        self._b64: list[str] | None = None
        self._ids: list[str] | None = None

    @property
    def low(self) -> str:
        if self._low is None:
            self._low = self.text.lower() if self.text.isascii() else _tr(self.text, _LOWER)
        return self._low

    @property
    def b64(self) -> list[str]:
        """Runs of base64 characters (either alphabet) of 16 and more, each once; split at an '='
        that is not padding."""
        if self._b64 is None:
            out: set[str] = set()
            for t in _tr(self.text, _B64_TABLE).split():
                if len(t) >= 16:
                    if "=" in t.rstrip("="):
                        out.update(p for p in t.split("=") if len(p) >= 16)
                    else:
                        out.add(t)
            self._b64 = list(out)
        return self._b64

    @property
    def ids(self) -> list[str]:
        """Runs of token characters (letters, digits, _ - . ~ $) of 8 and more, each once."""
        if self._ids is None:
            self._ids = list({u for t in _tr(self.text, _ID_TABLE).split() if len(u := t.rstrip(".")) >= 8})
        return self._ids


_HEX = re.compile(r"[0-9a-fA-F]+")


_LOWER = _table(str.lower, "?")  # ASCII letters lowered, one character for one
