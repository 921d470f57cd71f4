"""Locating the real tools that tests drive (never stand-ins)."""

from __future__ import annotations

import os
import shutil


def find_gitleaks() -> str | None:
    """gitleaks from $CLAUDE_BOTTLE_GITLEAKS, PATH, or the one .ci/build-images built and cached."""
    cache = os.environ.get("CLAUDE_BOTTLE_CACHE") or os.path.expanduser("~/.cache/claude-bottle")
    for candidate in (os.environ.get("CLAUDE_BOTTLE_GITLEAKS"), shutil.which("gitleaks"),
                      os.path.join(cache, "gitleaks-v8.30.1", "gitleaks")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None
