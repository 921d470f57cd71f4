"""Egress rules: parse the manifest's `egress.allow` strings and classify them into what enforces each.

A rule is one of:
  HOST            HTTPS/HTTP to HOST (ports 443 and 80)
  *.DOMAIN        any subdomain of DOMAIN, and (as pipelock matches it) DOMAIN itself
  HOST:PORT       TCP through CONNECT to that one port
  ssh://HOST[:P]  SSH, port 22 unless P is given
  @PRESET         the hosts a known service needs (see PRESETS)

pipelock ignores ports, so every rule also becomes a port gate that the bundle's mitmdump addon
enforces; private and CGNAT addresses named by a rule become pipelock SSRF exceptions for exactly
that address, and nothing wider.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from collections.abc import Callable

WEB_PORTS: tuple[int, ...] = (80, 443)
SSH_PORT = 22

# What each preset expands to, and why. Documented in the README; keep the two in step.
PRESETS: dict[str, tuple[str, ...]] = {
    # Claude Code: the API (also for subscription tokens), claude.ai (login; WebFetch's safety check),
    # platform.claude.com and console.anthropic.com (OAuth token exchange and refresh), remote MCP
    # servers, and Anthropic's own feature flags. Not third-party telemetry (statsig.com, *.sentry.io):
    # shared services an agent could post anything to; Claude Code works without them.
    "@anthropic": ("api.anthropic.com", "claude.ai", "platform.claude.com", "console.anthropic.com",
                   "mcp-proxy.anthropic.com", "statsig.anthropic.com"),
    # OpenAI's Codex CLI with an API key. (A ChatGPT login also needs auth.openai.com and chatgpt.com.)
    "@openai": ("api.openai.com",),
    # Google's Gemini CLI with a Gemini API key.
    "@gemini": ("generativelanguage.googleapis.com",),
    # git over HTTPS, the REST API, archives, raw files and release downloads.
    "@github": (
        "github.com",
        "api.github.com",
        "codeload.github.com",
        "raw.githubusercontent.com",
        "objects.githubusercontent.com",
        "release-assets.githubusercontent.com",
    ),
    # The npm registry serves metadata and tarballs from one host.
    "@npm": ("registry.npmjs.org",),
    # The index and the package files.
    "@pypi": ("pypi.org", "files.pythonhosted.org"),
    # The Go module proxy and checksum database.
    "@go": ("proxy.golang.org", "sum.golang.org"),
}

# Names and networks a bottle must never reach, whatever the manifest says: the host itself,
# link-local neighbours and every cloud's instance-metadata service.
FORBIDDEN_NAMES: tuple[str, ...] = (
    "localhost",
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.com",
    "instance-data.ec2.internal",
)
FORBIDDEN_NETS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the host on Linux
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, AWS/GCP/Azure metadata at 169.254.169.254
        "168.63.129.16/32",  # Azure wire server
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "::/128",
        "::1/128",
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
    )
)
# Addresses pipelock's SSRF guard blocks unless a rule names them (then we open exactly that address).
SSRF_GUARDED_NETS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        *("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"),
        # IETF, benchmarking, reserved and old site-local: the bundle's guard blocks them too, so a
        # rule naming one must open it, or the rule could never work.
        *("192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4", "fec0::/10"),
    )
)

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")


class RuleError(ValueError):
    """One rule is invalid; the message says why (the caller adds file and field)."""


@dataclass(frozen=True)
class Rule:
    """One parsed rule. `text` is what the user wrote (or the preset member it came from)."""

    text: str
    kind: str  # "web", "wildcard", "tcp" or "ssh"
    host: str  # normalised: lower case, no trailing dot, IPv6 without brackets
    ports: tuple[int, ...]
    preset: str | None = None

    @property
    def wildcard(self) -> bool:
        return self.kind == "wildcard" or self.host.startswith("*.")

    @property
    def normalized(self) -> str:
        """The rule as it would be written canonically (what `validate` prints)."""
        if self.preset:
            return self.preset
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.kind == "ssh":
            return f"ssh://{host}" + ("" if self.ports == (SSH_PORT,) else f":{self.ports[0]}")
        if self.ports == WEB_PORTS:
            return host
        return f"{host}:{self.ports[0]}"


@dataclass(frozen=True)
class PortGate:
    """The ports one host (or wildcard domain) may be reached on; enforced by the bundle's addon."""

    host: str  # bare domain for wildcards (the `*.` is in `wildcard`)
    wildcard: bool
    ports: tuple[int, ...]
    # Ports whose tunnels may carry bytes that are neither TLS nor HTTP (HOST:PORT and ssh:// rules).
    # Elsewhere such bytes would pass uninspected, past the DLP scan, so the addon refuses them.
    raw_ports: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "wildcard": self.wildcard, "ports": list(self.ports),
                "raw_ports": list(self.raw_ports)}


@dataclass(frozen=True)
class Egress:
    """Every rule, classified into what enforces it."""

    rules: tuple[Rule, ...]
    allowlist: tuple[str, ...]  # pipelock api_allowlist, sorted
    ssrf_allow: tuple[str, ...]  # pipelock ssrf.ip_allowlist CIDRs, sorted
    port_gates: tuple[PortGate, ...]  # sorted by host

    def to_json(self) -> dict[str, object]:
        return {
            "allowlist": list(self.allowlist),
            "ssrf_allow": list(self.ssrf_allow),
            "port_gates": [g.to_json() for g in self.port_gates],
            "rules": [
                {"rule": r.text, "kind": r.kind, "host": r.host, "ports": list(r.ports), "preset": r.preset}
                for r in self.rules
            ],
        }


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    mapped = getattr(ip, "ipv4_mapped", None)
    for candidate in (ip, mapped):
        if candidate is None:
            continue
        for net in FORBIDDEN_NETS:
            if candidate.version == net.version and candidate in net:
                raise RuleError(f"{ip} is in {net}, which a bottle must never reach")
    if ip.is_multicast:
        raise RuleError(f"{ip} is a multicast address")


def _check_name(name: str) -> None:
    if len(name) > 253:
        raise RuleError("host name is longer than 253 characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise RuleError(f"host {name!r} has an empty label")
        if len(label) > 63:
            raise RuleError(f"label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise RuleError(f"label {label!r} must be letters, digits and inner hyphens")
    # A last label that starts with a digit is an address in disguise (2130706433, 0x7f.1, 1.2.3):
    # resolvers parse those as IPv4, so only a real dotted quad may end in digits.
    if labels[-1][0].isdigit():
        raise RuleError(f"{name!r} is neither a host name nor a dotted-quad IPv4 address")
    for bad in FORBIDDEN_NAMES:
        if name == bad or name.endswith("." + bad):
            raise RuleError(f"{name!r} is a name a bottle must never reach")


def parse_host(text: str) -> str:
    """Normalise and validate a host: DNS name, IPv4 literal or bracketed IPv6 literal."""
    if not text:
        raise RuleError("host is empty")
    if text.startswith("["):
        if not text.endswith("]"):
            raise RuleError(f"unterminated IPv6 literal {text!r}")
        ip = _ip_or_none(text[1:-1])
        if not isinstance(ip, ipaddress.IPv6Address) or "%" in text:
            raise RuleError(f"{text!r} is not an IPv6 address")
        _check_address(ip)
        return ip.compressed
    if not text.isascii():  # before lower(): U+212A KELVIN SIGN lower-cases to an ASCII "k"
        raise RuleError(f"{text!r} is not ASCII; write an internationalised name in its xn-- form")
    if ":" in text:
        raise RuleError(f"IPv6 literals must be bracketed, as in {'[' + text + ']'!r}")
    host = text.lower()
    if host.endswith("."):
        host = host[:-1]
    ip = _ip_or_none(host)
    if ip is not None:
        _check_address(ip)
        return ip.compressed
    _check_name(host)
    return host


def _split_port(text: str) -> tuple[str, int | None]:
    """Split `HOST:PORT` / `[V6]:PORT`; a bare IPv6 literal has no port."""
    if text.startswith("["):
        end = text.find("]")
        if end != -1 and end + 1 < len(text):
            if text[end + 1] != ":":
                raise RuleError(f"unexpected text after {text[: end + 1]!r}")
            return text[: end + 1], _parse_port(text[end + 2 :])
        return text, None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _parse_port(port)
    return text, None


def _parse_port(text: str) -> int:
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise RuleError(f"port {text!r} must be a number from 1 to 65535")
    return int(text)


def _parse_wildcard(domain_text: str) -> str:
    domain = parse_host(domain_text)
    if _ip_or_none(domain) is not None:
        raise RuleError("a wildcard cannot cover an IP address")
    if "." not in domain:
        raise RuleError(f"*.{domain} covers a whole top-level domain; name at least two labels")
    for bad in FORBIDDEN_NAMES:
        if bad == domain or bad.endswith("." + domain):
            raise RuleError(f"*.{domain} would cover {bad}, which a bottle must never reach")
    return domain


def parse_rule(text: object, preset: str | None = None) -> Rule:
    """Parse one rule string (not a preset) into a Rule, or raise RuleError."""
    if not isinstance(text, str):
        raise RuleError(f"must be a string, not {type(text).__name__}")
    raw = text.strip()
    if raw != text or not raw:
        raise RuleError("must be a non-empty string without surrounding spaces")
    kind = "web"
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        if scheme.lower() != "ssh":
            hint = " (write just the host)" if scheme.lower() in ("http", "https") else ""
            raise RuleError(f"scheme {scheme + '://'!r} is not supported; only ssh:// is{hint}")
        kind = "ssh"
    for ch, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("@", "user info")):
        if ch in raw:
            raise RuleError(f"{text!r} has {what}; a rule names a host, not a URL")
    hostpart, port = _split_port(raw)
    if "*" in hostpart:
        if kind == "ssh":
            raise RuleError("ssh:// rules name one host, not a wildcard")
        if hostpart == "*":
            raise RuleError("'*' would allow every host; name the hosts instead")
        if not hostpart.startswith("*.") or "*" in hostpart[2:]:
            raise RuleError("a wildcard must be the whole first label, as in *.example.com")
        host = "*." + _parse_wildcard(hostpart[2:])
        return Rule(text, "wildcard", host, (port,) if port else WEB_PORTS, preset)
    host = parse_host(hostpart)
    if kind == "ssh":
        return Rule(text, "ssh", host, (port or SSH_PORT,), preset)
    if port is not None:
        return Rule(text, "tcp", host, (port,), preset)
    return Rule(text, "web", host, WEB_PORTS, preset)


def expand(entries: list[object], on_error: Callable[[int, str], Exception]) -> tuple[Rule, ...]:
    """Parse every entry, expanding presets; `on_error(index, message)` builds the exception to raise."""
    rules: list[Rule] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str) and entry.startswith("@"):
            members = PRESETS.get(entry)
            if members is None:
                import difflib  # only on this error path: it is slow to import

                close = difflib.get_close_matches(entry, PRESETS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(sorted(PRESETS))}"
                raise on_error(index, f"unknown preset {entry!r}{hint}")
            rules.extend(parse_rule(member, preset=entry) for member in members)
            continue
        try:
            rules.append(parse_rule(entry))
        except RuleError as exc:
            raise on_error(index, str(exc)) from None
    return tuple(rules)


def classify(rules: tuple[Rule, ...]) -> Egress:
    """Turn rules into the pipelock allowlist, SSRF exceptions and per-host port gates."""
    ports: dict[str, set[int]] = {}
    raw: dict[str, set[int]] = {}
    unique: dict[tuple[str, str, tuple[int, ...]], Rule] = {}
    for rule in rules:
        unique.setdefault((rule.kind, rule.host, rule.ports), rule)
        ports.setdefault(rule.host, set()).update(rule.ports)
        if rule.kind in ("tcp", "ssh") or (rule.kind == "wildcard" and rule.ports != WEB_PORTS):
            raw.setdefault(rule.host, set()).update(rule.ports)
    ssrf: set[str] = set()
    for host in ports:
        ip = _ip_or_none(host)
        if ip is not None and any(ip.version == n.version and ip in n for n in SSRF_GUARDED_NETS):
            ssrf.add(f"{ip.compressed}/{ip.max_prefixlen}")
    gates = tuple(
        PortGate(host.removeprefix("*."), host.startswith("*."), tuple(sorted(p)), tuple(sorted(raw.get(host, ()))))
        for host, p in sorted(ports.items())
    )
    return Egress(
        rules=tuple(unique.values()),
        allowlist=tuple(sorted(ports)),
        ssrf_allow=tuple(sorted(ssrf)),
        port_gates=gates,
    )
