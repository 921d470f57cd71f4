"""Render the pipelock configuration for the pinned pipelock version.

pipelock parses its YAML strictly (unknown keys are errors), so every key here is one the pinned
version accepts; keep PIPELOCK_VERSION and the keys in step. The text is JSON, which is valid YAML 1.2:
that gives safe quoting of every host for free.
"""

from __future__ import annotations

import json
TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

from claude_bottle.egress import Egress

PIPELOCK_VERSION = "3.5.0"  # keep in step with PIPELOCK_IMAGE in bundle/Dockerfile.sidecars
PIPELOCK_PORT = 8888  # loopback inside the bundle only: the agent must not bypass mitmdump's port gates
PIPELOCK_LISTEN = f"127.0.0.1:{PIPELOCK_PORT}"
# pipelock's per-domain rate limit cannot be switched off (<= 0 becomes 60/min); an agent that
# installs packages easily makes hundreds of requests a minute to one registry.
RATE_LIMIT_PER_MINUTE = 100_000
# Tunnels carry long-lived streams (LLM replies, git over SSH); pipelock's default cuts them at 5 min.
MAX_TUNNEL_SECONDS = 8 * 3600
IDLE_TIMEOUT_SECONDS = 900


def config(egress: Egress) -> dict[str, Any]:
    """The pipelock config as a dict: strict allowlist, forward proxy on, JSON logs, no telemetry."""
    cfg: dict[str, Any] = {
        "version": 1,
        "mode": "strict",
        "api_allowlist": list(egress.allowlist),
        "fetch_proxy": {
            "listen": PIPELOCK_LISTEN,
            "monitoring": {"max_requests_per_minute": RATE_LIMIT_PER_MINUTE},
        },
        "forward_proxy": {
            "enabled": True,
            "max_tunnel_seconds": MAX_TUNNEL_SECONDS,
            "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
        },
        "logging": {"format": "json", "output": "stdout", "include_allowed": True, "include_blocked": True},
        "sentry": {"enabled": False},
    }
    if egress.ssrf_allow:
        # Exactly the private or CGNAT addresses that rules name (each a /32 or /128), nothing wider.
        cfg["ssrf"] = {"ip_allowlist": list(egress.ssrf_allow)}
    return cfg


def render(egress: Egress) -> str:
    return json.dumps(config(egress), indent=2) + "\n"
