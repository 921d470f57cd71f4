"""`claude-bottle build`: build the sidecars image (and the agent image) ahead of time.

CI and air-gapped hosts use --build-arg to substitute locally built base, gitleaks and pipelock images
for the pinned upstream ones; the tag is the same one `start` looks for.
"""

from __future__ import annotations

import argparse

from claude_bottle import agents, images, sidecars
from claude_bottle.errors import UsageError
from claude_bottle.runner import SubprocessRunner


def parse_build_args(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-arg {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    build_args = parse_build_args(args.build_arg)
    tag = images.sidecars_image()
    if args.print_tag:
        print(tag)
        return 0
    runner = SubprocessRunner()
    sidecars.preflight(runner)
    if args.offline:
        if build_args or args.agent:
            raise UsageError("--offline builds every image itself: no --build-arg or --agent with it")
        sidecars.build_offline(runner)
        print(tag)
        return 0
    sidecars.build(runner, images.sidecars_build(tag, build_args, sidecars.pipelock_state(runner, build_args)))
    if args.agent:
        kind = agents.KINDS[args.agent]
        sidecars.build(runner, images.agent_build(build_args, kind.image, kind.dockerfile))
    print(tag)
    return 0
