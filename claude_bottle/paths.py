"""Every place claude-bottle keeps files on the host, in one module (as pipx's paths.py).

All of it lives under the state directory, outside any bottle's reach.
"""

from __future__ import annotations

import os

SESSIONS_DIR = "sessions"  # saved audit logs, one per session
SMOLVM_CACHE_DIR = "smolmachines"  # packed .smolmachine files, one per agent image id


def state_dir() -> str:
    """$XDG_STATE_HOME/claude-bottle, or ~/.local/state/claude-bottle."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "claude-bottle")


def session_log(state: str, name: str, session: str) -> str:
    return os.path.join(state, SESSIONS_DIR, f"{name}-{session}.jsonl")


def smolvm_session_files(state: str, name: str, session: str) -> tuple[str, str]:
    """(Smolfile, directory holding the CA for the guest) of one smolmachines session."""
    base = os.path.join(state, f"claude-bottle-{name}-{session}")
    return base + ".smolfile", base + "-ca"


def smolvm_cache(state: str) -> str:
    return os.path.join(state, SMOLVM_CACHE_DIR)
