"""Provider tokens by prefix: the table, and finding its tokens in a text (for detect.py)."""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

if __package__:  # the tests import this as claude_bottle.bundle.detect_tokens
    from claude_bottle.bundle.detect_text import _HEX, _IDCHARS, _Parts, _switch_ratio, _wordy
    from claude_bottle.bundle.detect_checks import _crc32_base62_ok
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from detect_text import _HEX, _IDCHARS, _Parts, _switch_ratio, _wordy  # noqa: E402
    from detect_checks import _crc32_base62_ok  # noqa: E402


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
