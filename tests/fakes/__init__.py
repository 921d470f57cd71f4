"""Fakes of external tools for tests, and the helpers that put them on PATH.

`smolvm` here is an executable fake of the smolvm CLI (see its docstring for what it keeps from the
real tool and what it does instead). One known divergence is opt-in: in every smolvm source read so
far, `machine create --from ARTIFACT` conflicts (clap `conflicts_with_all`) with `--smolfile`, and a
machine created from an artifact gets no allow_cidrs. claude-bottle's design starts the VM from the
artifact with the Smolfile; the fake accepts that by default and rejects it, as those sources do,
with FAKE_SMOLVM_FROM_CONFLICTS=1, so the launcher's fail-closed path can be tested.
"""

from __future__ import annotations

import json
import os
from typing import Any

FAKES_DIR = os.path.dirname(os.path.abspath(__file__))
FAKE_SMOLVM = os.path.join(FAKES_DIR, "smolvm")


def smolvm_env(state: str, version: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which `smolvm` is the fake, keeping its state (and call log) in `state`."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = FAKES_DIR + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["FAKE_SMOLVM_STATE"] = state
    if version is not None:
        env["FAKE_SMOLVM_VERSION"] = version
    return env


def smolvm_calls(state: str) -> list[list[str]]:
    """The argv (without `smolvm`) of every call the fake received, in order."""
    path = os.path.join(state, "calls.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["argv"] for line in handle if line.strip()]


def smolvm_machines(state: str) -> list[dict[str, Any]]:
    folder = os.path.join(state, "machines")
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                out.append(json.load(handle))
    return out
