"""URLs and host names: random atoms in a URL, data encoded into a wildcard host's labels
(label_exfil), and the deny list of data-drop services (denied_service). For detect.py."""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator

if __package__:  # the tests import this as claude_bottle.bundle.detect_hosts
    from claude_bottle.bundle.detect_text import _classes, _entropy, _HEX, _printable_ascii, _switch_ratio, _wordy
    from claude_bottle.bundle.detect_secrets import _JWT
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _classes, _entropy, _HEX, _printable_ascii, _switch_ratio, _wordy  # noqa: E402
    from detect_secrets import _JWT  # noqa: E402


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
