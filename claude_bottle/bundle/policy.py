"""The bundle addon's egress policy: load it, decide on (host, port), vet connected peers, and say where a
secret's placeholder may go and which DLP mode a host gets.

Pure and stdlib-only so it is unit-tested without mitmproxy; addon.py is the thin mitmproxy glue.
The launcher writes the policy (version 1) to /etc/claude-bottle/policy.json.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import urllib.parse
import os
import sys
from dataclasses import dataclass
from typing import Any, Union

if __package__:  # the launcher's tests import this as claude_bottle.bundle.policy
    from claude_bottle.bundle import shared
else:  # in the bundle, a sibling module of addon.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import shared  # noqa: E402

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

VERSION = 1
# Optional keys; anything else is a launcher/addon version mismatch and must not be guessed at.
_TOP_KEYS = {"version", "rules", "ssrf_allow", "upstream", "upstream_trusted_ca", "secrets", "dlp"}
_RULE_KEYS = {"host", "wildcard", "ports"}
_RULE_OPTIONAL_KEYS = {"raw_ports"}
_SECRET_KEYS = {"name", "placeholder", "hosts", "header"}
_DLP_KEYS = {"default", "hosts"}
_DLP_HOST_KEYS = {"host", "wildcard", "mode"}
DLP_MODES = shared.DLP_MODES
# What the launcher's placeholders look like; the addon refuses anything else so a typo can't make a
# short or common string (that would match innocent text) into something it swaps or blocks.
_PLACEHOLDER = re.compile(shared.PLACEHOLDER_PATTERN)
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]{1,100}$")
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

EVENTS = frozenset(shared.LOG_EVENTS)
# Only these fields may reach a log line: never headers, bodies, paths or query strings (secrets live there).
# `secret` is a secret's NAME and `rules` are gitleaks rule ids: never a value, never a match.
_LOG_FIELDS = frozenset(shared.LOG_FIELDS)
_RULE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


@dataclass(frozen=True)
class Rule:
    host: str  # normalized: lower case, no trailing dot, IPs canonical
    wildcard: bool
    ports: frozenset[int]
    raw_ports: frozenset[int] = frozenset()  # ports where neither-TLS-nor-HTTP tunnels may pass

    def matches(self, host: str) -> bool:
        return host == self.host or (self.wildcard and host.endswith("." + self.host))


@dataclass(frozen=True)
class Secret:
    """A credential the agent holds only as `placeholder`; swapped for the value in `header` to `hosts`."""

    name: str
    placeholder: str
    hosts: frozenset[str]  # normalized, exact (no wildcards: a secret goes to hosts named one by one)
    header: str  # lower case


@dataclass(frozen=True)
class Dlp:
    default: str  # "scan", "warn" or "skip"
    hosts: tuple[tuple[str, bool, str], ...] = ()  # (host, wildcard, mode)

    def mode(self, host: str) -> str:
        """The mode for a host: an exact entry, else the longest matching wildcard, else the default."""
        norm = normalize_host(host)
        if norm is None:
            return self.default
        best, best_len = self.default, -1
        for h, wildcard, mode in self.hosts:
            if h == norm and not wildcard:
                return mode
            if wildcard and (norm == h or norm.endswith("." + h)) and len(h) > best_len:
                best, best_len = mode, len(h)
        return best


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    ssrf_allow: tuple[IPNetwork, ...]
    upstream: tuple[str, int] | None  # (host, port) of pipelock, or None when mitmdump connects directly
    secrets: tuple[Secret, ...] = ()
    # A policy without a "dlp" section scans everything: the launcher always writes one, and a
    # hand-written policy that forgot it must not silently stop scanning.
    dlp: Dlp = Dlp("scan")


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
    if not _RULE_KEYS <= set(raw) <= _RULE_KEYS | _RULE_OPTIONAL_KEYS:
        raise _fail(where, f"rule keys must be {sorted(_RULE_KEYS)} (+ raw_ports), got {sorted(raw)}")
    host, wildcard, ports = raw["host"], raw["wildcard"], raw["ports"]
    if not isinstance(host, str) or (norm := normalize_host(host)) is None:
        raise _fail(where, f"invalid host {host!r}")
    if not isinstance(wildcard, bool):
        raise _fail(where, "wildcard must be true or false")
    if wildcard and _ip_or_none(norm) is not None:
        raise _fail(where, f"wildcard cannot apply to an IP address ({host})")
    if not isinstance(ports, list) or not ports:
        raise _fail(where, "ports must be a non-empty list")
    raw_ports = raw.get("raw_ports", [])
    if not isinstance(raw_ports, list):
        raise _fail(where, "raw_ports must be a list")
    allowed = frozenset(_port(p, f"{where}.ports") for p in ports)
    raw_set = frozenset(_port(p, f"{where}.raw_ports") for p in raw_ports)
    if not raw_set <= allowed:
        raise _fail(where, "raw_ports must be a subset of ports")
    return Rule(norm, wildcard, allowed, raw_set)


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
        secrets=_load_secrets(data.get("secrets", [])),
        dlp=_load_dlp(data["dlp"]) if "dlp" in data else Dlp("scan"),
    )


def _load_secrets(raw: Any) -> tuple[Secret, ...]:
    if not isinstance(raw, list):
        raise _fail("secrets", "must be a list")
    out: list[Secret] = []
    for i, item in enumerate(raw):
        where = f"secrets[{i}]"
        if not isinstance(item, dict) or set(item) != _SECRET_KEYS:
            raise _fail(where, f"must be an object with exactly the keys {sorted(_SECRET_KEYS)}")
        name, placeholder, hosts, header = item["name"], item["placeholder"], item["hosts"], item["header"]
        if not isinstance(name, str) or not _SECRET_NAME.match(name):
            raise _fail(where, f"invalid name {name!r}")
        if not isinstance(placeholder, str) or not _PLACEHOLDER.match(placeholder):
            raise _fail(where, "placeholder does not look like one of claude-bottle's")
        if not isinstance(header, str) or not _HEADER_NAME.match(header):
            raise _fail(where, f"invalid header {header!r} (lower-case token expected)")
        if not isinstance(hosts, list) or not hosts:
            raise _fail(where, "hosts must be a non-empty list")
        norms = set()
        for host in hosts:
            if not isinstance(host, str) or (norm := normalize_host(host)) is None:
                raise _fail(where, f"invalid host {host!r}")
            norms.add(norm)
        out.append(Secret(name, placeholder, frozenset(norms), header))
    for what in ("name", "placeholder"):
        values = [getattr(s, what) for s in out]
        if len(set(values)) != len(values):
            raise _fail("secrets", f"duplicate {what}")
    return tuple(out)


def _load_dlp(raw: Any) -> Dlp:
    if not isinstance(raw, dict) or set(raw) - _DLP_KEYS or "default" not in raw:
        raise _fail("dlp", f"must be an object with 'default' and optional 'hosts', got {raw!r}"[:200])
    default = raw["default"]
    if default not in DLP_MODES:
        raise _fail("dlp.default", f"must be one of {', '.join(DLP_MODES)}")
    hosts = raw.get("hosts", [])
    if not isinstance(hosts, list):
        raise _fail("dlp.hosts", "must be a list")
    out = []
    for i, item in enumerate(hosts):
        where = f"dlp.hosts[{i}]"
        if not isinstance(item, dict) or set(item) != _DLP_HOST_KEYS:
            raise _fail(where, f"must be an object with exactly the keys {sorted(_DLP_HOST_KEYS)}")
        host, wildcard, mode = item["host"], item["wildcard"], item["mode"]
        if not isinstance(host, str) or (norm := normalize_host(host)) is None:
            raise _fail(where, f"invalid host {host!r}")
        if not isinstance(wildcard, bool):
            raise _fail(where, "wildcard must be true or false")
        if mode not in DLP_MODES:
            raise _fail(where, f"mode must be one of {', '.join(DLP_MODES)}")
        out.append((norm, wildcard, mode))
    return Dlp(default, tuple(out))


def load_secret_values(data: Any, policy: Policy) -> dict[str, str]:
    """{name: value} from the launcher's secrets file; every secret in the policy must have a usable value."""
    if not isinstance(data, dict) or set(data) != {"version", "values"} or data["version"] != VERSION:
        raise ValueError("secrets file: must be {\"version\": 1, \"values\": {...}}")
    values = data["values"]
    if not isinstance(values, dict):
        raise ValueError("secrets file: values must be an object")
    out: dict[str, str] = {}
    for secret in policy.secrets:
        value = values.get(secret.name)
        # A header value can't hold CR, LF or NUL; the launcher refuses those too (never echo the value).
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"secrets file: no usable value for {secret.name}")
        out[secret.name] = value
    return out


def misplaced_placeholder(
    policy: Policy, host: str, scheme: str, where: str, header: str | None = None
) -> Secret | None:
    """The first secret whose placeholder appears in `where` where it may not; None when all is well.

    A placeholder is allowed only in its own header, to one of its hosts, over HTTPS. `header` is the
    header `where` came from (lower case), or None for the URL or the body.
    """
    norm = normalize_host(host)
    for secret in policy.secrets:
        if secret.placeholder not in where:
            continue
        if header != secret.header or norm not in secret.hosts or scheme != "https":
            return secret
    return None


def placeholder_rule(secret: Secret, host: str, scheme: str) -> str:
    """Why a placeholder was refused, for the 403 body and the log (names only, never values)."""
    if scheme != "https" and normalize_host(host) in secret.hosts:
        return f"placeholder for secret {secret.name} sent over plain HTTP; it is only swapped in over HTTPS"
    hosts = ", ".join(sorted(secret.hosts))
    return f"placeholder for secret {secret.name} may only be sent in header {secret.header} to {hosts}"


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


def raw_allowed(policy: Policy, host: str, port: int) -> bool:
    """May a tunnel to host:port carry bytes that are neither TLS nor HTTP (SSH, a database)?"""
    norm = normalize_host(host)
    return norm is not None and any(r.matches(norm) and port in r.raw_ports for r in policy.rules)


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
    rules = fields.get("rules")
    if rules is not None and (not isinstance(rules, list) or not all(isinstance(r, str) and _RULE_ID.match(r)
                                                                      for r in rules)):
        raise ValueError("log field rules must be a list of rule ids")
    secret = fields.get("secret")
    if secret is not None and (not isinstance(secret, str) or not _SECRET_NAME.match(secret)):
        raise ValueError("log field secret must be a secret's name")
    ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    record: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "source": "addon", "event": event}
    record.update({"host": None, "port": None, "reason": "", **fields})
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
