"""The audit trail: what the bundle decided (its addon and pipelock), as JSON lines on the host.

The bundle writes its decisions to stdout (`docker logs`). When a session ends, before teardown, the
executor saves them to <state dir>/sessions/<bottle>-<session>.jsonl (mode 0600, outside any bottle's
reach) and prints a short summary; `claude-bottle logs` shows them live. Every record is rebuilt from a
fixed set of fields, so nothing else a log line might carry (a URL's path or query, a header) is kept,
and any secret value the launcher knows is masked as a last guard.

pipelock refuses what the addon asks it for, and the addon logs each refusal itself (kind "pipelock"),
so the summary counts the addon's records only; pipelock's own lines are kept in the file as detail.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from collections import Counter

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from claude_bottle.plan import Plan
    from claude_bottle.runner import Runner

FIELDS = ("ts", "source", "event", "host", "port", "method", "scheme", "mode", "kind", "secret", "rules", "peer",
          "reason")
SUMMARY_ROWS = 8  # per kind of line; the rest is counted, and the file has everything
# Where pipelock's lines name what they were about, the first one present winning: a URL or a host:port
# target (most kinds), else a bare host (sni_mismatch: connect_host; response_scan_exempt: hostname).
_PIPELOCK_WHERE = ("url", "target")
_PIPELOCK_HOST = ("connect_host", "hostname")
# Where they say why: `reason` (blocked, anomaly, ws_blocked, shutdown, ...), `error` (error),
# `detail` (session_anomaly), `deny_message` (kill_switch_deny), `block_reason` (media_exposure).
_PIPELOCK_WHY = ("reason", "error", "detail", "deny_message", "block_reason")
# A URL inside free text (Go's errors quote the whole URL: Get "http://h/p?q": dial tcp ...).
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*")


def _text(value: Any, limit: int = 300) -> str:
    return str(value)[:limit]


def _host_port(where: str) -> tuple[str | None, int | None]:
    """Host and port of a URL or CONNECT target, and nothing else of it."""
    if "://" in where:
        parts = urllib.parse.urlsplit(where)
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.hostname, port or {"https": 443, "http": 80}.get(parts.scheme)
    host, sep, digits = where.rpartition(":")
    if sep and digits.isdigit():
        return host.strip("[]") or None, int(digits)
    return where or None, None


def _no_urls(text: str) -> str:
    """Free text with every URL in it cut to scheme://host[:port] (a path or query may carry a secret)."""

    def cut(m: re.Match[str]) -> str:
        parts = urllib.parse.urlsplit(m.group(0))
        host = parts.netloc.rpartition("@")[2]  # never userinfo
        return f"{parts.scheme}://{host}"

    return _URL_IN_TEXT.sub(cut, text)


def _names(value: Any) -> str:
    return ", ".join(_text(v, 80) for v in value if isinstance(v, str)) if isinstance(value, list) else ""


def _pipelock_reason(raw: dict[str, Any]) -> str:
    """Why, for each kind of pipelock line: most carry a text field, a few only fields to build it from."""
    event, get = raw["event"], (lambda key: _text(raw.get(key) or "", 80))
    if event == "sni_mismatch":  # no reason field: category is mismatch, not_tls, malformed_tls or timeout
        sni = f": the ClientHello names {get('sni_host')}" if raw.get("sni_host") else ""
        return f"SNI verification failed ({get('category') or 'unknown'}){sni}"
    if event == "startup":
        return (f"pipelock {get('version')} listening on {get('listen')}, mode {get('mode')}, "
                f"config {get('config_hash')[:12]}")
    if event == "config_reload":
        detail = f": {get('detail')}" if raw.get("detail") else ""
        return f"config reload {get('status')}{detail}, config {get('config_hash')[:12]}"
    if event in ("adaptive_escalation", "airlock_deescalate"):
        return f"{get('from')} -> {get('to')}"
    if event in ("forward_http", "allowed") and isinstance(raw.get("status_code"), int):
        return f"status {raw['status_code']}"
    if event == "tunnel_close" and isinstance(raw.get("duration_ms"), (int, float)):
        return f"closed after {raw['duration_ms'] / 1000:.1f} s, {_text(raw.get('total_bytes', '?'), 20)} bytes"
    if event == "adaptive_upgrade":
        return f"{get('from_action') or 'allow'} -> {get('to_action')} at {get('escalation_level')}"
    # DLP and scan hits (body_dlp, header_dlp, response_scan, ws_scan, dlp_warn, address_protection):
    # pattern names, never the matched text.
    found = _names(raw.get("patterns")) or _names(raw.get("findings")) or get("pattern")
    if found:
        where = f" in header {get('header')}" if raw.get("header") else ""
        return f"{get('action') or get('mode') or 'match'}: {found}{where}"
    for key in _PIPELOCK_WHY:
        if raw.get(key):
            return _text(raw[key])
    return _text(raw.get("message") or "")


def record(line: str, saved: bool = False) -> dict[str, Any] | None:
    """One decision from one log line of the bundle (or of a saved session log, already in our shape),
    or None for anything else (supervisor chatter)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        return None
    if saved or (raw.get("source") == "addon" and "component" not in raw):
        rec = {k: raw[k] for k in FIELDS if k in raw}
        if not isinstance(rec.get("rules", []), list):
            rec.pop("rules")
        if isinstance(rec.get("reason"), str):
            rec["reason"] = _no_urls(rec["reason"])
        return rec
    # pipelock (zerolog, "component":"pipelock"): keep its verdict, the host and port it was about, and why.
    host: str | None = None
    port: int | None = None
    where = next((raw[k] for k in _PIPELOCK_WHERE if raw.get(k) and isinstance(raw[k], str)), None)
    bare = next((raw[k] for k in _PIPELOCK_HOST if raw.get(k) and isinstance(raw[k], str)), None)
    if where is not None:
        host, port = _host_port(_text(where, 2000))
    elif bare is not None:
        host = _text(bare).strip("[]") or None  # no port to split off: "::1" is a host
    rec = {"ts": _text(raw.get("time") or raw.get("ts") or "", 40), "source": "pipelock",
           "event": _text(raw["event"], 40), "host": host, "port": port,
           "reason": _no_urls(_pipelock_reason(raw))}
    if raw.get("method"):
        rec["method"] = _text(raw["method"], 16)
    if raw.get("scanner"):
        rec["kind"] = _text(raw["scanner"], 40)
    elif raw["event"] == "sni_mismatch":
        rec["kind"] = "sni"
    return rec


def mask(rec: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """Replace any known secret value inside a record's text with [NAME] (values never reach a log)."""
    if not values:
        return rec

    def clean(text: str) -> str:
        for name, value in values.items():
            text = text.replace(value, f"[{name}]")
        return text

    out: dict[str, Any] = {}
    for key, val in rec.items():
        if isinstance(val, str):
            val = clean(val)
        elif isinstance(val, list):
            val = [clean(v) if isinstance(v, str) else v for v in val]
        out[key] = val
    return out


def records(lines: Iterable[str], values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    found = (record(line) for line in lines)
    return [mask(rec, values or {}) for rec in found if rec is not None]


def save(path: str, recs: list[dict[str, Any]]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        for rec in recs:
            handle.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [rec for rec in (record(line, saved=True) for line in handle) if rec is not None]


def _rows(label: str, counts: Counter[tuple[str, str]]) -> list[str]:
    rows = [f"  {label:<8} {n:>4}x  {a}  {b}".rstrip() for (a, b), n in counts.most_common(SUMMARY_ROWS)]
    if len(counts) > SUMMARY_ROWS:
        rows.append(f"  {'':<8} ... and {len(counts) - SUMMARY_ROWS} more (see the log)")
    return rows


def summary(recs: list[dict[str, Any]]) -> list[str]:
    """A few lines: requests allowed, blocked (by host and reason), secrets injected (by name and host),
    DLP warnings and failed requests. Only the addon's records count: it logs every refusal pipelock
    makes (kind "pipelock") as well as its own, so pipelock's lines would count those twice."""
    addon = [r for r in recs if r.get("source") == "addon"]

    def by(event: str, key: Callable[[dict[str, Any]], tuple[str, str]]) -> Counter[tuple[str, str]]:
        return Counter(key(r) for r in addon if r.get("event") == event)

    def why(r: dict[str, Any]) -> tuple[str, str]:
        return str(r.get("host")), str(r.get("reason", ""))

    allowed = sum(1 for r in addon if r.get("event") == "allowed")
    tunnels = sum(1 for r in addon if r.get("event") == "tunnel_open" and r.get("kind") == "tcp")
    blocked, warned, failed = by("blocked", why), by("warning", why), by("failed", why)
    injected = by("injected", lambda r: (str(r.get("secret")), f"-> {r.get('host')}"))
    n_injected = sum(injected.values())
    head = (f"{allowed} request{'s' * (allowed != 1)} allowed, {sum(blocked.values())} blocked, "
            f"{n_injected} secret injection{'s' * (n_injected != 1)}")
    if tunnels:
        head += f", {tunnels} raw TCP tunnel{'s' * (tunnels != 1)}"
    if warned:
        head += f", {sum(warned.values())} DLP warning{'s' * (sum(warned.values()) != 1)}"
    if failed:
        head += f", {sum(failed.values())} failed"
    return [head, *_rows("blocked", blocked), *_rows("injected", injected), *_rows("warning", warned),
            *_rows("failed", failed)]


def finish(runner: Runner, plan: Plan, values: dict[str, str] | None, state_dir: str) -> None:
    """Save the session's decisions and print the summary (stderr). Never raises: teardown comes next."""
    try:
        from claude_bottle import docker_argv

        result = runner.run(docker_argv.logs(plan.container("bundle").name), timeout=120)
        if result.returncode != 0:
            return  # the bundle was never created: nothing was decided
        recs = records((result.stdout + "\n" + result.stderr).splitlines(), values)
        from claude_bottle import paths

        path = paths.session_log(state_dir, plan.name, plan.session)
        save(path, recs)
        lines = summary(recs)
        print(f"claude-bottle: session {plan.session}: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(line, file=sys.stderr)
        print(f"claude-bottle: decisions logged in {path}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - the audit must never stop the cleanup
        print(f"claude-bottle: the audit log was not saved: {exc}", file=sys.stderr)


def _printable(value: Any) -> str:
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)  # no terminal escapes from a hostile host


def text_line(rec: dict[str, Any]) -> str:
    """One aligned line for people: time, source, event, host:port, and why."""
    ts = _printable(rec.get("ts"))
    ts = ts[11:23].rstrip("Z") if len(ts) >= 19 and ts[10] == "T" else ts  # pipelock's have whole seconds
    host = _printable(rec.get("host") or "-")
    where = (f"[{host}]" if ":" in host else host) + (f":{rec['port']}" if rec.get("port") else "")
    extra = []
    if rec.get("secret"):
        extra.append(f"secret={_printable(rec['secret'])}")
    if rec.get("rules"):
        extra.append("rules=" + ",".join(_printable(r) for r in rec["rules"]))
    if rec.get("mode"):
        extra.append(f"dlp={_printable(rec['mode'])}")
    tail = _printable(rec.get("reason") or "") + (f"  [{' '.join(extra)}]" if extra else "")
    source, event = _printable(rec.get("source")), _printable(rec.get("event"))
    return f"{ts:<12}  {source:<8} {event:<13} {where:<32} {tail}".rstrip()  # 13: config_reload
