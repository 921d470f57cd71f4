"""The manifest's `egress.dlp`: how the bundle's gitleaks scan treats requests to each host.

  scan  (the default) a request whose URL, headers or body holds a secret is refused (403, rule id logged)
  warn  the request goes on at once; the scan runs beside it and logs what it finds
  skip  no scan

The hosts that carry the agent's conversation with its model (api.anthropic.com and claude.ai) default
to `warn` when the manifest's default is `scan`: the agent sends repository content there by design, and
one test-fixture key in a file it read would otherwise refuse every later request of the session.
Any entry of the manifest's own for such a host (exact or wildcard) overrides that.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

from claude_bottle import egress as egress_mod
from claude_bottle.bundle import shared

MODES = shared.DLP_MODES
DEFAULT_MODE = "scan"
# The model APIs: a false positive there would stop the agent mid-task, so they log instead of block.
WARN_BY_DEFAULT = ("api.anthropic.com", "claude.ai", "api.openai.com", "generativelanguage.googleapis.com")
KEYS = ("default", "hosts")


@dataclass(frozen=True)
class Dlp:
    """The manifest's egress.dlp: a default mode and the hosts that differ from it."""

    default: str
    hosts: tuple[tuple[str, bool, str], ...] = ()  # (host, wildcard, mode) as the manifest set them, sorted

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "hosts": {("*." if w else "") + h: m for h, w, m in self.hosts}}


def _covers(host: str, wildcard: bool, other: str) -> bool:
    return other == host or (wildcard and other.endswith("." + host))


def parse(r: Any, value: Any, egress: egress_mod.Egress) -> Dlp:
    """`egress.dlp`; `r` is the manifest's field-aware reader. Hosts must touch the allowlist (typos)."""
    section = r.obj(value, "egress.dlp", KEYS)
    default = r.string(section.get("default", DEFAULT_MODE), "egress.dlp.default")
    if default not in MODES:
        raise r.fail("egress.dlp.default", f"must be one of {', '.join(MODES)}, not {default!r}")
    raw = section.get("hosts", {})
    if not isinstance(raw, dict):
        raise r.fail("egress.dlp.hosts", "must be an object of HOST or *.DOMAIN: mode")
    hosts: dict[tuple[str, bool], str] = {}
    for key, mode in raw.items():
        field = f"egress.dlp.hosts.{key!r}" if "." in key or not key.isprintable() else f"egress.dlp.hosts.{key}"
        try:
            rule = egress_mod.parse_rule(key)
        except egress_mod.RuleError as exc:
            raise r.fail(field, str(exc)) from None
        if rule.kind not in ("web", "wildcard") or rule.ports != egress_mod.WEB_PORTS:
            raise r.fail(field, "name a host or *.DOMAIN, without a port or scheme")
        host, wildcard = rule.host.removeprefix("*."), rule.wildcard
        # It must cover an allowed host, or fall under an allowed wildcard.
        if not any(_covers(host, wildcard, g.host) or (g.wildcard and _covers(g.host, True, host))
                   for g in egress.port_gates):
            raise r.fail(field, "matches no host in egress.allow")
        if mode not in MODES:
            raise r.fail(field, f"must be one of {', '.join(MODES)}, not {mode!r}")
        hosts[(host, wildcard)] = mode
    return Dlp(default, tuple(sorted((h, w, m) for (h, w), m in hosts.items())))


def effective(dlp: Dlp | None, egress: egress_mod.Egress) -> dict[str, Any]:
    """The bundle policy's `dlp` section: the manifest's choices plus the model-API defaults."""
    chosen = dlp or Dlp(DEFAULT_MODE)
    entries = list(chosen.hosts)
    if chosen.default == "scan":
        for host in WARN_BY_DEFAULT:
            reachable = any(_covers(g.host, g.wildcard, host) for g in egress.port_gates)
            if reachable and not any(_covers(h, w, host) for h, w, _ in chosen.hosts):
                entries.append((host, False, "warn"))
    return {"default": chosen.default,
            "hosts": [{"host": h, "wildcard": w, "mode": m} for h, w, m in sorted(entries)]}
