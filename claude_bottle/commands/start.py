"""`claude-bottle start MANIFEST [-- CMD ...]`: plan a session, print it (--dry-run) or run it.

The plan is built once (launch.prepare); what a dry run prints is what a real run does.
"""

from __future__ import annotations

import argparse
import json

from claude_bottle import launch, manifest as manifest_mod
from claude_bottle.runner import SubprocessRunner


def run(args: argparse.Namespace) -> int:
    manifest = manifest_mod.load(args.manifest)
    command = tuple(args.agent_command)
    runner = SubprocessRunner()
    if not args.dry_run:
        return launch.run(manifest, command, runner, allow_unsafe=args.unsafe_allow_smolvm_egress_defects)
    plan, _values, _facts = launch.prepare(manifest, command, runner, dry_run=True)
    if args.format == "json":
        print(json.dumps(plan.to_json(), indent=2))
    else:
        from claude_bottle import describe

        print(describe.plan_text(plan), end="")
    return 0
