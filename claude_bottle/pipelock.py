"""Render the pipelock configuration for the pinned pipelock version.

pipelock parses its YAML strictly (unknown keys are errors), so every key here is one the pinned
version accepts; keep PIPELOCK_VERSION and the keys in step. The text is JSON, which is valid YAML 1.2:
that gives safe quoting of every host for free.

What each layer is for: mitmdump's addon owns request DLP (headers and bodies, with gitleaks) and
the port gates; pipelock is the egress firewall behind it (strict allowlist, blocklist, SSRF guard,
and DLP and entropy checks on hostnames and URLs). Responses must reach the agent as the server sent
them, so everything in pipelock that buffers, blocks or rewrites a response or a request body is
turned off below, or held to warn-only where pipelock cannot turn it off.

pipelock loads its YAML onto an empty config, so a feature whose switch is a plain bool is off unless
named; only booleans pipelock defaults to true on load (and a few old switches, to pin intent) are
named here. Off on load and left unnamed, so that no key newer than it must be: browser_shield,
airlock, taint, cross_request_detection, the mcp_* and a2a sections, kill_switch, flight_recorder,
mediation_envelope, scan_api and reverse_proxy (airlock, taint and adaptive enforcement act only
through session profiling, which is off).
"""

from __future__ import annotations

import json
TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

from claude_bottle.bundle import shared
from claude_bottle.egress import Egress

PIPELOCK_VERSION = "3.5.0"  # keep in step with PIPELOCK_IMAGE in bundle/Dockerfile.sidecars
PIPELOCK_PORT = shared.PIPELOCK_PORT  # loopback inside the bundle only: the agent must not bypass the addon
PIPELOCK_LISTEN = shared.PIPELOCK_LISTEN
# pipelock's per-domain rate limit cannot be switched off (<= 0 becomes 60/min); an agent that
# installs packages easily makes hundreds of requests a minute to one registry.
RATE_LIMIT_PER_MINUTE = 100_000
# Tunnels carry long-lived streams (LLM replies, git over SSH); pipelock's default cuts them at 5 min.
MAX_TUNNEL_SECONDS = 8 * 3600
IDLE_TIMEOUT_SECONDS = 900
# Strict mode refuses to start with an empty api_allowlist ("requires at least one domain"). A bottle
# that allows nothing gets this one name instead: `.invalid` is reserved by RFC 6761 and never
# resolves, and pipelock's SSRF check refuses a name that does not resolve, so pipelock starts and
# still lets nothing out (mitmdump, whose allowlist is empty, refuses everything first anyway).
NOTHING_ALLOWED = "nothing-allowed.invalid"
# Plain http:// goes through pipelock's own HTTP client, which cuts a response at max_response_mb
# (silently: the body just ends) and the whole exchange at timeout_seconds (default 10 MB and 30 s).
# A download over http:// (apt, a mirror) must pass whole: 1 TiB is no cap at all in practice, and
# the exchange may last as long as a tunnel may.
MAX_RESPONSE_MB = 1024 * 1024
HTTP_TIMEOUT_SECONDS = MAX_TUNNEL_SECONDS


def config(egress: Egress) -> dict[str, Any]:
    """The pipelock config as a dict: strict allowlist, forward proxy on, JSON logs, no telemetry."""
    cfg: dict[str, Any] = {
        "version": 1,
        "mode": "strict",
        "api_allowlist": list(egress.allowlist) or [NOTHING_ALLOWED],
        "fetch_proxy": {
            "listen": PIPELOCK_LISTEN,
            "timeout_seconds": HTTP_TIMEOUT_SECONDS,
            "max_response_mb": MAX_RESPONSE_MB,
            "monitoring": {"max_requests_per_minute": RATE_LIMIT_PER_MINUTE},
        },
        "forward_proxy": {
            "enabled": True,
            "max_tunnel_seconds": MAX_TUNNEL_SECONDS,
            "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
            # The SNI check answers 200 to the CONNECT, then waits (5 s) for the client's TLS
            # ClientHello before it relays a byte, so a server-speaks-first protocol (SMTP, MySQL)
            # on a HOST:PORT rule never gets its greeting through. It is redundant here: mitmdump
            # terminates TLS itself and pins the upstream SNI to the host it vetted. Off, pipelock
            # dials the target before it answers 200 and relays both ways at once.
            "sni_verification": False,
        },
        # Response injection scanning. `enabled: false` does not turn it off: a built-in core pattern
        # set still scans every http:// response and then blocks (403) on a match, e.g. any page that
        # says "send ... your token", and holds an event stream whole. Enabled with action warn, a
        # match is only logged and the response passes unchanged; include_defaults off leaves only
        # the core patterns, which cuts the scan's cost about fourfold (it is ~2 s per MB even so).
        # sse_streaming off passes text/event-stream through unscanned, flushed as it comes (on, it
        # cut a stream at an injection-like phrase). pipelock still buffers a whole http:// response
        # and refuses a compressed one (403): no key turns that off. HTTPS reaches pipelock only as
        # CONNECT, which none of this touches.
        "response_scanning": {
            "enabled": True,
            "action": "warn",
            "include_defaults": False,
            "sse_streaming": {"enabled": False},
        },
        # On by default: rejects audio and video, caps images at 5 MB and rewrites images to strip
        # their metadata, and on its own makes pipelock buffer every http:// response.
        "media_policy": {"enabled": False},
        # On by default: buffers http:// request bodies up to 5 MB and refuses larger or compressed
        # ones. The addon owns request DLP (bodies and headers, with gitleaks) and has passed the
        # request by the time pipelock sees it. Also turns off header DLP on the CONNECT line.
        "request_body_scanning": {"enabled": False},
        # Off by default; named so that no later default turns them on. TLS interception would
        # decrypt mitmdump's upstream TLS; the /ws proxy is not used (WebSockets go through CONNECT);
        # session profiling and adaptive enforcement would score a session's refusals and, past a
        # threshold, refuse everything else it sends (block_all).
        "tls_interception": {"enabled": False},
        "websocket_proxy": {"enabled": False},
        "session_profiling": {"enabled": False},
        "adaptive_enforcement": {"enabled": False},
        # JSON lines on stdout, allowed as well as blocked: the audit trail (claude_bottle.audit)
        # reads pipelock's verdicts from them.
        "logging": {"format": "json", "output": "stdout", "include_allowed": True, "include_blocked": True},
        "sentry": {"enabled": False},
    }
    if egress.ssrf_allow:
        # Exactly the private or CGNAT addresses that rules name (each a /32 or /128), nothing wider.
        cfg["ssrf"] = {"ip_allowlist": list(egress.ssrf_allow)}
    return cfg


def render(egress: Egress) -> str:
    return json.dumps(config(egress), indent=2) + "\n"
