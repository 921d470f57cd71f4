"""Payment and bank data, wallets and seed phrases: cards, IBANs, addresses and extended keys,
BIP-39 phrases (for detect.py)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator

if __package__:  # the tests import this as claude_bottle.bundle.detect_finance
    from claude_bottle.bundle.detect_text import _Parts, _table, _tr
    from claude_bottle.bundle.detect_checks import (
        _B58, _b58check, _bech32_ok, bip39_checksum_ok, _BIP39_INDEX, _BIP39_SET, _eip55_ok, _IBAN_LENGTHS,
        _iban_ok, _luhn_ok,
    )
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _Parts, _table, _tr  # noqa: E402
    from detect_checks import (  # noqa: E402
        _B58, _b58check, _bech32_ok, bip39_checksum_ok, _BIP39_INDEX, _BIP39_SET, _eip55_ok, _IBAN_LENGTHS,
        _iban_ok, _luhn_ok,
    )


# ---------- payment and bank data, wallets, seeds ----------

_CARD = re.compile(
    r"\d(?<![\w.+\-]\d)(?:\d{12,18}|\d{3}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{3}([ \-])\d{4}\2\d{4}\2\d{1,4}"
    r"|\d{3}([ \-])\d{6}\3\d{4,5})(?!\w|\.\d)"
)  # 13 to 19 digits bare, in groups of four, or 4-6-5 / 4-6-4; a digit first, so the engine skips ahead


_ARITH = frozenset("*/^%")


def _card_brand_ok(d: str) -> bool:
    n = len(d)
    two, four = int(d[:2]), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if four == 6011 or 644 <= int(d[:3]) <= 649 or two == 65:
        return n in (16, 19)
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return n in (14, 16)
    if two == 62:
        return 16 <= n <= 19
    if 2200 <= four <= 2204:  # Mir
        return n == 16
    return False


def _cards(text: str) -> Iterator[str]:
    for m in _CARD.finditer(text):
        d = m.group().replace(" ", "").replace("-", "")
        if d == m.group() and (d.endswith("0000") or text[m.end() : m.end() + 1] in _ARITH or text[m.start() - 1 : m.start()] in _ARITH):
            continue  # a bare number in arithmetic, or a round one: maths, not a card
        if 13 <= len(d) <= 19 and _card_brand_ok(d) and _luhn_ok(d):
            yield "card-number"
            return


_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[ \-]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")


_IBAN_LOWER = re.compile(r"[a-z]{2}\d{2}[a-z0-9]{11,30}")


def _ibans(parts: _Parts) -> Iterator[str]:
    text = parts.text
    for t in parts.ids:  # written in lowercase, as one run
        if len(t) <= 34 and _IBAN_LOWER.fullmatch(t) and _iban_ok(t.upper()):
            yield "iban"
            return
    for m in _IBAN.finditer(text):
        compact = m.group().replace(" ", "").replace("-", "")
        length = _IBAN_LENGTHS.get(compact[:2])
        if length and len(compact) >= length and _iban_ok(compact[:length]):
            yield "iban"
            return


_BECH32RUN = re.compile(r"[a-z]{1,15}1[02-9ac-hj-np-z]{38,100}")
_ETH = re.compile(r"0x(?<![A-Za-z0-9]0x)[0-9a-fA-F]{40}(?![0-9a-zA-Z])")
_B58CHARS = frozenset(_B58)
_ALNUM_SPLIT = re.compile(r"[+/=_\-]+")
_XKEY_PRIV = {0x0488ADE4, 0x04358394, 0x049D7878, 0x044A4E28, 0x04B2430C, 0x045F18BC, 0x02AA7A99, 0x02E8DE8F}


def _wallets(parts: _Parts) -> Iterator[str]:
    found: set[str] = set()
    text = parts.text
    pieces: set[str] = set()
    for t in parts.b64:
        if len(t) >= 25:
            pieces.update(p for p in _ALNUM_SPLIT.split(t) if len(p) >= 25)
    for s in pieces:
        if len(s) > 112 or not _B58CHARS.issuperset(s):
            continue
        if not (any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)):
            continue
        payload = _b58check(s)
        if payload is None:
            continue
        if len(payload) in (33, 34) and payload[0] in (0x80, 0xEF, 0xB0, 0x9E, 0xCC):
            found.add("crypto-private-key")  # WIF (bitcoin, testnet, litecoin, dogecoin, dash)
        elif len(payload) == 78:
            version = int.from_bytes(payload[:4], "big")
            found.add("crypto-private-key" if version in _XKEY_PRIV or payload[45] == 0 else "crypto-address")
        elif len(payload) >= 21:
            found.add("crypto-address")
    for s in pieces:
        if s.isupper():
            s = s.lower()  # bech32 is all lowercase or all uppercase
        if _BECH32RUN.fullmatch(s) and _bech32_ok(s):
            found.add("crypto-private-key" if s.startswith("nsec1") else "crypto-address")
    for m in _ETH.finditer(text) if "0x" in text else ():
        h = m.group()[2:]
        if h != h.lower() and h != h.upper() and _eip55_ok(m.group()):
            found.add("crypto-address")
    yield from sorted(found)


# Seed phrases: letters kept (lowercase), separators a phrase is written with become spaces (numbered
# lists, commas, quotes, brackets, dashes), anything else marks its token as not a word.
_SEED_TABLE = _table(lambda c: c if "a" <= c <= "z" else " " if c in " \t\r\n,.;:=&/\"'()[]-+|0123456789" else "#", "#")
_RUN12 = re.compile(b"\x01{12,}")


def _seed_phrases(parts: _Parts) -> Iterator[str]:
    if not _BIP39_INDEX:
        return
    words = _tr(parts.low, _SEED_TABLE).split()
    flags = bytes(map(_BIP39_SET.__contains__, words))
    for m in _RUN12.finditer(flags):
        if _seed_in_run(words[m.start() : m.end()]):
            yield "seed-phrase"
            return


def _seed_in_run(run: list[str]) -> bool:
    """A run of list words: a phrase when it is exactly 12, 15, 18, 21 or 24 words (valid checksum, or
    varied words: at most two repeats) or holds such a phrase with a valid checksum and varied words."""
    n = len(run)
    if n < 12 or n > 48:
        return False  # longer runs are word lists, not phrases
    if n in (12, 15, 18, 21, 24) and (len(set(run)) >= n - 2 or bip39_checksum_ok(run)):
        return True
    for size in (24, 21, 18, 15, 12):
        for start in range(0, n - size + 1):
            window = run[start : start + size]
            if len(set(window)) >= size - 2 and bip39_checksum_ok(window):
                return True
    return False
