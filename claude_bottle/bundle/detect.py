"""Request DLP in pure Python: decoding layers, then validated detectors, for the bundle's addon.

Stdlib only and free of mitmproxy, importable as `claude_bottle.bundle.detect` and as the addon's
sibling module `detect` (no package-relative imports, like policy.py and dlp.py).

    scan(url, headers, body, placeholders=...) -> [Finding(rule, where, layers)]
    denied_service(host)                      -> a reason when the host is a paste, file-drop,
                                                 request-catcher, tunnel or out-of-band service
    label_exfil(host, wildcard_base)          -> a reason when the labels a wildcard rule matched
                                                 carry encoded data

Nothing here returns, logs or keeps a matched value: a Finding names the rule, where it was (the
request's "url", a "header" or the "body") and the decoding layers that reached it ("base64>gzip").
scan() must see the request as the agent sent it: before credentials are injected.

How a request is read. Every part is a view: the URL and its path segments and query values, each
header value (a Basic credential decoded; the values of non-standard headers also joined, for a
token split over two of them), the body. A view is normalised (zero-width and other invisible
characters dropped, NFKC for non-ASCII text, the session's placeholders and anything shaped like a
placeholder masked) and, when it is JSON or JSON lines, read as JSON (every key and string, escapes
undone, duplicate keys kept, byte arrays turned back into bytes). Detectors run on each view; then
decoders look for layers inside it: percent-encoding, HTML entities and \\u / \\x escapes (token by
token), base64 in both alphabets with or without padding and wrapped over lines, hex (plain, with
: - space , . | between bytes, as \\x or 0x, xxd and hexdump -C dumps), base32, string
concatenations ("ab" + "cd"), and binary layers (gzip, zlib, raw deflate, bzip2, xz, zip members,
the objects of a git pack, UTF-16 with or without a BOM, and the printable strings of other binary
data). Each decoded layer is a view again, up to MAX_DEPTH layers deep.

Bounds: one request may decode 1 MiB plus 8 times its own size (at most BUDGET_MAX) plus twice what
it inflates, a compressed stream may inflate to INFLATE_MAX and all of them to INFLATE_TOTAL, and a
request is read as at most MAX_VIEWS texts. Past any of
them the request gets the finding "decode-limit": a zip bomb is refused, never inflated. Candidates
are cut out with str.translate and split (C speed) and whole-text patterns start with a literal or
a narrow class, so the cost is about 0.3 ms for a 1 KiB body and grows linearly (about 0.2 ms a
KiB on one core of these machines).

The detectors, each general, validated where the format has a check:
- provider tokens by prefix (a table of about 170 prefixes: GitHub, GitLab, Slack, Stripe, OpenAI,
  Anthropic, Google, AWS, npm, PyPI, Hugging Face, DigitalOcean, Shopify, SendGrid, Twilio, Vault,
  Doppler, Grafana, ...; Discord bot tokens and Telegram bot tokens by their structure), with the
  body's length and charset and GitHub's and npm's CRC32; a token needs a left edge only (what
  follows it does not matter), and none at all when its checksum holds; also when a line break or
  a string concatenation splits it;
- AWS secret access keys without a prefix: 40 characters that look random (upper and lower case and
  digits, many class changes, high entropy, not words, not base64 of text, not a JWT segment or a
  line of a base64 block), more readily next to an access key id or an AWS key name;
- secrets in config and environment dumps: KEY=VALUE, `export K=V`, YAML, JSON, TOML, INI,
  properties, XML elements and attributes, HTTP header dumps, `--password x`, CSV header and rows,
  .netrc, name/value pairs (Kubernetes and ECS env lists), SQL `IDENTIFIED BY`, command lines
  (mysql -p, sshpass -p, curl -u), connection strings (scheme://user:password@host): the key's
  name must say secret (key_is_secret) and the value must look like one (_value_is_secret: not a
  variable reference, template, placeholder, code expression, path, URL, e-mail, date, number,
  hash, UUID under a weak key, or words);
- private keys: PEM (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted, PGP), PuTTY, age, and OpenSSH and
  DER key bodies without their armour;
- JWTs that look live (alg not none, a signature of the algorithm's length, an expiry in the
  future or a recent issue time) anywhere but an Authorization or Cookie header, where a token is
  how normal API authentication works;
- card numbers (13 to 19 digits bare or in the usual groups, a known IIN range and length, Luhn),
  IBANs (registry length, mod 97; also lowercase), crypto wallets and keys (Base58Check addresses,
  WIF and BIP-32 extended keys, bech32/bech32m addresses and nostr secret keys, Ethereum addresses
  with an EIP-55 checksum) and BIP-39 seed phrases (12 to 24 words of the English list: a run of
  exactly 12, 15, 18, 21 or 24 varied list words, or a checksum-valid phrase inside a longer run);
- high-entropy URL path segments and query values, and hex or base32 text in them (hashes, UUIDs,
  typed ids like cus_..., content addresses, static assets named by a hash and the parameters of
  signed and paginated URLs pass).

Documentation sample keys are credentials here: gitleaks allowlists AWS's own example pair (the
access key id ending in EXAMPLE and the secret ending in EXAMPLEKEY), but a string shaped exactly
like a credential and sent out by an agent is exfiltration whatever it says, and an allowlist of
well-known strings is a hole anyone can read. Nothing in this module excuses a value for being
famous: placeholder words ("your-key-here", "changeme") excuse a value only when what is left
without them is not random, and test card numbers and Stripe test keys count like real ones.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import hashlib
import html
import io
import json
import lzma
import math
import os
import re
import struct
import time
import unicodedata
import urllib.parse
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
WORDLIST = os.path.join(HERE, "bip39_english.txt")

MAX_DEPTH = 6  # decoding layers below a view as sent (chains of three and more are common)
BUDGET_BASE = 1 << 20  # decoded bytes one request may produce: this, plus 8x its own size ...
BUDGET_MAX = 40 << 20  # ... up to this
INFLATE_MAX = 16 << 20  # what one compressed stream may inflate to (a package tarball, not a bomb)
INFLATE_TOTAL = 32 << 20  # what all the compressed streams of one request may inflate to
ZIP_MEMBERS = 64  # members of one zip archive that are read
MAX_VIEWS = 20000  # texts one request may be read as (each decoded piece is one); past it: decode-limit
MIN_B64 = 16  # shortest base64 / base32 token worth decoding
MIN_HEX = 16  # shortest hex run worth decoding (8 bytes)

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Finding:
    rule: str  # e.g. "card-number", "aws-secret-key", "seed-phrase"
    where: str  # "url", "header" or "body"
    layers: str = ""  # the decoding that reached it, outermost first ("base64>gzip"); "" as sent

    def describe(self) -> str:
        via = f" (decoded: {self.layers})" if self.layers else ""
        return f"{self.rule} in the {self.where}{via}"


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


# ---------- checksums ----------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62I = {c: i for i, c in enumerate(_B62)}


def _crc32_base62_ok(body: str) -> bool:
    """GitHub's and npm's token format: 30 random base62 characters, then their CRC32 in 6 base62."""
    if len(body) != 36:
        return False
    n = 0
    for c in body[30:]:
        if c not in _B62I:
            return False
        n = n * 62 + _B62I[c]
    return n == zlib.crc32(body[:30].encode("ascii", "replace"))


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58I = {c: i for i, c in enumerate(_B58)}


def _b58check(s: str) -> bytes | None:
    """The payload of a Base58Check string (version byte included), or None when the check fails."""
    n = 0
    for c in s:
        n = n * 58 + _B58I[c]
    pad = len(s) - len(s.lstrip("1"))
    raw = b"\0" * pad + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")
    if len(raw) < 5:
        return None
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return None
    return payload


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32I = {c: i for i, c in enumerate(_BECH32)}
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_ok(s: str) -> bool:
    """bech32 (BIP-173) or bech32m (BIP-350) checksum of an all-lowercase string."""
    hrp, _, data = s.rpartition("1")
    if not hrp or len(data) < 6:
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    try:
        values += [_BECH32I[c] for c in data]
    except KeyError:
        return False
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _BECH32_GEN[i]
    return chk in (1, 0x2BC830A3)


_KECCAK_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)
_KECCAK_ROT = ((0, 36, 3, 41, 18), (1, 44, 10, 45, 2), (62, 6, 43, 15, 61), (28, 55, 25, 21, 56), (27, 20, 39, 8, 14))
_M64 = (1 << 64) - 1


def keccak256(data: bytes, pad: int = 0x01) -> bytes:
    """Keccak-256 as Ethereum uses it (pad 0x01; hashlib's sha3_256 is the same permutation with pad
    0x06). Pure Python, about 0.2 ms a block: only for the rare EIP-55 candidate."""
    rate = 136
    msg = bytearray(data)
    msg.append(pad)
    msg.extend(b"\0" * (-len(msg) % rate))
    msg[-1] |= 0x80
    a = [0] * 25
    for off in range(0, len(msg), rate):
        for i in range(rate // 8):
            a[i] ^= int.from_bytes(msg[off + 8 * i : off + 8 * i + 8], "little")
        for rc in _KECCAK_RC:
            c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
            d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _M64) for x in range(5)]
            a = [a[i] ^ d[i % 5] for i in range(25)]
            b = [0] * 25
            for x in range(5):
                for y in range(5):
                    r = _KECCAK_ROT[x][y]
                    v = a[x + 5 * y]
                    b[y + 5 * ((2 * x + 3 * y) % 5)] = ((v << r) | (v >> (64 - r))) & _M64 if r else v
            a = [b[i] ^ (~b[(i % 5 + 1) % 5 + 5 * (i // 5)] & b[(i % 5 + 2) % 5 + 5 * (i // 5)]) for i in range(25)]
            a[0] ^= rc
    return b"".join(a[i].to_bytes(8, "little") for i in range(4))


def _eip55_ok(addr: str) -> bool:
    """An Ethereum address (40 hex after 0x) whose letter case is its EIP-55 checksum."""
    hexpart = addr[2:]
    digest = keccak256(hexpart.lower().encode()).hex()
    for c, h in zip(hexpart, digest):
        if c.isalpha() and (c.isupper() != (int(h, 16) >= 8)):
            return False
    return True


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # (the SWIFT IBAN registry's lengths)


def _iban_ok(s: str) -> bool:
    if _IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _load_words() -> tuple[list[str], dict[str, int]]:
    try:
        with open(WORDLIST, encoding="ascii") as handle:
            words = handle.read().split()
    except OSError:
        words = []
    if len(words) != 2048:  # a damaged list would validate nothing: no seed detection at all then
        words = []
    return words, {w: i for i, w in enumerate(words)}


BIP39_WORDS, _BIP39_INDEX = _load_words()
_BIP39_SET = frozenset(BIP39_WORDS)


def bip39_checksum_ok(words: list[str]) -> bool:
    if len(words) not in (12, 15, 18, 21, 24):
        return False
    bits = 0
    for w in words:
        i = _BIP39_INDEX.get(w)
        if i is None:
            return False
        bits = bits << 11 | i
    total = 11 * len(words)
    cs = total // 33
    entropy = (bits >> cs).to_bytes((total - cs) // 8, "big")
    return hashlib.sha256(entropy).digest()[0] >> (8 - cs) == bits & ((1 << cs) - 1)


# ---------- provider tokens by prefix ----------


def _randomish(body: str) -> bool:
    """A token body that is not words: letters with digits or with both cases, changing class often."""
    digit = any(c.isdigit() for c in body)
    upper = any(c.isupper() for c in body)
    lower = any(c.islower() for c in body)
    return (digit and (upper or lower) or upper and lower) and _switch_ratio(body) >= 0.25 and not _wordy(body)


def _slack_ok(body: str) -> bool:
    return re.fullmatch(r"(?:\d{6,15}-){1,3}[A-Za-z0-9]{16,64}", body) is not None or _randomish(body)


def _mixed_case(body: str) -> bool:
    return any(c.islower() for c in body) and any(c.isupper() for c in body) and _switch_ratio(body) >= 0.25


@dataclass(frozen=True)
class _Tok:
    rule: str
    prefixes: tuple[str, ...]
    body: str  # regex for what follows the prefix
    exact: bool = False  # the body has a fixed length: the next character must not continue it
    check: Callable[[str], bool] | None = None  # on the body
    crc: bool = False  # GitHub-style CRC32 in the body's last 6 characters: no boundaries needed
    unless: str = ""  # a regex for what may follow the token and makes it something else


_SIGV4 = r"(?:/|%2[Ff])\d{8}(?:/|%2[Ff])[a-z0-9\-]{2,30}(?:/|%2[Ff])[a-z0-9\-]{2,30}(?:/|%2[Ff])aws4_request"

# The table. Prefixes are matched case-sensitively at a left edge (no letter or digit before).
# Bodies allow the lengths providers have used, not only today's; where a provider has a checksum,
# a body that passes it needs no boundary at all.
_TOKENS: tuple[_Tok, ...] = (
    _Tok("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"[A-Za-z0-9]{36}", exact=True, crc=True),
    _Tok("github-token", ("github_pat_",), r"[A-Za-z0-9]{20,30}_[A-Za-z0-9]{50,70}"),
    _Tok("gitlab-token", ("glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glimt-", "glagent-",
                          "glffct-", "gloas-", "glft-", "glwt-", "GR1348941"), r"[A-Za-z0-9_\-.]{20,300}",
         check=_randomish),
    _Tok("slack-token", ("xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-"),
         r"(?:\d{6,15}-){1,3}[A-Za-z0-9]{16,64}|[0-9A-Za-z\-]{10,250}(?<=[A-Za-z0-9]{10})", check=_slack_ok),
    _Tok("slack-token", ("xoxe.xoxp-", "xoxe.xoxb-", "xoxe-"), r"\d-[A-Za-z0-9]{60,300}"),
    _Tok("slack-token", ("xapp-",), r"\d-[A-Z0-9]{8,14}-\d{8,15}-[A-Za-z0-9]{32,80}"),
    _Tok("slack-webhook", ("hooks.slack.com/services/", "hooks.slack.com/workflows/"),
         r"T[A-Z0-9]{6,}/[AB][A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
    _Tok("discord-webhook", ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
         r"\d{15,22}/[A-Za-z0-9_\-]{50,80}"),
    _Tok("stripe-key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk_prod_", "whsec_"),
         r"[A-Za-z0-9]{16,255}", check=_randomish),
    _Tok("anthropic-key", ("sk-ant-",), r"[a-z]{2,10}\d{0,3}-[A-Za-z0-9_\-]{20,300}"),
    _Tok("openrouter-key", ("sk-or-v1-", "sk-or-"), r"[A-Fa-f0-9]{48,80}"),
    _Tok("openai-key", ("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"), r"[A-Za-z0-9_\-]{30,300}",
         check=_randomish),
    _Tok("api-key", ("sk-",), r"[A-Za-z0-9]{20,200}(?:[_\-][A-Za-z0-9]{4,200})*", check=_randomish),
    _Tok("openai-key", ("T3BlbkFJ",), r"[A-Za-z0-9_\-]{10,200}"),  # "OpenAI" in base64, inside their keys
    _Tok("google-api-key", ("AIza",), r"[A-Za-z0-9_\-]{35}", exact=True),
    _Tok("google-oauth-token", ("ya29.",), r"[A-Za-z0-9_\-.]{30,2000}", check=_randomish),
    _Tok("google-oauth-token", ("1//0",), r"[A-Za-z0-9_\-]{30,500}", check=_randomish),
    _Tok("google-client-secret", ("GOCSPX-",), r"[A-Za-z0-9_\-]{24,40}"),
    # Followed by a SigV4 credential scope (/20240514/us-east-1/s3/aws4_request) an access key id is the
    # public half of a presigned URL or a signed request: what every release download carries.
    _Tok("aws-access-key-id", ("AKIA", "ASIA", "ABIA", "ACCA"), r"[A-Z2-7]{16}", exact=True, unless=_SIGV4),
    _Tok("aws-access-key-id", ("A3T",), r"[A-Z0-9][A-Z2-7]{16}", exact=True, unless=_SIGV4),
    _Tok("npm-token", ("npm_",), r"[A-Za-z0-9]{36}", exact=True, crc=True),
    _Tok("pypi-token", ("pypi-",), r"AgE[A-Za-z0-9_\-]{50,}"),
    _Tok("huggingface-token", ("hf_", "api_org_"), r"[A-Za-z]{30,40}", check=_mixed_case),
    _Tok("digitalocean-token", ("dop_v1_", "doo_v1_", "dor_v1_"), r"[a-f0-9]{64}"),
    _Tok("shopify-token", ("shpat_", "shpca_", "shppa_", "shpss_"), r"[a-fA-F0-9]{32}"),
    _Tok("sendgrid-key", ("SG.",), r"[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{30,50}"),
    _Tok("mailgun-key", ("key-",), r"[0-9a-f]{32}", exact=True),
    _Tok("heroku-token", ("HRKU-",), r"[A-Za-z0-9_\-]{20,100}"),
    _Tok("linear-key", ("lin_api_", "lin_oauth_"), r"[A-Za-z0-9]{32,64}"),
    _Tok("notion-token", ("ntn_",), r"[A-Za-z0-9]{40,60}", check=_randomish),
    _Tok("notion-token", ("secret_",), r"[A-Za-z0-9]{43}", exact=True, check=_randomish),
    _Tok("postman-key", ("PMAK-",), r"[a-f0-9]{24}-[a-f0-9]{34}"),
    _Tok("vault-token", ("hvs.", "hvb.", "hvr."), r"[A-Za-z0-9_\-]{24,400}", check=_randomish),
    _Tok("doppler-token", ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."),
         r"(?:[a-z0-9_]{1,20}\.)?[A-Za-z0-9]{40,60}"),
    _Tok("sentry-token", ("sntrys_", "sntryu_"), r"[A-Za-z0-9_=+/]{30,400}"),
    _Tok("grafana-token", ("glc_",), r"[A-Za-z0-9+/]{32,400}={0,2}"),
    _Tok("grafana-token", ("glsa_",), r"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    _Tok("newrelic-key", ("NRAK-", "NRII-"), r"[A-Z0-9]{27,32}"),
    _Tok("groq-key", ("gsk_",), r"[A-Za-z0-9]{40,60}", check=_randomish),
    _Tok("replicate-token", ("r8_",), r"[A-Za-z0-9]{37}", exact=True, check=_randomish),
    _Tok("perplexity-key", ("pplx-",), r"[A-Za-z0-9]{40,60}", check=_randomish),
    _Tok("xai-key", ("xai-",), r"[A-Za-z0-9]{60,90}", check=_randomish),
    _Tok("langsmith-key", ("lsv2_pt_", "lsv2_sk_"), r"[a-f0-9]{32}_[a-f0-9]{10}"),
    _Tok("pinecone-key", ("pcsk_",), r"[A-Za-z0-9_]{40,100}", check=_randomish),
    _Tok("tavily-key", ("tvly-",), r"[A-Za-z0-9\-]{30,60}", check=_randomish),
    _Tok("supabase-token", ("sbp_",), r"[a-f0-9]{40}"),
    _Tok("supabase-token", ("sb_secret_",), r"[A-Za-z0-9_\-]{20,80}"),
    _Tok("databricks-token", ("dapi",), r"[a-f0-9]{32}(?:-\d)?", exact=True),
    _Tok("figma-token", ("figd_",), r"[A-Za-z0-9_\-]{38,50}"),
    _Tok("atlassian-token", ("ATATT3", "ATCTT3"), r"[A-Za-z0-9_\-=]{150,}"),
    _Tok("bitbucket-token", ("ATBB",), r"[A-Za-z0-9]{28,}", check=_randomish),
    _Tok("age-secret-key", ("AGE-SECRET-KEY-1",), r"[02-9AC-HJ-NP-Z]{58}"),
    _Tok("docker-token", ("dckr_pat_", "dckr_oat_"), r"[A-Za-z0-9_\-]{20,60}"),
    _Tok("flyio-token", ("FlyV1 fm2_", "fm1r_", "fm2_", "fo1_"), r"[A-Za-z0-9+/=_\-]{40,}", check=_randomish),
    _Tok("render-key", ("rnd_",), r"[A-Za-z0-9]{32}", exact=True, check=_randomish),
    _Tok("planetscale-token", ("pscale_tkn_", "pscale_pw_", "pscale_oauth_"), r"[A-Za-z0-9_\-.]{32,64}"),
    _Tok("terraform-token", (".atlasv1.",), r"[A-Za-z0-9_\-=]{60,70}"),
    _Tok("pulumi-token", ("pul-",), r"[a-f0-9]{40}", exact=True),
    _Tok("buildkite-token", ("bkua_",), r"[a-f0-9]{40}", exact=True),
    _Tok("circleci-token", ("CCIPAT_", "CCIPRJ_"), r"[A-Za-z0-9]{20,24}_[a-f0-9]{40}"),
    _Tok("netlify-token", ("nfp_",), r"[A-Za-z0-9]{36}", exact=True, check=_randomish),
    _Tok("azure-client-secret", ("8Q~", "7Q~"), r"[A-Za-z0-9_~.\-]{31,34}"),
    _Tok("facebook-token", ("EAAB", "EAAG", "EAAJ", "EAAI", "EAAC"), r"[A-Za-z0-9]{90,400}", check=_randomish),
    _Tok("square-token", ("sq0atp-", "sq0csp-"), r"[A-Za-z0-9_\-]{22,43}"),
    _Tok("square-token", ("EAAA",), r"[A-Za-z0-9_\-]{60}", exact=True, check=_randomish),
    _Tok("braintree-token", ("access_token$production$", "access_token$sandbox$"), r"[a-z0-9]{16}\$[a-f0-9]{32}"),
    _Tok("mapbox-secret-token", ("sk.eyJ",), r"[A-Za-z0-9_\-]{40,}\.[A-Za-z0-9_\-]{20,}"),
    _Tok("1password-token", ("ops_eyJ",), r"[A-Za-z0-9+/=_\-]{100,}"),
    _Tok("dropbox-token", ("sl.u.", "sl.B", "sl.A"), r"[A-Za-z0-9_\-=]{120,}"),
    _Tok("rubygems-key", ("rubygems_",), r"[a-f0-9]{48}"),
    _Tok("clojars-token", ("CLOJARS_",), r"[a-f0-9]{60}"),
    _Tok("nuget-key", ("oy2",), r"[a-z0-9]{43}", exact=True, check=_randomish),
    _Tok("sourcegraph-token", ("sgp_",), r"(?:[a-f0-9]{16}_)?[a-f0-9]{40}"),
    _Tok("typeform-token", ("tfp_",), r"[A-Za-z0-9_\-.=]{50,70}", check=_randomish),
    _Tok("readme-key", ("rdme_",), r"[a-f0-9]{70}"),
    _Tok("prefect-key", ("pnu_",), r"[A-Za-z0-9]{36}", exact=True, check=_randomish),
    _Tok("frameio-token", ("fio-u-",), r"[A-Za-z0-9_\-=]{60,70}"),
    _Tok("contentful-token", ("CFPAT-",), r"[A-Za-z0-9_\-]{43}"),
    _Tok("dynatrace-token", ("dt0c01.",), r"[A-Z0-9]{24}\.[A-Z0-9]{64}"),
    _Tok("adafruit-key", ("aio_",), r"[A-Za-z0-9]{28}", exact=True, check=_randomish),
    _Tok("scalingo-token", ("tk-us-",), r"[A-Za-z0-9_\-]{48}"),
    _Tok("alibaba-key", ("LTAI",), r"[A-Za-z0-9]{12,20}", exact=True, check=_randomish),
    _Tok("tencent-key", ("AKID",), r"[A-Za-z0-9]{32}", exact=True, check=_randomish),
    _Tok("firebase-messaging-key", (":APA91b",), r"[A-Za-z0-9_\-]{100,}"),
    _Tok("artifactory-token", ("AKCp",), r"[A-Za-z0-9]{69}", exact=True),
    _Tok("shippo-token", ("shippo_live_", "shippo_test_"), r"[a-f0-9]{40}"),
    _Tok("easypost-key", ("EZAK", "EZTK"), r"[A-Za-z0-9]{54}", exact=True),
    _Tok("flutterwave-key", ("FLWSECK-", "FLWSECK_TEST-"), r"[a-f0-9]{32}-X"),
    _Tok("harness-token", ("pat.", "sat."), r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}"),
    _Tok("telegram-bot-token", (":AA",), r"[A-Za-z0-9_\-]{33}", exact=True),
    _Tok("twitter-bearer-token", ("AAAAAAAAAAAAAAAAAAAAA",), r"[A-Za-z0-9%]{30,200}",
         check=lambda b: "%" in b and _randomish(b) and b.count("A") < len(b) // 3),
    _Tok("private-key", ("b3BlbnNzaC1rZXktdjE",), r"[A-Za-z0-9+/=]{40,}"),  # "openssh-key-v1" in base64
)
_LEFT_FREE = {":AA", ":APA91b", ".atlasv1.", "hooks.slack.com/services/", "hooks.slack.com/workflows/",
              "discord.com/api/webhooks/", "discordapp.com/api/webhooks/", "T3BlbkFJ", "8Q~", "7Q~"}
# What must come right before these instead (the part a left edge would cut off).
_LEFT_BEFORE = {
    ":AA": re.compile(r"(?<![A-Za-z0-9])\d{6,12}$"),  # telegram: the bot's numeric id
    ":APA91b": re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9_\-]{6,12}$"),
    ".atlasv1.": re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{14}$"),
    "8Q~": re.compile(r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}$"),
    "7Q~": re.compile(r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}$"),
}


def _compile_tokens() -> dict[str, list[tuple[_Tok, re.Pattern[str]]]]:
    table: dict[str, list[tuple[_Tok, re.Pattern[str]]]] = {}
    for tok in _TOKENS:
        body = re.compile(tok.body + (f"(?!{tok.unless})" if tok.unless else ""))
        for p in tok.prefixes:
            table.setdefault(p, []).append((tok, body))
    return table


_TOKEN_TABLE = _compile_tokens()
_HEAD = re.compile(r"[A-Za-z0-9_\-.]{4,}")
# What splits a token over lines or string pieces: a line break (real or escaped), or a closing
# quote, a `+` or `.` or `,` and an opening quote.
_SPLIT = re.compile(r"""(?:(?:\\r|\\n|\r|\n)[ \t]*)+|["'`][ \t]*[+.,]?\s*(?:\\\n)?\s*["'`]""")
_AWS_ID_PREFIXES = frozenset({"AKIA", "ASIA", "ABIA", "ACCA", "A3T"})
_CRC_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_")
# Looked for anywhere with str.find: what holds characters that end a token, sits inside one, or
# (checksummed) needs no boundary.
_FIND_ANYWHERE = tuple(p for p in _TOKEN_TABLE if p in _LEFT_FREE or not set(p) <= _IDCHARS or p[0] in ".:") + _CRC_PREFIXES
# The rest, looked up by their first three characters at the start of each token.
_BY3: dict[str, list[str]] = {}
for _p in sorted(_TOKEN_TABLE, key=len, reverse=True):
    if _p not in _FIND_ANYWHERE or _p in _CRC_PREFIXES:
        _BY3.setdefault(_p[:3], []).append(_p)


def _tokens(parts: _Parts) -> Iterator[str]:
    text = parts.text
    for prefix in _FIND_ANYWHERE:
        i = text.find(prefix)
        crc_only = prefix in _CRC_PREFIXES  # at a token boundary these are found below, as the rest
        while i != -1:
            ok_left = prefix in _LEFT_FREE or i == 0 or text[i - 1] not in _IDCHARS
            if prefix in _LEFT_BEFORE and not _LEFT_BEFORE[prefix].search(text, max(0, i - 16), i):
                ok_left = False
            if not (crc_only and ok_left):
                for tok, body in _TOKEN_TABLE[prefix]:
                    rule = _token_at(text, i + len(prefix), tok, body, ok_left and not crc_only)
                    if rule:
                        yield rule
                        break
            i = text.find(prefix, i + 1)
    for t in parts.ids:
        if t.count(".") == 2 and t[0] in "MNO" and _DISCORD.fullmatch(t) and _discord_ok(t):
            yield "discord-bot-token"
        cands = _BY3.get(t[:3])
        if cands is None:
            if t[:2] == "SK" and len(t) == 34 and _HEX.fullmatch(t, 2):
                yield "twilio-key"
            continue
        for prefix in cands:
            if not t.startswith(prefix):
                continue
            i = _bounded_find(text, t)
            if i >= 0 and prefix in _AWS_ID_PREFIXES and text.endswith(("AWSAccessKeyId=", "Credential="), max(0, i - 15), i):
                break  # the public half of a presigned URL (SigV2) or a SigV4 Authorization header
            rule = None
            for tok, body in _TOKEN_TABLE[prefix]:
                rule = _token_at(text, i + len(prefix), tok, body, True) if i >= 0 else None
                if rule:
                    yield rule
                    break
            break  # the longest prefix that fits decides


_DISCORD = re.compile(r"[MNO][A-Za-z0-9]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}")


def _discord_ok(t: str) -> bool:
    """A Discord bot token: the bot's numeric id in base64, a timestamp, an HMAC."""
    head = t.split(".", 1)[0]
    try:
        raw = base64.b64decode(head + "=" * (-len(head) % 4))
    except (binascii.Error, ValueError):
        return False
    return raw.isdigit() and 17 <= len(raw) <= 20


def _bounded_find(text: str, tok: str) -> int:
    """Where tok occurs as a whole token (no token character before it), or -1."""
    i = text.find(tok)
    while i > 0 and text[i - 1] in _IDCHARS:
        i = text.find(tok, i + 1)
    return i


def _token_at(text: str, start: int, tok: _Tok, body: re.Pattern[str], ok_left: bool) -> str | None:
    m = body.match(text, start)
    if m is not None:
        b = m.group()
        if tok.crc and _crc32_base62_ok(b):
            return tok.rule
        nxt = text[m.end() : m.end() + 1]
        if ok_left and not (tok.exact and nxt and (nxt.isalnum() or nxt == "_")) and (tok.check is None or tok.check(b)):
            return tok.rule
    if not (ok_left or tok.crc):
        return None
    # Split over lines or string pieces: the run of body characters stops at a split; join and retry.
    head = _HEAD.match(text, start)
    if head is None or _SPLIT.match(text, head.end()) is None:
        return None
    joined = _SPLIT.sub("", text[start : start + 600])
    m = body.match(joined)
    if m is None:
        return None
    b = m.group()
    if tok.crc:
        return tok.rule if _crc32_base62_ok(b) else None
    # Without a checksum the piece before the split must be a real start of a token.
    nxt = joined[m.end() : m.end() + 1]
    if not (tok.exact and nxt and nxt.isalnum()) and (tok.check is None or tok.check(b)):
        return tok.rule
    return None


# ---------- private keys, JWTs ----------

_PEM = re.compile(r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=]|\\[nr]|\s|[\"'`,+]|Proc-Type:[^\n]*|DEK-Info:[^\n]*|Comment:[^\n]*|Version:[^\n]*)*")
_PPK = re.compile(r"PuTTY-User-Key-File-\d+:")
_PPK_BODY = re.compile(r"Private-Lines: *\d+ *\r?\n[A-Za-z0-9+/=]{16,}")


def _private_keys(text: str) -> Iterator[str]:
    for m in _PEM.finditer(text):
        body = _PEM_BODY.match(text, m.end(), m.end() + 8192)
        if body is not None and len(re.sub(r"[^A-Za-z0-9+/=]|\\[nr]", "", body.group())) >= 64:
            yield "private-key"
            return
    if "PuTTY-User-Key-File-" in text and _PPK.search(text) and _PPK_BODY.search(text):
        yield "private-key"


_DER_KEY = re.compile(
    rb"\x30\x82..\x02\x01\x00(?:\x02\x82|\x02\x81|\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
    rb"|\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01|\x30\x05\x06\x03\x2b\x65\x70)"
    rb"|\x30[\x74\x77]\x02\x01\x01\x04[\x20\x30]|\x30\x81[\x80-\xff]\x02\x01\x00\x30",
    re.S,
)  # PKCS#1 RSA, PKCS#8 (RSA, EC, Ed25519), SEC1 EC: a version 0/1 INTEGER where public keys have none


def _binary_keys(data: bytes) -> bool:
    return data.startswith(b"openssh-key-v1\0") or _DER_KEY.match(data[:32]) is not None


_JWT = re.compile(r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,2000}\.eyJ[A-Za-z0-9_\-]{8,8000}\.([A-Za-z0-9_\-]{0,1400})")
_JWT_SIG = {"HS256": 32, "HS384": 48, "HS512": 64, "ES256": 64, "ES384": 96, "ES512": 132, "ES256K": 64,
            "EdDSA": 64, "Ed25519": 64}  # RS*/PS*: the modulus' length, 128 bytes and more


def _b64url_json(seg: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
        return json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):
        return None


def _jwts(text: str, now: float) -> Iterator[str]:
    for m in _JWT.finditer(text):
        head_s, payload_s, sig = m.group().split(".")[:3]
        head, payload = _b64url_json(head_s), _b64url_json(payload_s)
        if not isinstance(head, dict) or not isinstance(payload, dict):
            continue
        alg = str(head.get("alg", ""))
        if not alg or alg.lower() == "none":
            continue
        siglen = len(sig) * 3 // 4
        want = _JWT_SIG.get(alg)
        if want is not None and abs(siglen - want) > 1:
            continue
        if want is None and not (alg[:2] in ("RS", "PS") and siglen >= 128):
            continue
        exp, iat = payload.get("exp"), payload.get("iat")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            live = exp > now
        else:
            live = isinstance(iat, (int, float)) and now - 90 * 86400 < iat <= now + 86400
        if live:
            yield "jwt"
            return


# ---------- AWS secret access keys ----------

_AWS40 = re.compile(r"[A-Za-z0-9/+]{40}")
_B64_ABOVE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}[ \t]*(?:\r?\n|\\n)[ \t]*$")
_B64_BELOW = re.compile(r"[ \t]*(?:\r?\n|\\n)[ \t]*[A-Za-z0-9+/]{40,}")
_AWS_NEAR = re.compile(r"(?i)aws|secret.?access|access.?key|(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}")
# A 40-character base62 token (no / or +, as 28 % of AWS secrets are) is also a CSRF token, a nonce,
# a session or request id: without AWS context it counts unless its key says it is one of those.
_BENIGN_TOKEN_KEY = re.compile(
    r"(?i)(?:csrf|xsrf|nonce|state|session|request|trace|span|correlation|etag|cursor|idempotency|challenge|"
    r"verifier|hash|sha\d*|digest|checksum|signature|sig|commit|revision|build|id)[\w\-]{0,16}[\"']?(?:\s*[:=]\s*|\s+)[\"']?$"
)
_HEX = re.compile(r"[0-9a-fA-F]+")


def _aws_secrets(parts: _Parts) -> Iterator[str]:
    text = parts.text
    for s in parts.b64:
        if len(s) != 40 or not _AWS40.fullmatch(s) or _classes(s.replace("/", "").replace("+", "")) < 3:
            continue  # 40 of [A-Za-z0-9/+] with upper, lower and digits (a key lacks one of them ~1e-9)
        sw = _switch_ratio(s)
        ent = _entropy(s)
        if sw < 0.25 or ent < 3.6 or _wordy(s) or _printable_ascii(binascii.a2b_base64(s), 1.0):
            continue  # words, or base64 of text (the decoding layer reads that), not 30 random bytes
        i = text.find(s)
        while i != -1:
            before, after = text[i - 2 : i] if i >= 2 else text[:i], text[i + 40 : i + 42]
            # a segment of a JWT or a dotted base64url string, or what comes before an '=', is not a key
            if not (before[-1:] == "." and before[:1] in _IDCHARS or after[:1] == "." and after[1:2] in _IDCHARS
                    or after[:1] == "="):
                break
            i = text.find(s, i + 1)
        if i == -1 or _B64_ABOVE.search(text, max(0, i - 90), i) or _B64_BELOW.match(text, i + 40):
            continue  # a line of a wrapped base64 block (a PEM body, a MIME part), not a key alone
        if sw >= 0.38 and ent >= 4.1:
            if "/" in s or "+" in s or not _BENIGN_TOKEN_KEY.search(text, max(0, i - 48), i):
                yield "aws-secret-key"
                return
        if _AWS_NEAR.search(text, max(0, i - 300), min(len(text), i + 340)) is not None:
            yield "aws-secret-key"
            return


# ---------- secrets in config and environment dumps ----------

_KEY_HINT = re.compile(
    r"(?:pass|pwd|secret|token|key|cred|auth|pat(?![a-z]))"
    r"(?=[a-z0-9_.\-]{0,48}(?:[\"'\]]?[ \t]{0,8}(?:[=:>,;\t|]|\r?\n|$)|[\"']?>))"
)  # a secret word in a key followed by what follows a key: = : => > , ; tab | a line end
_FLAG = re.compile(r"--[a-z0-9_\-]{0,40}(?:pass|secret|token|key)[a-z0-9_\-]{0,40}(?= [^\s\-])")
_KEYCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "pwd", "secret", "token", "credential", "credentials", "creds",
    "apikey", "accesskey", "secretkey", "privatekey", "authtoken", "accesstoken", "refreshtoken",
    "clientsecret", "pat", "auth", "authorization", "passcode", "pin",
})
_KEY_BEFORE_KEY = frozenset({
    "api", "access", "secret", "private", "priv", "signing", "sign", "master", "encryption", "encrypt",
    "account", "storage", "shared", "subscription", "admin", "auth", "hmac", "aes", "jwt", "app", "client",
    "service", "license", "deploy", "root", "consumer", "server", "session", "webhook", "cookie", "ssh",
    "gpg", "pgp", "decryption", "crypt", "cipher", "wallet", "mnemonic", "recovery", "rsa", "ecdsa", "ed25519",
})
_GLUED = ("password", "passwd", "passphrase", "apikey", "secretkey", "privatekey", "accesskey", "clientsecret",
          "authtoken", "accesstoken", "refreshtoken", "secret")
# A key with one of these words names something about a secret, not the secret.
_NOT_SECRET_ANY = frozenset({
    "csrf", "xsrf", "idempotency", "correlation", "trace", "span", "tokens", "tokenizer", "pagination",
    "continuation", "cursor", "public", "publishable", "primary", "foreign", "sort", "partition", "cache",
    "pubkey", "placeholder", "label", "description", "hint", "example", "sample",
})
_NOT_SECRET_FIRST = frozenset({
    "max", "min", "num", "page", "next", "prev", "previous", "sync", "request", "input", "output", "prompt",
    "completion", "total", "cancel", "cancellation", "forgot", "show", "hide", "has", "is", "use", "enable",
    "disable", "require", "validate", "check", "get", "set", "on", "handle", "new", "old",
})
_NOT_SECRET_LAST = frozenset({
    "type", "types", "name", "names", "id", "ids", "url", "uri", "urls", "endpoint", "path", "file", "filename",
    "dir", "count", "length", "len", "size", "limit", "limits", "ttl", "expiry", "expires", "expiration",
    "exp", "in", "at", "header", "prefix", "suffix", "field", "fields", "env", "var", "policy", "enabled",
    "required", "format", "version", "regex", "pattern", "help", "hash", "hashed", "digest", "strength",
    "reset", "changed", "mode", "method", "methods", "store", "provider", "manager", "service", "class", "kind",
    "scope", "scopes", "usage", "used", "index", "location", "source", "param", "params", "arg", "args",
    "option", "options", "flag", "config", "settings", "rotation", "timeout", "interval", "lifetime", "age",
    "created", "updated", "exists", "valid", "validator", "validation", "error", "errors", "message", "msg",
    "text", "title", "question", "icon", "button", "link", "page", "form", "view", "screen", "component",
    "test", "spec", "mock", "schema", "rule", "rules", "metadata", "info", "details", "status", "state",
    "algorithm", "alg", "cipher", "encoding", "separator", "delimiter", "position", "offset", "start",
    "end", "list", "map", "dict", "array", "table", "column", "arn", "ref", "refs", "callback",
    "audience", "issuer", "lookup", "selector", "cookie", "storage", "mount", "volume", "label", "labels",
    "annotations", "template", "input", "output", "dialog", "modal", "prompt", "stage", "step", "length",
    "time", "date", "timestamp", "until", "duration", "seconds", "ms", "days", "hours", "minutes",
})
# Words before "token" that make it bookkeeping (pagination, idempotency, concurrency, CSRF), not a
# credential. Not session or security: AWS's SessionToken is one.
_NOT_SECRET_TOKEN = frozenset({
    "next", "continuation", "pagination", "page", "client", "idempotency", "update", "change", "sync", "delta",
    "starting", "start", "marker", "cancel", "cancellation", "resume", "query", "unit", "request", "csrf", "xsrf",
    "cursor", "batch", "callback", "wait", "task", "lock", "lease", "version", "sequence", "upload", "part",
    "continue", "prev", "previous", "last", "end", "stop", "poll", "notification", "retry", "dedup", "deduplication",
})
_key_cache: dict[str, bool] = {}
_STRONG = re.compile(r"(?i)pass|pwd|secret|api.?key|auth.?token|access.?token|refresh.?token|credential|private|_authtoken")


def key_is_strong(key: str) -> bool:
    return _STRONG.search(key) is not None


def key_is_secret(key: str) -> bool:
    """Whether a config key (ENV_NAME, yaml.key, jsonKey, X-Header-Name, ...) names a secret."""
    hit = _key_cache.get(key)
    if hit is not None:
        return hit
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    result = False
    if words[:2] in (["x", "amz"], ["x", "goog"]) or words[-2:] == ["client", "token"]:
        pass  # signing parameters of presigned URLs; AWS's ClientToken (idempotency): not secrets
    elif 0 < len(words) <= 8 and not any(w in _NOT_SECRET_ANY for w in words) and words[0] not in _NOT_SECRET_FIRST:
        if not (len(words) > 1 and words[-1] in _NOT_SECRET_LAST):
            joined = "".join(words)
            if any(w in _SECRET_WORDS for w in words) or words[-1] == "pass":
                result = True
            elif any(b == "key" and a in _KEY_BEFORE_KEY for a, b in zip(words, words[1:])):
                result = True
            elif len(words) <= 2 and joined.endswith(_GLUED):
                result = True  # dbpassword, xapikey, APIKEY, clientsecret (but not secretsmanager)
            if result and "token" in words and words.index("token") > 0 and words[words.index("token") - 1] in _NOT_SECRET_TOKEN:
                result = False  # NextToken, ClientToken, PolicyUpdateToken, --starting-token: bookkeeping
    if len(_key_cache) < 4096:
        _key_cache[key] = result
    return result


_PLACEHOLDER_WORDS = (
    "changeme", "change_me", "change-me", "example", "placeholder", "your", "redacted", "dummy", "sample",
    "xxx", "replace", "insert", "todo", "fixme", "notset", "not_set", "not-set", "undefined", "secret",
    "password", "passwd", "test", "fake", "mock", "demo", "default", "foobar", "lorem", "***", "...", "<",
    ">", "${", "{{", "}}", "$(", "%(", "insecure", "null", "none", "dev-", "local", "sandbox", "foo", "%s", "%d",
    "{}", "{0}",
)
_PLACEHOLDER_RE = re.compile("|".join(re.escape(w) for w in _PLACEHOLDER_WORDS), re.IGNORECASE)
_REFERENCE = re.compile(
    r"""^(?:\$\{|\$\(|\$[A-Za-z_][\w.\-]*$|%\(|%[A-Za-z_]\w*%$|\{|<|\[|\(|@[A-Za-z_][\w.]*(?:\(|$)|[&*][A-Za-z_]\w*$|#\{|`)|^(?:process\.env|os\.environ|os\.getenv|getenv|env\(|ENV\[|"""
    r"""System\.getenv|config\.|settings\.|self\.|this\.|args\.|opts\.|options\.|params\.|req\.|request\.|secrets\.|vars\.|var\.)"""
)
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:(?:\.|::|->)[A-Za-z_$][\w$]*)+")
_URLISH = re.compile(r"^[a-z][a-z0-9+.\-]*://|^/|^~/|^\./|^\.\./|^[A-Za-z]:\\|^arn:aws")
_EMAIL = re.compile(r"^[\w.+\-]+@[\w\-]+\.[\w.\-]+$")
_KEYWORD_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "null", "nil", "none", "undefined",
                             "required", "optional", "string", "str", "int", "bool", "boolean", "number",
                             "bytes", "object", "any", "unknown", "empty", "disabled", "enabled"})
_B64ISH = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_PAIRS_IN = re.compile(r"[A-Za-z_]{2,}=[^=]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?$")
_HASH_PREFIXES = ("pbkdf2_", "pbkdf2:", "argon2", "bcrypt$", "sha1$", "sha256$", "md5$", "scrypt:", "{ssha}", "{sha}")


def _value_is_secret(v: str, _depth: int = 0, strong: bool = True) -> bool:
    """Whether a value given to a secret-named key looks like a real secret (not a reference, a
    template, a placeholder, code, a path, a URL, an address, a number or plain words). A UUID
    counts only under a strong key (password, secret, api key, auth/access token): under a bare
    `token` it is an idempotency or request token (AWS's ClientToken) far more often."""
    v = v.strip().strip("\"'`")
    if not strong and _UUID.fullmatch(v):
        return False
    n = len(v)
    if n < 8 or n > 300:
        return False
    low = v.lower()
    if low in _KEYWORD_VALUES or _REFERENCE.match(v) or _URLISH.match(v) or _EMAIL.match(v):
        return False
    if low.startswith(_HASH_PREFIXES) or "PLACEHOLDER" in v or "..." in v or "\u2026" in v:
        return False  # a password hash, a placeholder, a value cut short for display
    if any(w in low for w in _PLACEHOLDER_WORDS):
        # "your-api-key-here", "changeme123", "test-password": a placeholder. But what is left once
        # the words are gone can still be random (AWS's sample secret ends in EXAMPLEKEY): judged then.
        rest = _PLACEHOLDER_RE.sub("", v)
        if len(rest) < 16 or _wordy(rest, any_sep=True) or _entropy(rest) < 3.5:
            return False
    if _JWT.fullmatch(v):
        return False  # a JWT is judged by the JWT detector (live or not)
    for prefix in _TOKEN_TABLE:
        if v.startswith(prefix) and len(v) - len(prefix) < 8:
            return False  # a provider's prefix, or a truncated example of one
    if v.isdigit() or not any(c.isalpha() for c in v) or len(set(v)) < 6 or _DATE.match(v):
        return False
    if _DOTTED.fullmatch(v) or _wordy(v, any_sep=True):
        return False
    if any(c.isspace() for c in v):
        return False  # words, a sentence, code, a style ("italic #A3AAB2"): passwords with spaces are let go
    if _PAIRS_IN.search(v) or v.count("\\") >= 2 or v.count("/") > 2 or v.count(".") > 3:
        return False  # key=value pairs of its own (a struct tag, a DSN), markup escapes, paths, dotted names
    if _depth == 0 and _B64ISH.fullmatch(v) and n % 4 != 1:
        try:  # a base64 value (a Kubernetes Secret's data) is judged by what it says
            raw = base64.b64decode(v + "=" * (-n % 4), validate=True)
            if _printable_ascii(raw, 1.0) and len(raw) >= 4:
                return _value_is_secret(raw.decode("ascii"), 1)
        except (binascii.Error, ValueError):
            pass
    return _value_is_secret_strength(v)


def _value_is_secret_strength(v: str) -> bool:
    n = len(v)
    if n < 8 or (n < 32 and _HEX.fullmatch(v)):
        return False  # short hex: a hash prefix, an id, a colour
    k = _classes(v)
    ent = _entropy(v)
    return (k >= 3 and n >= 8) or (k >= 2 and n >= 12 and ent >= 3.0) or (n >= 20 and ent >= 3.5)


_SEP = re.compile(r"""["'\]]?[ \t]{0,8}(=>|:=|=(?!=)|:(?![:=/]))[ \t]{0,8}""")
_QVAL = re.compile(r""""((?:[^"\\\n]|\\[^\n]){0,300})"|'((?:[^'\\\n]|\\[^\n]){0,300})'|`([^`\n]{0,300})`""")
_UVAL = re.compile(r"""[^\s"'`,;&<>(){}\[\]]{1,300}""")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey", "api-key", "key", "sso-key", "otp"})


def _value_at(text: str, pos: int) -> tuple[str | None, int]:
    """The value starting at pos (quoted or bare) and where it ends; None when it is code. A bare
    value that is an identifier must look random: `x = user_password2` is code, `X=Kq8vT2mW9z` is not."""
    m = _QVAL.match(text, pos)
    if m is not None:
        return next(g for g in m.groups() if g is not None), m.end()
    m = _UVAL.match(text, pos)
    if m is None:
        return None, pos
    nxt = text[m.end() : m.end() + 1]
    if nxt in ("(", "["):
        return None, m.end()  # a call or an index: code
    value = m.group()
    if _IDENT.fullmatch(value) and _switch_ratio(value) < 0.4 and value.lower() not in _AUTH_SCHEMES:
        return None, m.end()
    return value, m.end()


_BLANKS = re.compile(r"[ \t]+")


def _auth_value(text: str, value: str, end: int) -> str:
    """`Bearer x` / `token x`: the credential after the scheme word."""
    if value.lower() in _AUTH_SCHEMES:
        m = _BLANKS.match(text, end)
        if m is not None:
            nxt, _ = _value_at(text, m.end())
            if nxt:
                return nxt
    return value


_CSV_DELIMS = ",\t;|"
# Passwords on command lines: mysql -pSECRET, sshpass -p SECRET, curl -u user:SECRET (on the lowercased text)
_CLI_PW = re.compile(
    r"(?:mysql|mysqldump|mysqladmin|mariadb|sshpass|docker login|podman login)\b[^\n]{0,200}?\s-p ?(?:'([^'\n]+)'|\"([^\"\n]+)\"|([^\s'\"]+))"
    r"|(?:curl|wget|http)\b[^\n]{0,200}?\s(?:-u|--user) ?['\"]?[^\s:'\"]+:([^\s'\"]+)"
)
_IN_ARN = re.compile(r"(?:arn|urn):[^\s\"'`,;=]*:$")
_SIMPLE_FIELD = re.compile(r"[\"']?[\w .\-]{1,48}[\"']?")
_NETRC = re.compile(r"(?:machine\s+\S+|default)\s+(?:login\s+\S+\s+)?(?:account\s+\S+\s+)?password\s+(\S+)")
_SQLPW = re.compile(r"(?:identified\s+by|password)\s+'([^'\n]{1,200})'")  # on the lowercased text
_CONN = re.compile(r"([^\s:/@\"'<>\\]{1,128}+):([^\s/\"'<>\\]{1,256})@(?=[A-Za-z0-9\[])")
_NAMEVALUE = re.compile(r"""(?:name|key)["']?\s*[:=]\s*["']?([\w.\-]{1,64})["']?\s*,?\s*(?:\n\s*)?["']?value["']?\s*[:=]\s*""")


def _config_secrets(parts: _Parts) -> Iterator[str]:
    text, low = parts.text, parts.low
    if "--" in text:
        for m in _FLAG.finditer(low):  # --password value
            value, _ = _value_at(text, m.end() + 1)
            if value and key_is_secret(text[m.start() : m.end()]) and _value_is_secret(value, strong=key_is_strong(m.group())):
                yield "config-secret"
                return
    skip_to = 0
    for m in _KEY_HINT.finditer(low):
        hs, he = m.span()
        if hs < skip_to:
            continue
        left = text[max(0, hs - 64) : hs]
        ks = hs - (len(left) - len(left.rstrip(_KEYCHARS)))
        right = text[he : he + 64]
        ke = he + (len(right) - len(right.lstrip(_KEYCHARS)))
        skip_to = ke
        key = text[ks:ke].strip(".-")
        if not key or not key_is_secret(key):
            continue
        if ks and text[ks - 1] == ":" and _IN_ARN.search(text, max(0, ks - 160), ks):
            continue  # arn:aws:secretsmanager:...:secret:name is a name, not a key and its value
        before = text[ks - 1 : ks] if ks else ""
        # XML: <password>value</password>
        if before == "<" and text[ke : ke + 1] == ">":
            close = text.find("<", ke + 1, ke + 302)
            if close != -1 and _value_is_secret(text[ke + 1 : close], strong=key_is_strong(key)):
                yield "config-secret"
                return
            continue
        sep = _SEP.match(text, ke)
        if sep is None:
            nxt = text[ke : ke + 1]
            if nxt in _CSV_DELIMS or nxt in ("\r", "\n", '"', "'") or not nxt:
                if _csv_secret(text, ks, ke):
                    yield "config-secret"
                    return
            continue
        value, end = _value_at(text, sep.end())
        if value is None or not value:
            continue
        value = _auth_strip(_auth_value(text, value, end))
        if key.lower() == "pass" and text[end - len(value) - 1 : end - len(value)] not in "\"'`" and ":" in sep.group():
            continue  # "--- PASS: TestName" (test output), not a password; a bare `pass:` needs quotes
        if _value_is_secret(value, strong=key_is_strong(key)):
            yield "config-secret"
            return
    if "password" in low and ("machine" in low or "default" in low):
        for m in _NETRC.finditer(low):
            if _value_is_secret(text[m.start(1) : m.end(1)]):
                yield "netrc-password"
                return
    if "'" in low and ("identified" in low or "password" in low):
        for m in _SQLPW.finditer(low):
            if _value_is_secret(text[m.start(1) : m.end(1)]):
                yield "config-secret"
                return
    if " -p" in low or " -u" in low or "--user" in low:
        for m in _CLI_PW.finditer(low):
            a, b = next((m.start(i), m.end(i)) for i in range(1, 5) if m.group(i) is not None)
            if _value_is_secret(text[a:b]):
                yield "config-secret"
                return
    if "value" in low:
        for m in _NAMEVALUE.finditer(low):
            ref = text[m.start(1) : m.end(1)]
            if key_is_secret(ref):
                value, _ = _value_at(text, m.end())
                if value and _value_is_secret(value, strong=key_is_strong(ref)):
                    yield "config-secret"
                    return


def _csv_secret(text: str, ks: int, ke: int) -> bool:
    """A CSV header naming a secret column, and a row under it with a secret-looking value there."""
    ls = text.rfind("\n", 0, ks) + 1
    le = text.find("\n", ke)
    le = len(text) if le == -1 else le
    header = text[ls:le].rstrip("\r")
    delim = max(_CSV_DELIMS, key=header.count)
    fields = header.split(delim)
    if len(fields) < 2 or len(fields) > 64 or header[:1].isspace() or header.endswith(delim):
        return False  # indented or trailing-comma lines are code (a list literal), not a CSV header
    if not all(_SIMPLE_FIELD.fullmatch(f.strip()) for f in fields):
        return False
    col = -1
    name = ""
    for i, f in enumerate(fields):
        f = f.strip().strip("\"'")
        if key_is_secret(f.replace(" ", "_")):
            col, name = i, f
            break
    if col < 0:
        return False
    pos = le + 1
    for _ in range(200):
        if pos >= len(text):
            break
        end = text.find("\n", pos)
        end = len(text) if end == -1 else end
        line = text[pos:end].rstrip("\r")
        row = line.split(delim)
        pos = end + 1
        if len(row) != len(fields) or line[:1].isspace():
            break
        value = row[col].strip().strip("\"'")
        if " " in value or (_IDENT.fullmatch(value) and _switch_ratio(value) < 0.4):
            continue
        if _value_is_secret(value, strong=key_is_strong(name)):
            return True
    return False


def _connection_strings(text: str) -> Iterator[str]:
    i = text.find("://")
    while i != -1:
        m = _CONN.match(text, i + 3)
        if m is not None:
            user, password = m.group(1), urllib.parse.unquote(m.group(2))
            if password and _value_is_secret(password) and not key_is_secret(password):
                yield "connection-string-password"
                return
            del user
        i = text.find("://", i + 3)


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


# ---------- URLs ----------

# Query parameters that are the machinery of signed or paginated URLs, or OAuth's public half:
# their values are random by design and are never a secret the agent holds.
_URL_SIGNED_KEYS = frozenset({
    "signature", "sig", "policy", "key-pair-id", "googleaccessid", "se", "sp", "sv", "sr", "spr", "skoid",
    "sktid", "skt", "ske", "sks", "skv", "st", "rscc", "rscd", "rsce", "rscl", "rsct", "state", "nonce",
    "code_challenge", "cursor", "after", "before", "page_token", "pagetoken", "next_page_token",
    "continuation", "continuationtoken", "marker", "starting_after", "ending_before", "etag", "v", "ver",
    "hash", "integrity", "checksum", "digest", "sha", "sha256", "sha1", "md5", "rev", "commit", "ref",
})
_URL_SIGNED_PREFIX = ("x-amz-", "x-goog-", "x-oss-", "x-cos-")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_CONTENT_ADDR = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{50,}|z[1-9A-HJ-NP-Za-km-z]{40,}|(?:sha1|sha256|sha384|sha512)-.*")
_ATOM_SPLIT = re.compile(r"[.,;:&\s]+|=+(?=[^=])")  # '+' '/' '=' padding stay: base64 has them
_ATOM_OK = re.compile(r"[A-Za-z0-9_\-]+")
_B32_ATOM = re.compile(r"[A-Z2-7]{16,}=*|[a-z2-7]{16,}=*")
_TYPED_ID = re.compile(r"[a-z]{2,12}[_\-][A-Za-z0-9]{8,48}")  # cus_..., file_..., msgbatch_..., chatcmpl-...
_STATIC_EXT = re.compile(r"(?i)\.(?:js|mjs|cjs|css|map|woff2?|ttf|otf|eot|png|jpe?g|gif|webp|avif|svg|ico|wasm|mp4|webm|mp3)$")


def _url_components(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [], []
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
    query = []
    for pair in parts.query.split("&"):
        if pair:
            k, _, v = pair.partition("=")
            query.append((urllib.parse.unquote_plus(k), urllib.parse.unquote(v)))
    return segments, query


def _decodes_to_text(atom: str) -> bool:
    """Hex or base32 that spells text: how data is smuggled in a URL or a host name."""
    raw: bytes | None = None
    if len(atom) < 16 or atom.isdigit():
        return False
    if len(atom) % 2 == 0 and _HEX.fullmatch(atom):
        raw = bytes.fromhex(atom)
    elif _B32_ATOM.fullmatch(atom):
        try:
            s = atom.upper().rstrip("=")
            raw = base64.b32decode(s + "=" * (-len(s) % 8))
        except (binascii.Error, ValueError):
            raw = None
    return raw is not None and len(raw) >= 10 and _printable_ascii(raw, 1.0)


def _atom_random(atom: str) -> bool:
    """A URL atom (a path segment or query value, split at . , ; : = + &) that looks like random data."""
    n = len(atom)
    if n < 20:
        return False
    if not _ATOM_OK.fullmatch(atom):  # symbols too: a password, say
        return n >= 16 and _classes(atom) == 4 and _entropy(atom) >= 3.8 and _switch_ratio(atom) >= 0.5
    if n < 24:
        return False
    if _HEX.fullmatch(atom):
        return n > 64  # longer than the hashes (MD5 to SHA-256): data
    if _UUID.search(atom):
        return _atom_random(_UUID.sub("", atom).strip("-_"))  # ids around a UUID
    if _CONTENT_ADDR.fullmatch(atom) or _TYPED_ID.fullmatch(atom) or _wordy(atom):
        return False
    if all(_HEX.fullmatch(p) and len(p) <= 64 or p.isdigit() for p in re.split(r"[\-_]", atom) if p):
        return False  # hashes and numbers joined: ids
    k = _classes(atom)
    ent = _entropy(atom)
    sw = _switch_ratio(atom)
    if k >= 3 and ent >= 4.0 and sw >= 0.4:
        return True
    return n >= 32 and k >= 2 and ent >= 4.1 and sw >= 0.2 and sum(c.isdigit() for c in atom) >= n // 8


def _url_atoms(segments: list[str], query: list[tuple[str, str]]) -> Iterator[str]:
    values = [(seg, i == len(segments) - 1 and _STATIC_EXT.search(seg) is not None) for i, seg in enumerate(segments)]
    for k, v in query:
        kl = k.lower()
        if kl in _URL_SIGNED_KEYS or kl.startswith(_URL_SIGNED_PREFIX):
            continue
        values.append((v, False))
    run = ""
    for seg in segments + [""]:  # hex text split over path segments: /70617373/776f7264/...
        if seg and _HEX.fullmatch(seg):
            run += seg
            continue
        if len(run) >= 20 and _decodes_to_text(run[: len(run) // 2 * 2]):
            yield "url-encoded-data"
            return
        run = ""
    for value, asset in values:
        if "eyJ" in value and _JWT.fullmatch(value):
            continue  # a JWT is judged as one (live or not), not by its entropy
        for atom in _ATOM_SPLIT.split(value):
            atom = atom.rstrip("=")
            if len(atom) < 16:
                continue
            if _decodes_to_text(atom):
                yield "url-encoded-data"
                return
            # A static asset named by a random id (fonts.gstatic.com/s/inter/v13/UcCO3F....woff2) is
            # content addressing, as a hash in the name is.
            if not asset and _atom_random(atom) and not _b64_structured(atom):
                yield "high-entropy-url"
                return


def _b64_structured(atom: str) -> bool:
    """A base64 atom that decodes to JSON or words: structured data, not a random secret."""
    try:
        raw = base64.urlsafe_b64decode(atom.replace("+", "-").replace("/", "_") + "=" * (-len(atom) % 4))
    except (binascii.Error, ValueError):
        return False
    if not _printable_ascii(raw, 0.9):
        return False
    s = raw.decode("latin-1")
    return s.lstrip()[:1] in ("{", "[") or sum(c.isalpha() or c in " _-:/." for c in s) > 0.85 * len(s)


# ---------- host names ----------


def label_exfil(host: str, wildcard_base: str) -> str | None:
    """For a host a wildcard rule `*.base` matched: a reason when the labels left of the base carry
    encoded data (long hex, base32, base64-ish or random labels, data split over labels, too many
    labels), None for ordinary names (api.eu-west-1.example.com, d1234abcd.cloudfront.net, bucket
    names, git-feature-x)."""
    original = host.rstrip(".")
    host = original.lower()
    base = wildcard_base.lower().lstrip("*").lstrip(".").rstrip(".")
    if not base or not host.endswith("." + base):
        return None
    left = host[: -len(base) - 1]
    labels = left.split(".")
    for label in original[: len(left)].split("."):
        if len(label) >= 16 and _classes(label.replace("-", "")) >= 3 and _switch_ratio(label) >= 0.3:
            return f"a base64-shaped label (mixed case) under {base}"
    if len(labels) > 5:
        return f"{len(labels)} labels under {base} (data split over labels)"
    if len(left) > 90:
        return f"{len(left)} characters of labels under {base}"
    for label in labels:
        why = _label_shape(label)
        if why:
            return f"{why} under {base}"
    if len(labels) > 1:
        joined = "".join(labels)
        if _decodes_to_text(joined) or _decodes_to_text(joined.replace("-", "")):
            return f"hex or base32 text split over labels under {base}"
        compact = joined.replace("-", "")
        if len(compact) >= 32 and all(len(lab) >= 6 for lab in labels) and _atom_random(compact):
            return f"random data split over labels under {base}"
    return None


def _label_shape(label: str) -> str | None:
    if len(label) > 63:
        return "an over-long label"
    pieces = [p for p in label.split("-") if p]
    compact = label.replace("-", "")
    if len(compact) >= 16 and _decodes_to_text(compact):
        return "a label of hex or base32 text"
    for p in pieces:
        n = len(p)
        if n >= 16 and _decodes_to_text(p):
            return "a label of hex or base32 text"
        if n >= 32 and _HEX.fullmatch(p):
            return "a long hex label"
        if n >= 32:
            return f"a label piece of {n} characters"
        if n >= 24 and re.fullmatch(r"[a-z2-7]+", p) and sum(c.isdigit() for c in p) >= 2:
            return "a base32-shaped label"
        if n >= 24 and not _HEX.fullmatch(p) and _entropy(p) >= 3.8 and _switch_ratio(p) >= 0.4:
            return "a random-looking label"
    return None


# A deny list that beats allow rules: services that exist to take data in and hand it to anyone,
# or to tunnel into somewhere else. An agent has no business posting to any of them. The host or
# any name under it is refused. Plain and documented: add to it, don't grow cleverness here.
DENIED_SERVICES: tuple[tuple[str, str], ...] = (
    # paste sites
    *((d, "paste service") for d in (
        "pastebin.com", "pastebin.pl", "paste.ee", "pastes.dev", "hastebin.com", "hastebin.skyra.pw",
        "ghostbin.co", "ghostbin.me", "dpaste.com", "dpaste.org", "paste.rs",
        "rentry.co", "rentry.org", "controlc.com", "justpaste.it", "privatebin.net", "0bin.net", "ix.io",
        "sprunge.us", "termbin.com", "clbin.com", "bpa.st", "paste.mozilla.org", "paste.debian.net",
        "paste.centos.org", "pastie.io", "paste2.org", "katb.in", "snippet.host", "paste.gg", "paste.sh",
        "pastecode.io", "paste.ofcode.org", "pastelink.net", "textbin.net", "paste.fo", "cl1p.net", "p.ip.fi",
        "paste.opensuse.org", "pastebin.ubuntu.com", "paste.ubuntu.com", "paste.fedoraproject.org", "vpaste.net",
        "pastie.org", "ptpb.pw", "paste.sr.ht", "bin.disroot.org", "hst.sh",
        "write.as", "telegra.ph", "paste.c-net.org", "pasteio.com", "notes.io", "hasteb.in", "jsonblob.com",
        "jsonbin.io", "kvdb.io", "pantry.cloud",
    )),
    # file drops
    *((d, "file-drop service") for d in (
        "transfer.sh", "0x0.st", "file.io", "tmpfiles.org", "temp.sh", "oshi.at", "bashupload.com",
        "catbox.moe", "uguu.se", "pixeldrain.com", "gofile.io", "wetransfer.com", "we.tl", "sendspace.com",
        "filebin.net", "keep.sh", "ufile.io", "qu.ax", "x0.at", "envs.sh", "ttm.sh", "filetransfer.io",
        "anonfiles.com", "bayfiles.com", "send.vis.ee", "wormhole.app", "dropmefiles.com", "easyupload.io",
        "tempfile.io", "upload.ee", "transfer.it", "sendgb.com", "krakenfiles.com",
    )),
    # request catchers and webhook inspectors
    *((d, "request-catcher service") for d in (
        "webhook.site", "requestbin.com", "requestbin.net", "requestbin.io", "pipedream.net", "hookb.in",
        "requestcatcher.com", "beeceptor.com", "hookbin.com", "postb.in", "ptsv2.com", "ptsv3.com",
        "requestinspector.com", "smee.io", "ultrahook.com", "mockbin.org", "mockbin.io", "requestrepo.com",
        "httpdump.app", "typedwebhook.tools", "webhookinbox.com", "inspectbin.com", "putsreq.com", "reqbin.com",
    )),
    # tunnels into someone else's machine
    *((d, "tunnel service") for d in (
        "ngrok.io", "ngrok.app", "ngrok.dev", "ngrok-free.app", "ngrok-free.dev", "ngrok.pizza", "loca.lt",
        "localtunnel.me", "trycloudflare.com", "serveo.net", "serveousercontent.com", "localhost.run",
        "lhr.life", "pagekite.me", "telebit.cloud", "telebit.io", "bore.pub", "tunnelto.dev",
        "loclx.io", "localxpose.io", "devtunnels.ms", "tunnelmole.net", "tunnelmole.com", "pinggy.io",
        "pinggy.link", "pinggy.online", "zrok.io", "sharedwithexpose.com", "packetriot.net", "portmap.io",
        "playit.gg", "ply.gg", "jprq.io", "jprq.live", "tunnel.pyjam.as", "srv.us",
    )),
    # out-of-band interaction catchers (interactsh, Burp Collaborator, DNS logs) and canaries
    *((d, "out-of-band interaction service") for d in (
        "interact.sh", "interactsh.com", "oast.pro", "oast.live", "oast.site", "oast.online", "oast.fun",
        "oast.me", "burpcollaborator.net", "oastify.com", "dnslog.cn", "ceye.io",
        "canarytokens.com", "canarytokens.org", "bxss.me", "xss.ht", "xss.report", "dnsbin.zhack.ca",
        "requestbin.fullcontact.com", "dig.pm", "eyes.sh", "log4shell.huntress.com", "rbndr.us",
    )),
    # names that resolve to any address written into them (rebinding, reaching a private address)
    *((d, "wildcard-DNS service") for d in ("nip.io", "sslip.io", "xip.io", "traefik.me", "localtest.me", "lvh.me")),
    # messaging bot APIs: one request posts data to a chat someone else reads
    ("api.telegram.org", "messaging bot API"),
)
_DENIED = dict(DENIED_SERVICES)


def denied_service(host: str) -> str | None:
    """Why this host is refused whatever the allow rules say, or None."""
    h = host.lower().rstrip(".")
    while h:
        why = _DENIED.get(h)
        if why is not None:
            return f"{h} is a {why} (deny list)"
        dot = h.find(".")
        if dot == -1:
            return None
        h = h[dot + 1 :]
    return None


# ---------- decoding ----------

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_PLACEHOLDER_SHAPE = re.compile(r"claude-bottle-placeholder-[A-Za-z0-9_]{1,80}-[0-9a-f]{32}")
_MASK = "PLACEHOLDER"
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
_STRINGS = re.compile(rb"[\x20-\x7e\t\r\n]{12,}")


class _Budget(Exception):
    pass


class _Scan:
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

    # the main loop

    def run(self) -> None:
        views = 0
        while self.queue:
            text, where, layers, kind = self.queue.popleft()
            views += 1
            if views > MAX_VIEWS:
                self.over = where
                raise _Budget
            text = self._normal(text)
            h = hash((text, kind))
            if h in self.seen:
                continue
            self.seen.add(h)
            if kind in ("body", "dec") and text.lstrip()[:1] in ("{", "["):
                flat = self._json(text, where, layers)
                if flat is not None:
                    text = self._normal(flat)
            parts = _Parts(text)
            self._detect(parts, where, layers, kind)
            if len(layers) < MAX_DEPTH:
                self._decode(parts, where, layers, kind)

    def _normal(self, text: str) -> str:
        if not text.isascii():
            text = _INVISIBLE.sub("", text)
            if not text.isascii():
                text = unicodedata.normalize("NFKC", text)
        for p in self.placeholders:
            if p in text:
                text = text.replace(p, _MASK)
        if "claude-bottle-placeholder-" in text:
            text = _PLACEHOLDER_SHAPE.sub(_MASK, text)
        return text

    def _json(self, text: str, where: str, layers: tuple[str, ...]) -> str | None:
        try:
            docs = [json.loads(text, object_pairs_hook=_Pairs)]
        except RecursionError:
            return None
        except ValueError:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if len(lines) < 2:
                return None
            docs = []
            for ln in lines:
                try:
                    docs.append(json.loads(ln, object_pairs_hook=_Pairs))
                except (ValueError, RecursionError):
                    docs.append(ln)
            if sum(not isinstance(d, str) for d in docs) < 0.8 * len(docs):
                return None
        out: list[str] = []
        for doc in docs:
            self._flatten(doc, out, where, layers)
        return "\n".join(out)

    def _flatten(self, doc: object, out: list[str], where: str, layers: tuple[str, ...]) -> None:
        stack: list[tuple[str, object]] = [("", doc)]
        while stack:
            key, node = stack.pop()
            if isinstance(node, _Pairs):
                names = {k.lower(): v for k, v in node if isinstance(v, str)}
                ref = names.get("name") or names.get("key")
                if ref and "value" in names and key_is_secret(ref) and _value_is_secret(names["value"], strong=key_is_strong(ref)):
                    self.add("config-secret", where, layers)
                for k, v in reversed(node):
                    stack.append((k, v))
                if key:
                    out.append(key + ":")
            elif isinstance(node, list):
                if len(node) >= 8 and all(type(v) is int and 0 <= v < 256 for v in node):
                    raw = bytes(node)  # a byte array ([107, 101, 121, ...], Buffer.toJSON): its bytes
                    if _worth(raw):
                        self.spend(len(raw), where)
                        self.binary(raw, where, layers + ("bytes",), "dec")
                    continue
                for v in reversed(node):
                    stack.append((key, v))
            elif isinstance(node, str):
                out.append(f"{key}: {node}" if key else node)
                if key and key_is_secret(key) and _value_is_secret(_auth_strip(self._normal(node)), strong=key_is_strong(key)):
                    self.add("config-secret", where, layers)
            elif node is not None and not isinstance(node, bool):
                out.append(f"{key}: {node}" if key else str(node))

    def _detect(self, parts: _Parts, where: str, layers: tuple[str, ...], kind: str) -> None:
        text = parts.text
        rules: list[str] = []
        rules += _tokens(parts)
        if "PRIVATE KEY" in text or "PuTTY" in text:
            rules += _private_keys(text)
        if "eyJ" in text and kind != "auth":
            rules += _jwts(text, self.now)
        if kind != "header" and kind != "auth":
            rules += _aws_secrets(parts)
        if kind in ("body", "dec", "url"):
            rules += _config_secrets(parts)
        if "://" in text:
            rules += _connection_strings(text)
        rules += _cards(text)
        rules += _ibans(parts)
        rules += _wallets(parts)
        rules += _seed_phrases(parts)
        for rule in rules:
            self.add(rule, where, layers)

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


def _unescape_one(m: re.Match[str]) -> str:
    s = m.group()
    if s[1] == "u":
        return chr(int(s[2:], 16))
    if s[1] == "x":
        return chr(int(s[2:], 16))
    return chr(int(s[1:], 8))


def _auth_strip(value: str) -> str:
    head, _, rest = value.partition(" ")
    return rest.strip() if rest and head.lower() in _AUTH_SCHEMES else value


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, duplicates kept."""


_LOWER = _table(str.lower, "?")  # ASCII letters lowered, one character for one


# ---------- the entry point ----------

_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_PLAIN_HEADERS = frozenset({"host", "content-length", "content-type", "accept", "accept-encoding",
                            "accept-language", "connection", "user-agent", "te", "upgrade"})


def scan(url: str, headers: Headers, body: bytes, *, placeholders: Iterable[bytes] = ()) -> list[Finding]:
    """Findings for one request (rule, where, layers), each once; [] when it is clean."""
    sc = _Scan(placeholders, len(url) + len(body) + sum(len(k) + len(v) for k, v in headers))
    try:
        _feed(sc, url, headers, body)
        sc.run()
    except _Budget:
        sc.add("decode-limit", sc.over or "body", ())
    return [Finding(rule, where, layers) for rule, where, layers in sc.found]


def _feed(sc: _Scan, url: str, headers: Headers, body: bytes) -> None:
    url = sc._normal(url)
    sc.text(url, "url", (), "url")
    segments, query = _url_components(url)
    for rule in _url_atoms(segments, query):
        sc.add(rule, "url", ())
    for part in segments + [v for _, v in query]:
        if len(part) >= 16 and part not in url:  # percent-decoded parts; the URL view has the rest
            sc.text(part, "url", ("url",), "dec")
        for rule in _aws_secrets(_Parts(part)):
            sc.add(rule, "url", ())
    joined: list[str] = []
    for name, value in headers:
        n = name.decode("latin-1").lower()
        try:
            v = value.decode("utf-8")
        except UnicodeDecodeError:
            v = value.decode("latin-1")
        kind = "auth" if n in _AUTH_HEADERS else "header"
        sc.text(v, "header", (), kind)
        if kind == "header":  # an AWS secret on its own, judged with the header's name as its key
            for rule in _aws_secrets(_Parts(f"{n}: {v}")):
                sc.add(rule, "header", ())
        scheme, _, cred = v.strip().partition(" ")
        if scheme.lower() == "basic" and cred:
            try:
                raw = base64.b64decode(cred.strip() + "=" * (-len(cred.strip()) % 4))
                sc.binary(raw, "header", ("basic",), "dec")
            except (binascii.Error, ValueError):
                pass
        if n not in _PLAIN_HEADERS:
            joined.append(v)
    if len(joined) > 1:  # a token split over two headers
        for rule in _tokens(_Parts(sc._normal("".join(joined)))):
            sc.add(rule, "header", ("joined",))
    if body:
        sc.binary(body, "body", (), "body")
