"""The bundle addon's egress policy: load it, decide on (host, port), vet connected peers.

Pure and stdlib-only so it is unit-tested without mitmproxy; addon.py is the thin mitmproxy glue.
The launcher writes the policy (version 1) to /etc/claude-bottle/policy.json.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

VERSION = 1
# Optional keys; anything else is a launcher/addon version mismatch and must not be guessed at.
_TOP_KEYS = {"version", "rules", "ssrf_allow", "upstream", "upstream_trusted_ca"}
_RULE_KEYS = {"host", "wildcard", "ports"}
# Labels may carry "_" (real hosts do, e.g. _dmarc-style service names); never empty, never > 63.
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

# Where an agent must never be connected to unless a rule named the address (ssrf_allow).
# Listed explicitly rather than via ipaddress.is_private, whose ranges changed between 3.11 patch releases.
_BLOCKED_NETS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        # "this network" (0.0.0.0 reaches the host itself on Linux), private, CGNAT (Tailscale and
        # carrier-internal hosts), loopback, link-local (cloud metadata), IETF/benchmark, multicast, reserved.
        *("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12"),
        *("192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"),
        # unspecified, loopback and the obsolete IPv4-compatible form; ULA; link-local; old site-local; multicast.
        *("::/96", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"),
    )
)
# IPv6 forms that carry an IPv4 address a dual-stack socket or a NAT64 gateway would really reach.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

EVENTS = frozenset({"allowed", "blocked", "tunnel_open", "ready", "fatal"})
# Only these fields may reach a log line: never headers, bodies, paths or query strings (secrets live there).
_LOG_FIELDS = frozenset({"host", "port", "reason", "method", "scheme", "peer", "kind"})


@dataclass(frozen=True)
class Rule:
    host: str  # normalized: lower case, no trailing dot, IPs canonical
    wildcard: bool
    ports: frozenset[int]

    def matches(self, host: str) -> bool:
        return host == self.host or (self.wildcard and host.endswith("." + self.host))


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    ssrf_allow: tuple[IPNetwork, ...]
    upstream: tuple[str, int] | None  # (host, port) of pipelock, or None when mitmdump connects directly


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def normalize_host(host: str) -> str | None:
    """Canonical form of a host as a client may spell it, or None when it is no valid host."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        ip = _ip_or_none(h[1:-1])
        return ip.compressed if isinstance(ip, ipaddress.IPv6Address) else None
    if h.endswith(".") and not h.endswith(".."):
        h = h[:-1]
    ip = _ip_or_none(h)
    if ip is not None:
        return ip.compressed
    labels = h.split(".")
    if not h or len(h) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    # "127.1", "2130706433" or "0x7f.1" are IPv4 to getaddrinfo: never let them pass as names.
    if _NUMERIC_LABEL.match(labels[-1]):
        return None
    return h


def _ip_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"policy: {where}: {what}")


def _port(value: Any, where: str) -> int:
    # bool is an int subclass; true/false in the JSON is a bug, not port 1/0.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(where, f"port must be an integer 1-65535, got {value!r}")
    return value


def _load_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "rule must be an object")
    if set(raw) != _RULE_KEYS:
        raise _fail(where, f"rule keys must be exactly {sorted(_RULE_KEYS)}, got {sorted(raw)}")
    host, wildcard, ports = raw["host"], raw["wildcard"], raw["ports"]
    if not isinstance(host, str) or (norm := normalize_host(host)) is None:
        raise _fail(where, f"invalid host {host!r}")
    if not isinstance(wildcard, bool):
        raise _fail(where, "wildcard must be true or false")
    if wildcard and _ip_or_none(norm) is not None:
        raise _fail(where, f"wildcard cannot apply to an IP address ({host})")
    if not isinstance(ports, list) or not ports:
        raise _fail(where, "ports must be a non-empty list")
    return Rule(norm, wildcard, frozenset(_port(p, f"{where}.ports") for p in ports))


def parse_upstream(url: str) -> tuple[str, int]:
    """(host, port) of an http:// upstream proxy URL such as http://127.0.0.1:8888."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = normalize_host(parts.hostname or "")
    extra = parts.username is not None or parts.query or parts.fragment or parts.path not in ("", "/")
    if parts.scheme != "http" or host is None or not port or extra:
        raise _fail("upstream", f"must look like http://HOST:PORT, got {url!r}")
    return host, port


def load_policy(data: Any) -> Policy:
    """Validate the policy dict strictly: a wrong shape must stop the addon, never loosen it."""
    if not isinstance(data, dict):
        raise _fail("top level", "must be an object")
    if unknown := set(data) - _TOP_KEYS:
        raise _fail("top level", f"unknown keys {sorted(unknown)}")
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise _fail("version", f"must be {VERSION}, got {version!r}")
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise _fail("rules", "must be a list")
    ssrf = data.get("ssrf_allow", [])
    if not isinstance(ssrf, list):
        raise _fail("ssrf_allow", "must be a list of CIDRs")
    nets = tuple(_cidr(c, f"ssrf_allow[{i}]") for i, c in enumerate(ssrf))
    upstream = data.get("upstream")
    if upstream is not None and not isinstance(upstream, str):
        raise _fail("upstream", "must be a string or null")
    ca = data.get("upstream_trusted_ca")
    if ca is not None and not isinstance(ca, str):
        raise _fail("upstream_trusted_ca", "must be a string")
    return Policy(
        rules=tuple(_load_rule(r, f"rules[{i}]") for i, r in enumerate(rules)),
        ssrf_allow=nets,
        upstream=parse_upstream(upstream) if upstream is not None else None,
    )


def _cidr(value: Any, where: str) -> IPNetwork:
    if isinstance(value, str):
        try:
            # strict: "10.0.0.1/8" is a typo for something, and guessing would open a whole /8.
            return ipaddress.ip_network(value, strict=True)
        except ValueError:
            pass
    raise _fail(where, f"invalid CIDR {value!r}")


def load_policy_file(path: str) -> Policy:
    with open(path, encoding="utf-8") as f:
        return load_policy(json.load(f))


def decide(policy: Policy, host: str, port: int) -> Decision:
    norm = normalize_host(host)
    if norm is None:
        return Decision(False, "invalid host")
    matching = [r for r in policy.rules if r.matches(norm)]
    if not matching:
        return Decision(False, "host not in allowlist")
    if any(port in r.ports for r in matching):
        return Decision(True, "allowed by rule")
    return Decision(False, f"port {port} not allowed for {norm}")


def authority_host(authority: str) -> str | None:
    """The host part of a Host header / :authority ("h", "h:1", "[v6]:1"), or None if malformed."""
    a = authority.strip()
    if a.startswith("["):
        host, sep, rest = a[1:].partition("]")
        if not sep or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        return normalize_host(f"[{host}]")  # brackets hold IPv6 only
    host, sep, port = a.partition(":")
    if sep and not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    return normalize_host(host)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def peer_allowed(policy: Policy, ip: str) -> bool:
    """SSRF check of the address mitmdump actually connected to (so DNS tricks can't dodge it)."""
    text = ip.strip().strip("[]").split("%", 1)[0]  # a scope id (fe80::1%eth0) doesn't change the range
    addr = _ip_or_none(text)
    if addr is None:
        return False
    candidates = [addr] + [v4 for v4 in (_embedded_v4(addr),) if v4 is not None]
    if any(c in net for c in candidates for net in policy.ssrf_allow if c.version == net.version):
        return True
    return not any(c in net for c in candidates for net in _BLOCKED_NETS if c.version == net.version)


def log_line(event: str, **fields: Any) -> str:
    """One JSON log line; refuses fields that could carry secrets rather than silently logging them."""
    if event not in EVENTS:
        raise ValueError(f"unknown log event {event!r}")
    if unknown := set(fields) - _LOG_FIELDS:
        raise ValueError(f"log fields not allowed: {sorted(unknown)}")
    ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    record: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "source": "addon", "event": event}
    record.update({"host": None, "port": None, "reason": "", **fields})
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
