"""Private keys (PEM, PuTTY, DER), JWTs and AWS secret access keys (for detect.py)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Iterator

if __package__:  # the tests import this as claude_bottle.bundle.detect_secrets
    from claude_bottle.bundle.detect_text import (
        _classes, _entropy, _IDCHARS, _Parts, _printable_ascii, _switch_ratio, _wordy,
    )
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _classes, _entropy, _IDCHARS, _Parts, _printable_ascii, _switch_ratio, _wordy  # noqa: E402


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
