"""The facts about this host that a plan needs, gathered once per `start` (dry run or real).

Everything the plan reads from the world outside the manifest comes through here, so a dry run's plan
is the real run's, down to the launcher label and the SSH agent socket; only the random session id
and placeholder seed differ between two runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from claude_bottle import paths, plan as plan_mod, session
from claude_bottle.errors import BottleError, ManifestError
from claude_bottle.manifest import Manifest
from claude_bottle.runner import Runner


@dataclass(frozen=True)
class HostFacts:
    """What a plan needs from the host it starts on, read once, so the plan itself stays pure."""

    session: str
    uid: int
    gid: int
    launcher: str  # who started the session: `ps`/`cleanup` tell live sessions from orphans by it
    ssh_auth_sock: str | None  # the host's SSH agent socket, checked, when the manifest forwards it
    environ: Mapping[str, str]  # read only for implicit secrets such as ANTHROPIC_API_KEY
    placeholder_seed: str
    taken_subnets: tuple[str, ...]  # smolmachines: CIDRs the bundle's pinned /24 must avoid
    state_dir: str


def gather(manifest: Manifest, runner: Runner, *, dry_run: bool) -> HostFacts:
    """Read-only: nothing is created. A dry run without Docker still plans (with no taken subnets)."""
    subnets: tuple[str, ...] = ()
    if manifest.runtime == "smolmachines":
        from claude_bottle import smolvm

        try:
            subnets = smolvm.taken_subnets(runner)
        except BottleError:
            if not dry_run:
                raise
    return HostFacts(
        session=session.new_id(), uid=os.getuid(), gid=os.getgid(), launcher=session.launcher_id(),
        ssh_auth_sock=forwarded_agent_socket(manifest), environ=dict(os.environ),
        placeholder_seed=session.placeholder_seed(), taken_subnets=subnets, state_dir=paths.state_dir(),
    )


def forwarded_agent_socket(manifest: Manifest) -> str | None:
    """The host's $SSH_AUTH_SOCK when the manifest forwards it, checked for the uid the agent will run as."""
    if manifest.ssh is None or manifest.ssh.agent != "forward":
        return None
    from claude_bottle import ssh

    agent_uid = int(plan_mod.agent_user(os.getuid(), os.getgid()).partition(":")[0])
    try:
        return ssh.check_agent_socket(os.environ.get("SSH_AUTH_SOCK"), agent_uid)
    except ValueError as exc:
        raise ManifestError(manifest.path, "ssh.agent", str(exc)) from None


def plan(manifest: Manifest, facts: HostFacts, command: tuple[str, ...]) -> plan_mod.Plan:
    """The one place a session's plan is built."""
    return plan_mod.build(
        manifest, facts.session, command=command, uid=facts.uid, gid=facts.gid, taken_subnets=facts.taken_subnets,
        state_dir=facts.state_dir, launcher=facts.launcher, ssh_auth_sock=facts.ssh_auth_sock,
        environ=facts.environ, placeholder_seed=facts.placeholder_seed,
    )
