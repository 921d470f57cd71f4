"""The audit trail: what the bundle decided (its addon and pipelock), as JSON lines on the host.

The bundle writes its decisions to stdout (`docker logs`). When a session ends, before teardown, the
executor saves them to <state dir>/sessions/<bottle>-<session>.jsonl (mode 0600, outside any bottle's
reach) and prints a short summary; `claude-bottle logs` shows them live. Every record is rebuilt from a
fixed set of fields, so nothing else a log line might carry (a URL's path or query, a header) is kept,
and any secret value the launcher knows is masked as a last guard.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections import Counter

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from claude_bottle.plan import Plan
    from claude_bottle.runner import Runner

FIELDS = ("ts", "source", "event", "host", "port", "method", "scheme", "mode", "kind", "secret", "rules", "peer",
          "reason")  # fmt: skip
SUMMARY_ROWS = 8  # per kind of line; the rest is counted, and the file has everything
SESSIONS_DIR = "sessions"


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
    if raw.get("source") == "addon" or saved:
        rec = {k: raw[k] for k in FIELDS if k in raw}
        if not isinstance(rec.get("rules", []), list):
            rec.pop("rules")
        return rec
    # pipelock (zerolog): keep its verdict, the host and port it was about, and why.
    host, port = _host_port(_text(raw.get("url") or raw.get("target") or "", 2000))
    rec = {"ts": _text(raw.get("time") or raw.get("ts") or "", 40), "source": "pipelock",
           "event": _text(raw["event"], 40), "host": host, "port": port,
           "reason": _text(raw.get("reason", ""))}  # fmt: skip
    if raw.get("method"):
        rec["method"] = _text(raw["method"], 16)
    if raw.get("scanner"):
        rec["kind"] = _text(raw["scanner"], 40)
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


def session_path(state_dir: str, name: str, session: str) -> str:
    return os.path.join(state_dir, SESSIONS_DIR, f"{name}-{session}.jsonl")


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
    """A few lines: requests allowed, blocked (by host and reason), secrets injected (by name and host)."""
    allowed = sum(1 for r in recs if r.get("event") == "allowed" and r.get("source") == "addon")
    tunnels = sum(1 for r in recs if r.get("event") == "tunnel_open" and r.get("kind") == "tcp")
    blocked = Counter((str(r.get("host")), str(r.get("reason", ""))) for r in recs if r.get("event") == "blocked")
    injected = Counter((str(r.get("secret")), f"-> {r.get('host')}") for r in recs if r.get("event") == "injected")
    warned = Counter((str(r.get("host")), str(r.get("reason", ""))) for r in recs if r.get("event") == "warning")
    head = (f"{allowed} request{'s' * (allowed != 1)} allowed, {sum(blocked.values())} blocked, "
            f"{sum(injected.values())} secret injection{'s' * (sum(injected.values()) != 1)}")  # fmt: skip
    if tunnels:
        head += f", {tunnels} raw TCP tunnel{'s' * (tunnels != 1)}"
    if warned:
        head += f", {sum(warned.values())} DLP warning{'s' * (sum(warned.values()) != 1)}"
    return [head, *_rows("blocked", blocked), *_rows("injected", injected), *_rows("warning", warned)]


def finish(runner: Runner, plan: Plan, values: dict[str, str] | None, state_dir: str) -> None:
    """Save the session's decisions and print the summary (stderr). Never raises: teardown comes next."""
    try:
        result = runner.run(["docker", "logs", plan.container("bundle").name], timeout=120)
        if result.returncode != 0:
            return  # the bundle was never created: nothing was decided
        recs = records((result.stdout + "\n" + result.stderr).splitlines(), values)
        path = session_path(state_dir, plan.name, plan.session)
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
    ts = ts[11:23] if len(ts) >= 23 and ts[10] == "T" else ts
    where = _printable(rec.get("host") or "-") + (f":{rec['port']}" if rec.get("port") else "")
    extra = []
    if rec.get("secret"):
        extra.append(f"secret={_printable(rec['secret'])}")
    if rec.get("rules"):
        extra.append("rules=" + ",".join(_printable(r) for r in rec["rules"]))
    if rec.get("mode"):
        extra.append(f"dlp={_printable(rec['mode'])}")
    tail = _printable(rec.get("reason") or "") + (f"  [{' '.join(extra)}]" if extra else "")
    source, event = _printable(rec.get("source")), _printable(rec.get("event"))
    return f"{ts:<12}  {source:<8} {event:<11} {where:<32} {tail}".rstrip()
