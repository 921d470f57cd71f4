"""Secrets in config and environment dumps: KEY=VALUE, YAML, JSON, CSV, netrc, command lines,
connection strings, and the judging of keys and values (for detect.py)."""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator

if __package__:  # the tests import this as claude_bottle.bundle.detect_config
    from claude_bottle.bundle.detect_text import (
        _classes, _entropy, _HEX, _Parts, _printable_ascii, _switch_ratio, _wordy,
    )
    from claude_bottle.bundle.detect_tokens import _TOKEN_TABLE
    from claude_bottle.bundle.detect_secrets import _JWT
    from claude_bottle.bundle.detect_hosts import _UUID
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _classes, _entropy, _HEX, _Parts, _printable_ascii, _switch_ratio, _wordy  # noqa: E402
    from detect_tokens import _TOKEN_TABLE  # noqa: E402
    from detect_secrets import _JWT  # noqa: E402
    from detect_hosts import _UUID  # noqa: E402


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


def _auth_strip(value: str) -> str:
    head, _, rest = value.partition(" ")
    return rest.strip() if rest and head.lower() in _AUTH_SCHEMES else value
