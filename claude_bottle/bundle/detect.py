"""Request DLP in pure Python: decoding layers, then validated detectors, for the bundle's addon.

Stdlib only and free of mitmproxy, importable as `claude_bottle.bundle.detect` and as the addon's
sibling module `detect` (no package-relative imports, like policy.py and dlp.py).
The detectors live in sibling modules, each importable the same two ways: detect_text (text shape
helpers, token views), detect_checks (checksums), detect_tokens (provider tokens), detect_secrets
(private keys, JWTs, AWS secrets), detect_config (config and environment dumps), detect_finance
(cards, IBANs, wallets, seeds), detect_hosts (URLs, host labels, the deny list), detect_layers (the
bounds and binary layers) and detect_decode (text layers). This module reads a request with them.

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
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Some names are imported only to be re-exported (the tests and tests/corpora read them from here).
if __package__:  # the tests import this as claude_bottle.bundle.detect
    from claude_bottle.bundle.detect_text import _classes, _Parts
    from claude_bottle.bundle.detect_checks import (
        _b58check, _bech32_ok, bip39_checksum_ok, BIP39_WORDS, _crc32_base62_ok, _eip55_ok, _iban_ok,
        keccak256, _luhn_ok, WORDLIST,
    )
    from claude_bottle.bundle.detect_tokens import _tokens
    from claude_bottle.bundle.detect_secrets import _aws_secrets, _jwts, _private_keys
    from claude_bottle.bundle.detect_hosts import (
        denied_service, DENIED_SERVICES, label_exfil, _url_atoms, _url_components,
    )
    from claude_bottle.bundle.detect_config import (
        _auth_strip, _config_secrets, _connection_strings, key_is_secret, key_is_strong, _value_is_secret,
    )
    from claude_bottle.bundle.detect_finance import _cards, _ibans, _seed_phrases, _wallets
    from claude_bottle.bundle.detect_layers import _Budget, MAX_DEPTH, MAX_VIEWS, _worth
    from claude_bottle.bundle.detect_decode import _Decoder
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _classes, _Parts  # noqa: E402
    from detect_checks import (  # noqa: E402
        _b58check, _bech32_ok, bip39_checksum_ok, BIP39_WORDS, _crc32_base62_ok, _eip55_ok, _iban_ok,
        keccak256, _luhn_ok, WORDLIST,
    )
    from detect_tokens import _tokens  # noqa: E402
    from detect_secrets import _aws_secrets, _jwts, _private_keys  # noqa: E402
    from detect_hosts import denied_service, DENIED_SERVICES, label_exfil, _url_atoms, _url_components  # noqa: E402
    from detect_config import (  # noqa: E402
        _auth_strip, _config_secrets, _connection_strings, key_is_secret, key_is_strong, _value_is_secret,
    )
    from detect_finance import _cards, _ibans, _seed_phrases, _wallets  # noqa: E402
    from detect_layers import _Budget, MAX_DEPTH, MAX_VIEWS, _worth  # noqa: E402
    from detect_decode import _Decoder  # noqa: E402


Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Finding:
    rule: str  # e.g. "card-number", "aws-secret-key", "seed-phrase"
    where: str  # "url", "header" or "body"
    layers: str = ""  # the decoding that reached it, outermost first ("base64>gzip"); "" as sent

    def describe(self) -> str:
        via = f" (decoded: {self.layers})" if self.layers else ""
        return f"{self.rule} in the {self.where}{via}"


# ---------- decoding ----------

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_PLACEHOLDER_SHAPE = re.compile(r"claude-bottle-placeholder-[A-Za-z0-9_]{1,80}-[0-9a-f]{32}")
_MASK = "PLACEHOLDER"


class _Scan(_Decoder):
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


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, duplicates kept."""


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
