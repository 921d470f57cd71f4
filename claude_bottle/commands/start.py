"""`claude-bottle start MANIFEST [-- CMD ...]`: plan a session, print it (--dry-run) or run it."""

from __future__ import annotations

import argparse
import json
import os

from claude_bottle import manifest as manifest_mod, plan as plan_mod


def state_dir() -> str:
    """Where per-session files live on the host (outside any bottle's reach)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "claude-bottle")


def _taken_subnets() -> tuple[str, ...]:
    """What `start` would avoid, read (never changed) from Docker and the routing table; none without them."""
    from claude_bottle import smolvm
    from claude_bottle.errors import BottleError
    from claude_bottle.runner import SubprocessRunner

    try:
        return smolvm.taken_subnets(SubprocessRunner())
    except BottleError:
        return ()


def run(args: argparse.Namespace) -> int:
    manifest = manifest_mod.load(args.manifest)
    command = tuple(args.agent_command)
    if args.dry_run:
        plan = plan_mod.build(
            manifest, os.urandom(4).hex(), command=command, uid=os.getuid(), gid=os.getgid(), state_dir=state_dir(),
            taken_subnets=_taken_subnets() if manifest.runtime == "smolmachines" else (), environ=os.environ,
            placeholder_seed=os.urandom(16).hex(),
        )
        from claude_bottle import secrets

        secrets.resolve(plan.secrets, plan.manifest_path)  # a real start would fail here; values are dropped
        if args.format == "json":
            print(json.dumps(plan.to_json(), indent=2))
        else:
            from claude_bottle import describe

            print(describe.plan_text(plan), end="")
        return 0
    from claude_bottle.runner import SubprocessRunner

    runner = SubprocessRunner()
    if manifest.runtime == "smolmachines":
        from claude_bottle import smolvm

        return smolvm.start(manifest, command, runner, state_dir(), args.unsafe_allow_smolvm_egress_defects)
    from claude_bottle import docker

    return docker.start(manifest, command, runner)
