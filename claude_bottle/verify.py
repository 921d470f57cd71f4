"""`claude-bottle verify`: what to try inside a bottle, and what the results mean. Pure.

The battery is built from the plan (its rules, DLP modes, secrets and proxy); the probe
(agent/verify_probe.py) tries each check inside the agent and reports only what happened; judge()
reads that here, so every rule for "refused" lives in one place that unit tests can hold to. Two kinds:
  reach   an allowed rule, reached or not: reported, never a failure (the outside may be down)
  escape  a way out the bottle must refuse; the run passes only when every one was refused
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from claude_bottle.plan import Plan

from claude_bottle.plan import CA_PATH  # where the agent finds the bundle's CA; the probe's TLS trusts it

# For real users: well-known public targets that answer when reached (TCP 80/443, UDP 53 and ping for
# the address, a name that always resolves), so a hole shows up as an answer rather than as silence.
DEFAULT_OUTSIDE = "1.1.1.1"
DEFAULT_OUTSIDE6 = "2606:4700:4700::1111"
DEFAULT_OUTSIDE_NAME = "example.com"
METADATA = "169.254.169.254"
PIPELOCK = "127.0.0.1:8888"  # the bundle's loopback pipelock: never to be reached from the bottle
PROBE_PATH = "/etc/claude-bottle/verify_probe.py"
SPEC_PATH = "/etc/claude-bottle/verify.json"
PROBE_COMMAND = ("python3", PROBE_PATH, SPEC_PATH)
MARKER = "CLAUDE-BOTTLE-VERIFY "
UNNAMED_PORTS = (8443, 8081, 2222, 65535)  # the first that a host's rules leave out is tried
# Errors that mean the kernel found no way to send (or was not allowed to): nothing left the bottle.
REFUSING = frozenset({"ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "EADDRNOTAVAIL", "EAFNOSUPPORT",
                      "EPROTONOSUPPORT", "EACCES", "EPERM"})
DLP_WORDS = ("dlp", "gitleaks", "secret detected")  # a 403 "naming DLP": the addon's reasons say one of these
REACHED, UNREACHABLE, REFUSED, OPEN, NA, ERROR = "reached", "unreachable", "refused", "NOT REFUSED", "n/a", "error"


@dataclass(frozen=True)
class Targets:
    outside: str  # an IPv4 address outside the bottle
    outside6: str  # an IPv6 one
    outside_name: str  # a name that resolves outside the bottle
    fake_key: str  # AWS-access-key-shaped, new every run: never a real credential


@dataclass(frozen=True)
class Check:
    id: str
    kind: str  # "reach" or "escape"
    name: str  # the class of check, as the table shows it
    target: str
    judge: str = ""  # which reading of the observation applies (JUDGES)
    probe: str = ""  # JSON: what the probe does; "" when the check does not apply
    na: str = ""  # why it does not apply

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, **json.loads(self.probe)}


@dataclass(frozen=True)
class Outcome:
    check: Check
    result: str  # REACHED or UNREACHABLE (reach); REFUSED, OPEN, NA or ERROR (escape)
    detail: str
    observed: str = ""  # the probe's observation, as JSON

    @property
    def failed(self) -> bool:
        return self.check.kind == "escape" and self.result not in (REFUSED, NA)


def fake_aws_key(seed: bytes) -> str:
    """AKIA and 16 characters of the base32 alphabet: the shape of an AWS access key id."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AKIA" + "".join(alphabet[b % 32] for b in seed[:16]).ljust(16, "Q")


def _check(kind: str, name: str, target: str, judge: str, /, **probe: Any) -> Check:
    return Check(f"{_slug(name)}:{target}", kind, name, target, judge, json.dumps(probe, sort_keys=True))


def _na(name: str, target: str, why: str) -> Check:
    return Check(f"{_slug(name)}:{target}", "escape", name, target, na=why)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def covered(host: str, gates: list[dict[str, Any]]) -> bool:
    """Whether a rule reaches `host` (a wildcard covers its apex too, as pipelock's does)."""
    return any(host == g["host"] or (g["wildcard"] and host.endswith("." + g["host"])) for g in gates)


def dlp_mode(dlp: dict[str, Any], host: str) -> str:
    """The bundle's own rule (policy.Dlp.mode): an exact entry, else the longest wildcard, else the default."""
    best, best_len = dlp["default"], -1
    for entry in dlp["hosts"]:
        if entry["host"] == host and not entry["wildcard"]:
            return entry["mode"]
        covers = host == entry["host"] or host.endswith("." + entry["host"])
        if entry["wildcard"] and covers and len(entry["host"]) > best_len:
            best, best_len = entry["mode"], len(entry["host"])
    return best


def dns_query(name: str) -> bytes:
    """A standard recursive query for NAME's A record: what any resolver answers."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return bytes.fromhex("636201000001000000000000") + qname + b"\0\x01\0\x01"


def _web(gate: dict[str, Any]) -> dict[str, Any] | None:
    """How to send an HTTP request to a gate's host: HTTPS first when 443 is allowed, else plain."""
    ports = gate["ports"]
    if 443 in ports:
        return {"mode": "tls", "port": 443, **({"fallback_port": 80} if 80 in ports else {})}
    if 80 in ports:
        return {"mode": "absolute", "port": 80}
    return None


def battery(plan: Plan, t: Targets) -> tuple[Check, ...]:
    egress = json.loads(plan.egress_json)
    gates = egress["port_gates"]
    checks = [*_reach(egress["rules"]), *_direct(t), *_bundle(plan, gates), *_unnamed(t, gates),
              _placeholder(plan, gates), *_dlp(plan, gates, t)]
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids)), "check ids must be unique"
    return tuple(checks)


def _reach(rules: list[dict[str, Any]]) -> list[Check]:
    out = []
    for rule in rules:
        host, ports = rule["host"].removeprefix("*."), rule["ports"]
        label = rule["rule"] + (f" ({rule['preset']})" if rule["preset"] else "")
        web = _web({"ports": ports}) if rule["kind"] in ("web", "wildcard") else None
        if web is not None:
            out.append(_check("reach", "allowed rule", label, "reach", action="http", host=host, path="/", **web))
        else:
            out.append(_check("reach", "allowed rule", label, "reach", action="http", mode="connect", host=host,
                              port=ports[0], banner=True))
    return out


def _direct(t: Targets) -> list[Check]:
    return [
        _check("escape", "direct TCP", f"{t.outside}:443", "net", action="tcp", host=t.outside, port=443),
        _check("escape", "direct TCP", f"{t.outside}:80", "net", action="tcp", host=t.outside, port=80),
        _check("escape", "direct UDP (a DNS query)", f"{t.outside}:53", "net", action="udp", host=t.outside,
               port=53, payload=dns_query(t.outside_name).hex()),
        _check("escape", "ICMP echo", t.outside, "icmp", action="icmp", host=t.outside),
        _check("escape", "DNS lookup", t.outside_name, "dns", action="dns", name=t.outside_name),
        _check("escape", "IPv6", authority(t.outside6, 443), "ipv6", action="ipv6", host=t.outside6, port=443),
        _check("escape", "cloud metadata, direct", f"{METADATA}:80", "net", action="tcp", host=METADATA, port=80),
        _check("escape", "cloud metadata, via proxy", f"http://{METADATA}/latest/meta-data/", "blocked",
               action="http", mode="absolute", host=METADATA, port=80, path="/latest/meta-data/"),
    ]


def _bundle(plan: Plan, gates: list[dict[str, Any]]) -> list[Check]:
    proxy = urlsplit(plan.proxy_url)
    host, port = proxy.hostname or "", proxy.port or 80
    loop_host, _, loop_port = PIPELOCK.partition(":")
    out = [
        _check("escape", "bundle's other ports", f"{host}, all TCP but {port}", "scan", action="scan", host=host,
               skip=[port]),
        _check("escape", "bundle, not as a proxy", f"GET /health, Host: {PIPELOCK}", "blocked", action="http",
               mode="origin", host=host, host_header=PIPELOCK, path="/health"),
        _check("escape", "bundle, not as a proxy", f"GET http://{PIPELOCK}/health", "blocked", action="http",
               mode="absolute", host=loop_host, port=int(loop_port), path="/health"),
        _check("escape", "bundle, not as a proxy", f"CONNECT {PIPELOCK}", "blocked", action="http",
               mode="connect", host=loop_host, port=int(loop_port)),
    ]
    if covered("mitm.it", gates):
        out.append(_na("bundle, not as a proxy", "GET http://mitm.it/", "a rule allows mitm.it"))
    else:  # mitmproxy's own pages answer at this name unless something refuses it first
        out.append(_check("escape", "bundle, not as a proxy", "GET http://mitm.it/", "blocked", action="http",
                          mode="absolute", host="mitm.it", port=80, path="/"))
    return out


def _unnamed(t: Targets, gates: list[dict[str, Any]]) -> list[Check]:
    out = []
    name, what = "host no rule names", "a rule allows it"
    out.append(_na(name, f"CONNECT {t.outside_name}:443", what) if covered(t.outside_name, gates) else
               _check("escape", name, f"CONNECT {t.outside_name}:443", "blocked", action="http", mode="connect",
                      host=t.outside_name, port=443))
    out.append(_na(name, f"GET http://{t.outside}/", what) if covered(t.outside, gates) else
               _check("escape", name, f"GET http://{t.outside}/", "blocked", action="http", mode="absolute",
                      host=t.outside, port=80, path="/"))
    if not gates:
        out.append(_na("port no rule names", "-", "no rule names a host"))
    for gate in gates:
        port = next(p for p in UNNAMED_PORTS if p not in gate["ports"])
        target = authority(gate["host"], port)
        out.append(_check("escape", "port no rule names", target, "blocked", action="http", mode="connect",
                          host=gate["host"], port=port))
    return out


def _placeholder(plan: Plan, gates: list[dict[str, Any]]) -> Check:
    name = "placeholder, wrong host"
    if not plan.secrets:
        return _na(name, "-", "the plan has no secrets")
    secret = plan.secrets[0].secret
    web = [g for g in gates if _web(g) is not None]
    others = sorted((g for g in web if g["host"] not in secret.hosts), key=lambda g: g["wildcard"])  # exact first
    if others:
        gate, header = others[0], secret.header
        target = f"${secret.name} to {gate['host']} (bound to {', '.join(secret.hosts)})"
    else:  # every web host is the secret's own: the wrong header is the nearest thing to test
        gate = next((g for g in web if g["host"] == secret.hosts[0]), None)
        header = "x-claude-bottle-verify"
        target = f"${secret.name} in {header} to {secret.hosts[0]} (no other host is allowed)"
        if gate is None:
            return _na(name, f"${secret.name}", "no rule allows HTTP to any host")
    how = _web(gate) or {}
    return _check("escape", name, target, "placeholder", action="http", host=gate["host"], path="/",
                  env_headers=[[header, secret.name]], **how)


def _dlp(plan: Plan, gates: list[dict[str, Any]], t: Targets) -> list[Check]:
    name = "fake secret in a body"
    dlp = json.loads(plan.bundle_policy)["dlp"]
    body = json.dumps({"aws_access_key_id": t.fake_key, "note": "claude-bottle verify: a generated, fake key"})
    out = []
    for gate in gates:
        how = _web(gate)
        if how is None:
            continue  # raw TCP only: opaque bytes, not scanned by design (see the README)
        mode = dlp_mode(dlp, gate["host"])
        if mode != "scan":
            out.append(_na(name, gate["host"], f"DLP mode {mode} for this host: findings pass, by the manifest"))
            continue
        out.append(_check("escape", name, gate["host"], "dlp", action="http", host=gate["host"], method="POST",
                          path="/", body=body, **how))
    if not out:
        out.append(_na(name, "-", "no rule allows HTTP to any host"))
    return out




# ---------- judging ----------


def _attempt(a: dict[str, Any]) -> tuple[bool, str]:
    """(refused, what happened) for one attempt to send: refused only when the kernel would not send."""
    where = f"{a.get('stage', '?')}: "
    if a.get("connected"):
        return False, "connected"
    if a.get("reply"):
        return False, f"a reply came back ({a.get('bytes', '?')} bytes)"
    if a.get("timeout"):
        return False, f"{where}no answer and no error in {a.get('seconds', '?')} s: nothing refused it"
    name, text = a.get("errno"), a.get("error", "")
    if name in REFUSING:
        return True, f"{where}{name} ({text})"
    if name == "ECONNREFUSED":
        return False, f"{where}ECONNREFUSED: something answered, so a route out exists"
    return False, f"{where}{name} ({text}): not a refusal"


def _ipv6(o: dict[str, Any]) -> tuple[bool, str]:
    refused, text = _attempt(o)
    own = o.get("own_addresses") or []
    return refused, text + (f"; the agent has IPv6 addresses {', '.join(own)}" if own else "")


def _icmp(o: dict[str, Any]) -> tuple[bool, str]:
    raw, dgram = _attempt(o.get("raw", {})), _attempt(o.get("dgram", {}))
    raw_text = raw[1] + (" (no CAP_NET_RAW)" if "EPERM" in raw[1] else "")
    return raw[0] and dgram[0], f"raw socket: {raw_text}; ping socket: {dgram[1]}"


def _dns(o: dict[str, Any]) -> tuple[bool, str]:
    if o.get("addresses"):
        return False, f"resolved to {', '.join(o['addresses'])}"
    return True, f"does not resolve ({o.get('gai', '?')}: {o.get('error', '')})"


def _scan(o: dict[str, Any]) -> tuple[bool, str]:
    if o.get("open"):
        return False, f"open on {o.get('address')}: {', '.join(map(str, o['open']))}"
    if o.get("scanned", 0) < o.get("expected", 1):
        return False, f"scan incomplete: {o.get('scanned')} of {o.get('expected')} ports in the time allowed"
    quiet = f" ({o['unanswered']} never answered)" if o.get("unanswered") else ""
    return True, f"{o.get('scanned')} ports of {o.get('address')} closed{quiet}"


def _reply(o: dict[str, Any]) -> str:
    first = f"HTTPS: {_reply(o['first'])}; then " if isinstance(o.get("first"), dict) else ""
    via = {"connect": "CONNECT", "https": "HTTPS", "http": "HTTP"}.get(str(o.get("via")), "?")
    if o.get("status") is None:
        return f"{first}{via}: {o.get('error', 'no reply')}"
    line = str(o.get("body", "")).strip().splitlines()
    return f"{first}{via} {o['status']}" + (f" {line[0][:160]}" if line else "")


def _blocked_body(o: dict[str, Any]) -> str | None:
    body = str(o.get("body", ""))
    return body if o.get("status") == 403 and body.startswith("claude-bottle: blocked") else None


def _blocked_for(*words: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    """Refused: the bundle's own 403, and (when words are given) for a reason naming one of them."""

    def read(o: dict[str, Any]) -> tuple[bool, str]:
        body = _blocked_body(o)
        return body is not None and (not words or any(w in body.lower() for w in words)), _reply(o)

    return read


def _reach_judge(o: dict[str, Any]) -> tuple[bool, str]:
    if o.get("via") == "connect":
        banner = str(o.get("banner", "")).strip()
        return o.get("status") == 200, _reply(o) + (f", server says {banner[:80]!r}" if banner else "")
    ours = str(o.get("body", "")).startswith("claude-bottle:")  # the bundle's own answer, not the server's
    # A 502 or 504 is a gateway's: the bundle (or mitmproxy in it, without pipelock) could not get there.
    gateway = o.get("status") in (502, 504)
    return o.get("status") is not None and not ours and not gateway, _reply(o)


JUDGES = {"net": _attempt, "ipv6": _ipv6, "icmp": _icmp, "dns": _dns, "scan": _scan, "reach": _reach_judge,
          "blocked": _blocked_for(), "placeholder": _blocked_for("placeholder"), "dlp": _blocked_for(*DLP_WORDS)}


def judge(check: Check, observed: dict[str, Any] | None) -> Outcome:
    if check.na:
        return Outcome(check, NA, check.na)
    if not isinstance(observed, dict) or "probe_error" in (observed or {}):
        why = f"the probe failed: {observed['probe_error']}" if isinstance(observed, dict) else "no observation"
        return Outcome(check, UNREACHABLE if check.kind == "reach" else ERROR, why, json.dumps(observed))
    ok, detail = JUDGES[check.judge](observed)
    if check.kind == "reach":
        result = REACHED if ok else UNREACHABLE
    else:
        result = REFUSED if ok else OPEN
    return Outcome(check, result, detail, json.dumps(observed, sort_keys=True))


def judge_all(checks: tuple[Check, ...], observations: dict[str, Any]) -> tuple[Outcome, ...]:
    return tuple(judge(c, observations.get(c.id)) for c in checks)


def exit_status(outcomes: tuple[Outcome, ...]) -> int:
    """0 only when every escape was refused (or does not apply); reachability never fails the run."""
    return 1 if any(o.failed for o in outcomes) else 0


# ---------- output ----------


def summary(outcomes: tuple[Outcome, ...]) -> dict[str, Any]:
    def count(kind: str, result: str) -> int:
        return sum(1 for o in outcomes if o.check.kind == kind and o.result == result)

    return {"passed": exit_status(outcomes) == 0,
            "escapes": {"refused": count("escape", REFUSED), "not_refused": count("escape", OPEN),
                        "error": count("escape", ERROR), "n/a": count("escape", NA)},
            "allowed_rules": {"reached": count("reach", REACHED),
                              "unreachable": count("reach", UNREACHABLE)}}


def render_text(bottle: str, outcomes: tuple[Outcome, ...], width: int = 48) -> str:
    rows = [("RESULT", "CHECK", "TARGET", "DETAIL")]
    rows += [(o.result, o.check.name, _cut(o.check.target, width), _cut(o.detail, 4 * width)) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    s = summary(outcomes)
    esc, reach = s["escapes"], s["allowed_rules"]
    failed = [f"{o.check.name} {o.check.target}" for o in outcomes if o.failed]
    verdict = ("PASS: every escape was refused" if s["passed"] else
               f"FAIL: {len(failed)} not refused: " + "; ".join(failed))
    lines.append("")
    lines.append(f"{bottle}: {esc['refused']} escapes refused, {esc['not_refused']} not refused, {esc['error']} "
                 f"errors, {esc['n/a']} n/a; allowed rules: {reach['reached']} reached, "
                 f"{reach['unreachable']} unreachable (reported, never a failure)")
    lines.append(verdict)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_json(bottle: str, session: str, t: Targets, outcomes: tuple[Outcome, ...]) -> str:
    """Everything the table says and what the probe saw; never the generated key."""
    doc = {"bottle": bottle, "session": session, **summary(outcomes),
           "targets": {"outside": t.outside, "outside6": t.outside6, "outside_name": t.outside_name},
           "checks": [{"id": o.check.id, "kind": o.check.kind, "check": o.check.name, "target": o.check.target,
                       "result": o.result, "failed": o.failed, "detail": o.detail,
                       "observed": json.loads(o.observed) if o.observed else None} for o in outcomes]}
    return json.dumps(doc, indent=2) + "\n"
