"""`claude-bottle verify MANIFEST`: start the bottle the manifest describes, run the built-in battery
inside it, remove everything as `start` does, and report.

The bottle is the one `start` would run (launch.prepare, the same executor), with three differences:
the agent's command is the probe (agent/verify_probe.py, run by the image's own python3), the probe
and its list of checks are copied in beside the CA, and the agent's home is a tmpfs even when the
manifest keeps one, so verifying a bottle never creates or touches its kept state. The agent runs
detached from the terminal and its output is captured. What to try, and what the results mean, is
claude_bottle/verify.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import re

from claude_bottle import launch, manifest as manifest_mod, session, verify
from claude_bottle.errors import BottleError, ManifestError, UsageError
from claude_bottle.plan import Plan
from claude_bottle.runner import Result, SubprocessRunner

PROBE_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "agent", "verify_probe.py")
PROBE_TIMEOUT = 600.0  # the probe's own limits add up to a few minutes at worst (the port scan's budget)
NO_PYTHON = re.compile(r"exec python3 failed: no such file"  # tini, the agent's PID 1 (--init)
                       r'|"python3": executable file not found|python3: (command )?not found|python3: no such file'
                       r"|cannot find module '[^'\n]*python3'")
_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def run(args: argparse.Namespace) -> int:
    manifest = manifest_mod.load(args.manifest)
    if manifest.runtime != "docker":
        # Exit 2, nothing created: the manifest asks for something verify cannot do (yet), wherever it runs.
        raise ManifestError(manifest.path, "runtime", f"verify supports the docker runtime only; "
                            f"{manifest.runtime} is not supported yet")
    found = targets(args.outside or verify.DEFAULT_OUTSIDE, args.outside6 or verify.DEFAULT_OUTSIDE6,
                    args.outside_name or verify.DEFAULT_OUTSIDE_NAME, os.urandom(16))
    manifest = dataclasses.replace(manifest, agent=dataclasses.replace(manifest.agent, state="ephemeral"))
    runner = SubprocessRunner()
    plan, values, facts = launch.prepare(manifest, verify.PROBE_COMMAND, runner, dry_run=False)
    checks = verify.battery(plan, found)
    files = {verify.PROBE_PATH.lstrip("/"): (probe_source(), 0o444),
             verify.SPEC_PATH.lstrip("/"): (spec_json(plan, checks).encode(), 0o444)}
    captured: list[Result] = []

    def run_probe(argv: list[str]) -> int:
        session.warn(f"verify: running {sum(1 for c in checks if not c.na)} checks inside bottle {plan.name} "
                     f"(session {plan.session})")
        result = runner.run(argv, timeout=PROBE_TIMEOUT)
        captured.append(result)
        return result.returncode

    from claude_bottle import docker, sidecars

    # A check, not the agent's run: a bundle without pipelock is still verified (start would refuse it);
    # sidecars.check_pipelock then says so loudly, by name, and how to provide it.
    os.environ.setdefault(sidecars.NO_PIPELOCK_ENV, "1")
    status = docker.start(plan, values, runner, facts.state_dir, extra_files=files, run=run_probe)
    if not captured:
        return status  # stopped by a signal before the probe ran; the bottle is gone
    observations = parse_output(captured[0].stdout)
    if observations is None:
        raise probe_failure(plan, captured[0])
    outcomes = verify.judge_all(checks, observations)
    if args.format == "json":
        text = verify.render_json(plan.name, plan.session, found, outcomes)
    else:
        text = verify.render_text(plan.name, outcomes)
    # Only a server that received the fake key could echo it back; keep key-shaped text out of logs anyway.
    print(text.replace(found.fake_key, "AKIA(the generated fake key)"), end="")
    return verify.exit_status(outcomes)


def targets(outside: str, outside6: str, outside_name: str, seed: bytes) -> verify.Targets:
    """The flags, checked: an IPv4 address, an IPv6 address and a DNS name (exit 2 otherwise)."""
    try:
        v4 = ipaddress.IPv4Address(outside)
    except ValueError:
        raise UsageError(f"--outside: {outside!r} is not an IPv4 address") from None
    try:
        v6 = ipaddress.IPv6Address(outside6.strip("[]"))
    except ValueError:
        raise UsageError(f"--outside6: {outside6!r} is not an IPv6 address") from None
    name = outside_name.lower().rstrip(".")
    if not _NAME.match(name):
        raise UsageError(f"--outside-name: {outside_name!r} is not a DNS name")
    return verify.Targets(str(v4), v6.compressed, name, verify.fake_aws_key(seed))


def probe_source() -> bytes:
    with open(PROBE_SOURCE, "rb") as handle:
        return handle.read()


def spec_json(plan: Plan, checks: tuple[verify.Check, ...]) -> str:
    """What the probe reads: the checks that apply, and the proxy and CA they share."""
    return json.dumps({"version": 1, "common": {"proxy": plan.proxy_url, "ca": verify.CA_PATH},
                       "checks": [c.spec() for c in checks if not c.na]}, indent=1)


def parse_output(stdout: str) -> dict[str, dict[str, object]] | None:
    """The probe's observations, from the one line it prints; None when it printed none."""
    for line in stdout.splitlines():
        if line.startswith(verify.MARKER):
            try:
                found = json.loads(line[len(verify.MARKER) :])["observations"]
            except (ValueError, KeyError, TypeError):
                return None
            return found if isinstance(found, dict) else None
    return None


def no_python(output: str) -> bool:
    """Whether the agent could not start for want of python3: tini's words, Docker's, a shell's or env's, or
    those of Node's docker-entrypoint.sh, which hands an unknown command to node as a script. (Not just
    "python3" and "not found": a traceback from the probe itself names /usr/lib/python3.x.)"""
    return NO_PYTHON.search(output.lower()) is not None


def probe_failure(plan: Plan, result: Result) -> BottleError:
    """Why there are no results: exit 2 for an image without python3 (the manifest's choice), else 1."""
    said = (result.stderr + "\n" + result.stdout).strip()
    if no_python(said):
        return UsageError(f"{plan.manifest_path}: agent.image: {plan.agent_image} has no python3 on its PATH; "
                          "verify runs its checks with the image's own python3 (3.7 or later), so use an image "
                          "that has one (the bottle was started and removed)")
    tail = " | ".join(said.splitlines()[-6:]) or "no output"
    return BottleError(f"the verify probe printed no results (exit {result.returncode}): {tail}")
