"""A session from a loaded manifest: host facts -> the plan (built once) -> secrets (read once) -> the
runtime's executor. `start` is this plus printing for --dry-run; tests drive it with a fake runner."""

from __future__ import annotations

from claude_bottle import host, secrets
from claude_bottle.manifest import Manifest
from claude_bottle.plan import Plan
from claude_bottle.runner import Runner


def prepare(manifest: Manifest, command: tuple[str, ...], runner: Runner, *, dry_run: bool
            ) -> tuple[Plan, dict[str, str], host.HostFacts]:
    facts = host.gather(manifest, runner, dry_run=dry_run)
    plan = host.plan(manifest, facts, command)
    if manifest.runtime == "kubernetes":
        from claude_bottle import kubernetes

        plan = kubernetes.adapt(plan, manifest)  # the same plan, named and addressed for a cluster
    values = secrets.resolve(plan.secrets, plan.manifest_path)  # exit 2 here: nothing created yet
    return plan, values, facts


def run(manifest: Manifest, command: tuple[str, ...], runner: Runner, *, allow_unsafe: bool = False) -> int:
    plan, values, facts = prepare(manifest, command, runner, dry_run=False)
    if manifest.runtime == "smolmachines":
        from claude_bottle import smolvm

        return smolvm.start(plan, values, runner, allow_unsafe, facts.state_dir)
    if manifest.runtime == "kubernetes":
        from claude_bottle import kubernetes_run

        return kubernetes_run.start(plan, values, runner, facts.state_dir)
    from claude_bottle import docker

    return docker.start(plan, values, runner, facts.state_dir)
