"""The coding agents claude-bottle knows: image, unattended command, hosts, credentials, state.

One table, read by the manifest (defaults), the plan (environment, state volume) and the secrets
(which host variables become placeholders without the user writing a `secrets` entry).
"""

from __future__ import annotations

from dataclasses import dataclass

from claude_bottle import __version__
from claude_bottle.bundle import shared


@dataclass(frozen=True)
class Credential:
    """A host variable the agent's CLI reads, sent as `header` to `host`: the agent gets a placeholder."""

    env: str
    host: str
    header: str


@dataclass(frozen=True)
class Kind:
    """One agent claude-bottle knows: what to run, unattended, and what it needs from the bottle."""

    name: str
    image: str  # built from claude_bottle/agent/<dockerfile> by `claude-bottle build --agent`
    dockerfile: str
    # Unattended: the bottle is the boundary, so the agent's own permission prompts only stall it.
    command: tuple[str, ...]
    preset: str  # the egress preset with its hosts
    credentials: tuple[Credential, ...]
    state_dir: str  # under the agent's home: what the state volume is for (login, settings, history)
    env: tuple[tuple[str, str], ...] = ()  # defaults; the manifest's agent.env wins


KINDS: dict[str, Kind] = {
    "claude": Kind(
        "claude", f"claude-bottle/agent:{__version__}", "Dockerfile.agent",
        ("claude", "--dangerously-skip-permissions"), "@anthropic",
        (Credential("ANTHROPIC_API_KEY", "api.anthropic.com", "x-api-key"),
         # `claude setup-token`'s long-lived subscription token, sent as `Authorization: Bearer`.
         Credential("CLAUDE_CODE_OAUTH_TOKEN", "api.anthropic.com", "authorization")),
        ".claude",
        # Telemetry and update checks would only be refused by the bottle; ask Claude Code not to try.
        (("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), ("DISABLE_AUTOUPDATER", "1")),
    ),
    "codex": Kind(
        "codex", f"claude-bottle/agent-codex:{__version__}", "Dockerfile.codex",
        # Codex's own sandbox (Landlock, seccomp) does not work inside a container without privileges.
        ("codex", "--dangerously-bypass-approvals-and-sandbox"), "@openai",
        (Credential("OPENAI_API_KEY", "api.openai.com", "authorization"),), ".codex",
        (("CODEX_CA_CERTIFICATE", shared.SHARED_CA),),  # Codex reads it before SSL_CERT_FILE
    ),
    "gemini": Kind(
        "gemini", f"claude-bottle/agent-gemini:{__version__}", "Dockerfile.gemini",
        ("gemini", "--yolo"), "@gemini",
        (Credential("GEMINI_API_KEY", "generativelanguage.googleapis.com", "x-goog-api-key"),), ".gemini",
    ),
}
DEFAULT = "claude"
