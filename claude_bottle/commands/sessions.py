"""`claude-bottle ps` and `claude-bottle cleanup`: find bottles by label, list them, remove orphans.

Only objects carrying the org.claude-bottle.session label are ever touched.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from claude_bottle import docker_argv, kubernetes_run, paths, session, sidecars, smolvm
from claude_bottle.errors import RuntimeFailure
from claude_bottle.plan import LABEL
from claude_bottle.runner import Runner, SubprocessRunner

_FIELDS = ("bottle", "session", "role", "launcher")


@dataclass
class Bottle:
    name: str
    session: str
    launcher: str
    containers: list[dict[str, str]] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    vms: list[dict[str, str]] = field(default_factory=list)
    cluster: list[kubernetes_run.ClusterSession] = field(default_factory=list)  # on kubectl's current context


def _columns(prefix: list[str]) -> list[str]:
    return prefix + docker_argv.label_columns(LABEL, _FIELDS)


def find(runner: Runner) -> dict[str, Bottle]:
    """Every session that has a container or network on this Docker host, keyed by session id."""
    bottles: dict[str, Bottle] = {}
    ps = runner.run(docker_argv.list_sessions("container", LABEL, _columns(["{{.Names}}", "{{.State}}", "{{.Status}}"])),
                    timeout=60)
    nets = runner.run(docker_argv.list_sessions("network", LABEL, _columns(["{{.Name}}"])), timeout=60)
    for result in (ps, nets):
        if result.returncode != 0:
            raise RuntimeFailure(f"listing bottles failed: {result.stderr.strip()}")
    for line in ps.stdout.splitlines():
        name, state, status, bottle, sid, role, launcher = (line.split("\t") + [""] * 7)[:7]
        entry = bottles.setdefault(sid, Bottle(bottle, sid, launcher))
        entry.containers.append({"name": name, "role": role, "state": state, "status": status})
    for line in nets.stdout.splitlines():
        name, bottle, sid, _role, launcher = (line.split("\t") + [""] * 5)[:5]
        bottles.setdefault(sid, Bottle(bottle, sid, launcher)).networks.append(name)
    # After containers and networks, so a live session keeps its bundle's launcher label.
    for vm in smolvm.list_vms(runner):  # none when smolvm is not installed
        bottles.setdefault(vm.session, Bottle(vm.bottle, vm.session, "")).vms.append({"name": vm.name, "state": vm.state})
    return bottles


def find_all(runner: Runner, docker: bool = True) -> dict[str, Bottle]:
    """This Docker host's bottles (when it has a Docker) and the current kubectl context's, by session."""
    bottles = find(runner) if docker else {}
    for found in kubernetes_run.list_sessions(runner):  # none when no cluster is configured
        entry = bottles.setdefault(found.session, Bottle(found.name, found.session, found.launcher))
        entry.launcher = entry.launcher or found.launcher
        entry.cluster.append(found)
    return bottles


def _cluster_json(b: Bottle) -> dict[str, object]:
    return {"cluster": [{"namespace": c.namespace, "objects": [{"kind": k, "name": n, "phase": ph}
                                                               for k, n, ph in c.objects]} for c in b.cluster]
            } if b.cluster else {}


def state_volumes(runner: Runner) -> dict[str, str]:
    """Kept agent homes: volume name -> its bottle. They outlive sessions on purpose (see plan.Volume)."""
    listed = runner.run(docker_argv.list_volumes(f"{LABEL}.role=state"), timeout=60)
    prefix, suffix = "claude-bottle-", "-state"
    return {v: v[len(prefix) : -len(suffix)] for v in listed.stdout.split()
            if listed.returncode == 0 and v.startswith(prefix) and v.endswith(suffix)}


def ps(runner: Runner, fmt: str, docker: bool = True) -> int:
    bottles = sorted(find_all(runner, docker).values(), key=lambda b: (b.name, b.session))
    volumes = state_volumes(runner) if docker else {}
    if fmt == "json":
        print(json.dumps({"sessions": [{"name": b.name, "session": b.session, "launcher": b.launcher,
                                        "alive": session.launcher_alive(b.launcher), "containers": b.containers,
                                        "networks": b.networks, "vms": b.vms, **_cluster_json(b)}
                                       for b in bottles],
                          "state_volumes": [{"name": v, "bottle": n} for v, n in sorted(volumes.items())]},
                         indent=2))
        return 0
    for volume, name in sorted(volumes.items()):
        print(f"state  {name}  {volume}  (kept across sessions; `cleanup {name} --state` removes it)")
    if not bottles:
        print("no bottles")
        return 0
    rows = [("NAME", "SESSION", "LAUNCHER", "CONTAINERS")]
    for b in bottles:
        state = "alive" if session.launcher_alive(b.launcher) else "gone (orphaned)"
        parts = [f"{c['role']}:{c['state']}" for c in b.containers] + [f"vm:{v['state']}" for v in b.vms]
        parts += [f"{kind.lower()}:{phase}" for c in b.cluster for kind, _, phase in c.objects if phase]
        rows.append((b.name, b.session, state, ", ".join(parts) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return 0


def cleanup(runner: Runner, name: str | None, force: bool, state: bool = False, docker: bool = True) -> int:
    removed = skipped = 0
    live = set()
    for b in find_all(runner, docker).values():
        if name is not None and b.name != name:
            continue
        if session.launcher_alive(b.launcher) and not force:
            print(f"skipping {b.name} {b.session}: its launcher ({b.launcher}) is still running (--force removes it)")
            skipped += 1
            live.add(b.name)
            continue
        vms = [v["name"] for v in b.vms]
        problems = session.teardown(runner, session.session_label(b.session),
                                    (lambda: [smolvm.remove_vm(runner, v) for v in vms]) if vms else None
                                    ) if docker else []
        problems += smolvm.forget_session(paths.state_dir(), b.name, b.session)
        for found in b.cluster:  # by the session's label, in the namespace it was found in
            problems += kubernetes_run.remove_session(runner, found)
        for problem in problems:
            session.warn(f"cleanup {b.session}: {problem}")
        print(f"removed {b.name} {b.session}: {len(b.containers)} container(s), {len(b.networks)} network(s), "
              f"{len(b.vms)} microVM(s)" + (f", {sum(len(c.objects) for c in b.cluster)} cluster object(s)"
                                            if b.cluster else ""))
        removed += 1
    for volume, owner in sorted(state_volumes(runner).items()) if state and docker else ():
        if (name is not None and owner != name) or owner in live:
            continue  # a running session of that bottle still uses it
        result = runner.run(docker_argv.volume_remove([volume]), timeout=120)
        if result.returncode != 0:
            session.warn(f"cleanup: removing {volume}: {(result.stderr or result.stdout).strip()}")
            continue
        print(f"removed {owner}'s state volume {volume}")
        removed += 1
    if not removed and not skipped:
        print("nothing to clean up")
    return 0


def run(args: argparse.Namespace) -> int:
    runner = SubprocessRunner()
    docker = True
    try:
        sidecars.preflight(runner)
    except RuntimeFailure:
        if not kubernetes_run.configured():
            raise
        docker = False  # a cluster-only host: its bottles are the cluster's
    if args.command == "ps":
        return ps(runner, args.format, docker)
    return cleanup(runner, None if args.all else args.name, args.force, args.state, docker)
