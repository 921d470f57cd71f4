"""The checksums and validators detect.py's detectors rely on: CRC32 in base62, Luhn, Base58Check,
bech32, keccak-256 and EIP-55, IBAN mod-97, the BIP-39 word list and its checksum."""

from __future__ import annotations

import hashlib
import os
import zlib


HERE = os.path.dirname(os.path.abspath(__file__))
WORDLIST = os.path.join(HERE, "bip39_english.txt")


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
