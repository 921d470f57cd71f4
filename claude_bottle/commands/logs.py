"""`claude-bottle logs NAME [--session S] [--follow] [--json]`: what a bottle's bundle decided.

A running bottle is read live (`docker logs` of its bundle, the newest session unless --session picks
one); a bottle that is gone falls back to the session log saved when it ended.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from claude_bottle import audit, docker_argv, paths
from claude_bottle.errors import BottleError
from claude_bottle.plan import LABEL
from claude_bottle.runner import Runner, SubprocessRunner


def running_bundles(runner: Runner, name: str) -> list[tuple[str, str, str]]:
    """(created, session, container id) of every running bundle of the bottle, oldest first."""
    result = runner.run(docker_argv.running_bundles(LABEL, name), timeout=60)
    if result.returncode != 0:
        return []
    rows = [tuple(line.split("\t")) for line in result.stdout.splitlines() if line.count("\t") == 2]
    return sorted(rows)  # type: ignore[arg-type]


def saved_log(name: str, session: str | None) -> str | None:
    pattern = paths.session_log(paths.state_dir(), glob.escape(name), glob.escape(session) if session else "*")
    found = [p for p in glob.glob(pattern) if session or os.path.basename(p)[len(name) + 1 :].count("-") == 0]
    return max(found, key=os.path.getmtime) if found else None


def show(rec: dict[str, object], as_json: bool) -> None:
    print(json.dumps(rec, sort_keys=True, separators=(",", ":")) if as_json else audit.text_line(rec), flush=True)


def run(args: argparse.Namespace) -> int:
    runner = SubprocessRunner()
    bundles = [b for b in running_bundles(runner, args.name) if args.session in (None, b[1])]
    if not bundles:
        path = saved_log(args.name, args.session)
        which = f"{args.name}" + (f" session {args.session}" if args.session else "")
        if path is None:
            raise BottleError(f"no running bottle {which}, and no saved session log for it")
        print(f"claude-bottle: {which} is not running; showing the log saved in {path}", file=sys.stderr)
        for rec in audit.load(path):
            show(rec, args.json)
        return 0
    _created, session, container = bundles[-1]
    if len(bundles) > 1 and args.session is None:
        others = ", ".join(b[1] for b in bundles[:-1])
        print(f"claude-bottle: showing session {session}, the newest (also running: {others}; "
              "choose with --session)", file=sys.stderr)
    lines = runner.stream(docker_argv.logs(container, follow=args.follow))
    try:
        for line in lines:
            found = audit.record(line)
            if found is not None:
                show(found, args.json)
    except KeyboardInterrupt:
        pass
    finally:
        lines.close()  # type: ignore[attr-defined]  # a generator: stops docker logs
    return 0
