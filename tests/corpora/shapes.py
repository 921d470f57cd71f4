"""Fake secrets of valid shape (checksums included), made from a seeded random.Random.

None is a real credential, and none is written into the repository as a literal: the corpus of attacks
is stored sealed (see corpus.py), and the unit tests make theirs at run time, so scanners and push
protection never see a key-shaped string in this tree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
import time
import zlib

from claude_bottle.bundle import detect

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEXL = "0123456789abcdef"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(width, "0")


# ---------- prefixed tokens ----------


def crc_token(rng: random.Random, prefix: str) -> str:
    """GitHub's (ghp_, gho_, ghu_, ghs_, ghr_) and npm's (npm_) format: 30 random, CRC32 in base62."""
    body = pick(rng, ALNUM, 30)
    return prefix + body + base62(zlib.crc32(body.encode()), 6)


def github_fine_grained(rng: random.Random) -> str:
    return "github_pat_" + "11" + pick(rng, string.ascii_uppercase + string.digits, 20) + "_" + pick(rng, ALNUM, 59)


def gitlab_pat(rng: random.Random, prefix: str = "glpat-") -> str:
    return prefix + pick(rng, ALNUM + "-_", 20)


def gitlab_pat_new(rng: random.Random) -> str:
    return "glpat-" + pick(rng, ALNUM + "-_", 27) + ".01." + pick(rng, "0123456789abcdefghijklmnopqrstuvwxyz", 9)


def slack(rng: random.Random, kind: str = "xoxb-") -> str:
    if kind == "xapp-":
        return f"xapp-1-A{pick(rng, string.ascii_uppercase + string.digits, 10)}-{pick(rng, string.digits, 13)}-{pick(rng, HEXL, 64)}"
    if kind.startswith("xoxe"):
        return f"{kind}1-{pick(rng, ALNUM, 140)}"
    return f"{kind}{pick(rng, string.digits, 12)}-{pick(rng, string.digits, 13)}-{pick(rng, ALNUM, 24)}"


def slack_webhook(rng: random.Random) -> str:
    up = string.ascii_uppercase + string.digits
    return f"https://hooks.slack.com/services/T{pick(rng, up, 8)}/B{pick(rng, up, 10)}/{pick(rng, ALNUM, 24)}"


def discord_webhook(rng: random.Random) -> str:
    return f"https://discord.com/api/webhooks/{pick(rng, string.digits, 19)}/{pick(rng, B64URL, 68)}"


def stripe(rng: random.Random, prefix: str = "sk_live_", n: int = 24) -> str:
    return prefix + pick(rng, ALNUM, n)


def openai(rng: random.Random, prefix: str = "sk-proj-", marker: bool = False) -> str:
    if marker:
        return prefix + pick(rng, ALNUM + "-_", 74) + "T3BlbkFJ" + pick(rng, ALNUM + "-_", 74)
    return prefix + pick(rng, ALNUM + "-_", 156)


def openai_legacy(rng: random.Random) -> str:
    return "sk-" + pick(rng, ALNUM, 20) + "T3BlbkFJ" + pick(rng, ALNUM, 20)


def anthropic(rng: random.Random, kind: str = "api03") -> str:
    return f"sk-ant-{kind}-" + pick(rng, ALNUM + "-_", 93) + "AA"


def google_api_key(rng: random.Random) -> str:
    return "AIza" + pick(rng, ALNUM + "-_", 35)


def google_oauth(rng: random.Random) -> str:
    return "ya29.a0" + pick(rng, ALNUM + "-_", 150)


def aws_key_id(rng: random.Random, prefix: str = "AKIA") -> str:
    return prefix + pick(rng, B32, 16)


def aws_secret(rng: random.Random) -> str:
    return pick(rng, B64, 40)


def pypi(rng: random.Random) -> str:
    return "pypi-AgEIcHlwaS5vcmc" + pick(rng, B64URL, 160)


def hf(rng: random.Random) -> str:
    return "hf_" + pick(rng, string.ascii_letters, 34)


def digitalocean(rng: random.Random) -> str:
    return "dop_v1_" + pick(rng, HEXL, 64)


def shopify(rng: random.Random) -> str:
    return "shpat_" + pick(rng, HEXL, 32)


def sendgrid(rng: random.Random) -> str:
    return "SG." + pick(rng, B64URL, 22) + "." + pick(rng, B64URL, 43)


def twilio(rng: random.Random) -> str:
    return "SK" + pick(rng, HEXL, 32)


def telegram(rng: random.Random) -> str:
    return pick(rng, "123456789", 1) + pick(rng, string.digits, 9) + ":AA" + pick(rng, B64URL, 33)


def simple(rng: random.Random, prefix: str, alphabet: str, n: int) -> str:
    return prefix + pick(rng, alphabet, n)


def age_secret(rng: random.Random) -> str:
    return "AGE-SECRET-KEY-1" + pick(rng, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)


def terraform(rng: random.Random) -> str:
    return pick(rng, string.ascii_lowercase + string.digits, 14) + ".atlasv1." + pick(rng, ALNUM, 67)


def azure_client_secret(rng: random.Random) -> str:
    return pick(rng, ALNUM, 3) + "8Q~" + pick(rng, ALNUM + "_~.-", 34)


# ---------- private keys ----------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _int(rng: random.Random, nbytes: int) -> bytes:
    v = bytes([rng.randrange(0x40, 0x80)]) + rng.randbytes(nbytes - 1)
    return _der(0x02, v)


def rsa_der(rng: random.Random, bits: int = 2048) -> bytes:
    """A PKCS#1 RSAPrivateKey structure of random numbers (right shape, no real key)."""
    n = bits // 8
    parts = [_der(0x02, b"\x00"), _int(rng, n), _der(0x02, b"\x01\x00\x01"), _int(rng, n)]
    parts += [_int(rng, n // 2) for _ in range(5)]
    return _der(0x30, b"".join(parts))


def pkcs8_der(rng: random.Random) -> bytes:
    alg = bytes.fromhex("300d06092a864886f70d0101010500")
    return _der(0x30, _der(0x02, b"\x00") + alg + _der(0x04, rsa_der(rng)))


def ec_der(rng: random.Random) -> bytes:
    return _der(0x30, _der(0x02, b"\x01") + _der(0x04, rng.randbytes(32))
                + bytes.fromhex("a00a06082a8648ce3d030107") + _der(0xA1, _der(0x03, b"\x00\x04" + rng.randbytes(64))))


def pem(label: str, der: bytes, wrap: int = 64) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + wrap] for i in range(0, len(body), wrap)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def openssh_key(rng: random.Random) -> str:
    blob = b"openssh-key-v1\0" + b"\0\0\0\x04none\0\0\0\x04none\0\0\0\0\0\0\0\x01" + rng.randbytes(300)
    return pem("OPENSSH PRIVATE KEY", blob, 70)


# ---------- JWTs ----------


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(rng: random.Random, alg: str = "HS256", exp: int | None = 0, iat: int | None = 0, claims: dict | None = None) -> str:
    now = int(time.time())
    payload = {"sub": pick(rng, string.digits, 8), "iss": "https://auth.example-corp.dev/", "scope": "read write"}
    if iat is not None:
        payload["iat"] = iat or now - 60
    if exp is not None:
        payload["exp"] = exp or now + 10 * 365 * 86400  # live for years: the stored corpus must stay valid
    payload.update(claims or {})
    head = _b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64u(json.dumps(payload).encode())
    if alg == "HS256":
        sig = hmac.new(rng.randbytes(32), f"{head}.{body}".encode(), hashlib.sha256).digest()
    elif alg == "RS256":
        sig = rng.randbytes(256)
    elif alg == "ES256":
        sig = rng.randbytes(64)
    else:
        sig = b""
    return f"{head}.{body}.{_b64u(sig)}"


# ---------- payment, bank ----------

_CARD_PREFIXES = {"visa": ("4",), "mastercard": ("51", "52", "53", "54", "55", "2221", "2720"), "amex": ("34", "37"),
                  "discover": ("6011", "65"), "jcb": ("3528", "3589"), "diners": ("36",), "unionpay": ("62",)}
_CARD_LEN = {"visa": 16, "mastercard": 16, "amex": 15, "discover": 16, "jcb": 16, "diners": 14, "unionpay": 16}


def luhn_complete(partial: str) -> str:
    for d in "0123456789":
        if detect._luhn_ok(partial + d):
            return partial + d
    raise AssertionError


def card(rng: random.Random, brand: str = "visa") -> str:
    prefix = rng.choice(_CARD_PREFIXES[brand])
    n = _CARD_LEN[brand]
    return luhn_complete(prefix + pick(rng, string.digits, n - len(prefix) - 1))


def group_card(number: str, sep: str = " ") -> str:
    if len(number) == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    if len(number) == 14:
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


_BBAN = {"DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c", "CH": "5n12c",
         "BE": "12n", "PL": "24n", "AT": "16n", "IE": "4a14n", "PT": "21n", "SE": "20n", "NO": "11n", "DK": "14n"}


def iban(rng: random.Random, country: str = "DE") -> str:
    spec = _BBAN[country]
    bban = ""
    num = ""
    for ch in spec:
        if ch.isdigit():
            num += ch
            continue
        count = int(num)
        num = ""
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        bban += pick(rng, alphabet, count)
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


def group_iban(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


# ---------- crypto ----------

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def btc_address(rng: random.Random, version: int = 0x00) -> str:
    return b58check(bytes([version]) + rng.randbytes(20))


def wif(rng: random.Random, compressed: bool = True) -> str:
    return b58check(b"\x80" + rng.randbytes(32) + (b"\x01" if compressed else b""))


def xkey(rng: random.Random, private: bool = True, version: int = 0x0488ADE4) -> str:
    key = b"\x00" + rng.randbytes(32) if private else b"\x02" + rng.randbytes(32)
    if not private and version == 0x0488ADE4:
        version = 0x0488B21E
    return b58check(version.to_bytes(4, "big") + b"\x03" + rng.randbytes(4) + b"\x00\x00\x00\x01" + rng.randbytes(32) + key)


_BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def bech32(hrp: str, data5: list[int], m: bool = False) -> str:
    const = 0x2BC830A3 if m else 1
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data5
    pm = _polymod(values + [0] * 6) ^ const
    return hrp + "1" + "".join(_BECH[d] for d in data5 + [(pm >> 5 * (5 - i)) & 31 for i in range(6)])


def _to5(data: bytes) -> list[int]:
    acc = bits = 0
    out = []
    for b in data:
        acc = acc << 8 | b
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(acc >> bits & 31)
    if bits:
        out.append(acc << (5 - bits) & 31)
    return out


def segwit(rng: random.Random, hrp: str = "bc", taproot: bool = False) -> str:
    if taproot:
        return bech32(hrp, [1] + _to5(rng.randbytes(32)), m=True)
    return bech32(hrp, [0] + _to5(rng.randbytes(20)))


def nsec(rng: random.Random) -> str:
    return bech32("nsec", _to5(rng.randbytes(32)))


def eth_address(rng: random.Random) -> str:
    h = rng.randbytes(20).hex()
    digest = detect.keccak256(h.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(d, 16) >= 8 else c for c, d in zip(h, digest))


def seed_phrase(rng: random.Random, words: int = 12) -> str:
    ent_bits = words * 11 * 32 // 33
    entropy = rng.randbytes(ent_bits // 8)
    cs = ent_bits // 32
    bits = int.from_bytes(entropy, "big") << cs | hashlib.sha256(entropy).digest()[0] >> (8 - cs)
    idx = [(bits >> (11 * (words - 1 - i))) & 0x7FF for i in range(words)]
    return " ".join(detect.BIP39_WORDS[i] for i in idx)


def random_words(rng: random.Random, words: int = 12) -> str:
    return " ".join(rng.choice(detect.BIP39_WORDS) for _ in range(words))


# ---------- passwords ----------

SYMBOLS = "!#$%&*+-=?@^~"


def password(rng: random.Random, n: int = 16) -> str:
    while True:
        s = pick(rng, ALNUM + SYMBOLS, n)
        if detect._classes(s) == 4:
            return s


def memorable_password(rng: random.Random) -> str:
    word = rng.choice(["Summer", "Falcon", "Harbor", "Quartz", "Maple", "Copper", "Winter", "Violet", "Tiger"])
    return f"{word}{rng.choice(SYMBOLS)}{rng.randrange(1000, 9999)}{pick(rng, string.ascii_uppercase, 2)}"
