"""The Docker executor: carry out a plan, with the agent in a container, and remove everything on every
exit path. The bundle's side (engine, images, bundle) is sidecars.py, shared with smolmachines."""

from __future__ import annotations

import json
import sys

from claude_bottle import audit, docker_argv, paths, plan as plan_mod, session, sidecars, ssh
from claude_bottle.errors import BottleError, ManifestError, RuntimeFailure
from claude_bottle.plan import Container, Plan
from claude_bottle.runner import Result, Runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # Runs the agent from `docker start --attach` argv, instead of handing it our terminal, and returns
    # its exit status: how `verify` captures its probe's output. None (start): the terminal is the agent's.
    AgentRun = Callable[[list[str]], int]
    Files = dict[str, tuple[bytes, int]]
    Entry = tuple[list[str] | None, list[str] | None]  # an image's ENTRYPOINT and CMD


def start(plan: Plan, secret_values: dict[str, str], runner: Runner, state_dir: str | None = None, *,
          extra_files: Files | None = None, run: AgentRun | None = None) -> int:
    """Check what a run needs (nothing is created before all of it holds), then run the plan."""
    if plan.ssh is not None and plan.ssh.unknown:
        session.warn(f"no known_hosts entry for {', '.join(plan.ssh.unknown)}: ssh in the bottle will refuse "
                     "those hosts' keys; seed them with ssh.known_hosts (see the README)")
    joined = external_networks(plan)
    # One batch of read-only calls, side by side: the engine, the images, the agent image's entry, the
    # networks the bundle joins. The engine and the networks are judged first, then the images, all
    # before anything is built or created.
    found = sidecars.ensure_images(runner, plan, also=(docker_argv.server_version(),
                                                       docker_argv.image_entry(plan.agent_image),
                                                       *(docker_argv.network_inspect(n) for n in joined)),
                                   check=lambda results: check_engine_and_networks(plan, joined, results))
    entry = agent_entry(found[1], plan)
    return execute(plan, runner, secret_values, state_dir or paths.state_dir(), extra_files=extra_files, run=run,
                   entry=entry)


def agent_entry(found: Result, plan: Plan) -> Entry:
    """The agent image's ENTRYPOINT and CMD (docker_argv.image_entry's answer), which its gate passes on;
    an exit-125 error, before anything is created, when there is nothing to run."""
    entry = image_entry(found)
    if not docker_argv.gated_command(*entry, plan.agent_command):
        raise RuntimeFailure(f"the agent image {plan.agent_image} has no ENTRYPOINT or CMD, and no command "
                             "was given (agent.command, or `start MANIFEST -- COMMAND`)")
    return entry


def external_networks(plan: Plan) -> list[str]:
    """The networks the bundle joins but the session does not create: egress.network, or Docker's bridge."""
    created = {n.name for n in plan.networks}
    return [name for name in plan.container("bundle").networks if name not in created]


def check_engine_and_networks(plan: Plan, names: list[str], results: list[Result]) -> None:
    sidecars.server_version(results[0])
    check_external_networks(plan, names, results[2:])


def check_external_networks(plan: Plan, names: list[str], inspected: list[Result]) -> None:
    """Each network the bundle joins must exist (`docker network inspect`, one result per name): we join
    it but never create it. Checked before anything is built or created."""
    for name, result in zip(names, inspected):
        if result.returncode == 0:
            continue
        if name == plan_mod.DEFAULT_EGRESS_NETWORK:
            raise RuntimeFailure(f"Docker has no {name!r} network (is the daemon run with \"bridge\": \"none\"?): "
                                 "name the network the bundle should reach the internet by in egress.network")
        raise ManifestError(plan.manifest_path, "egress.network", f"Docker network {name!r} does not exist")


def execute(plan: Plan, runner: Runner, secret_values: dict[str, str], state_dir: str, *,
            extra_files: Files | None = None, run: AgentRun | None = None, entry: Entry = (None, None)) -> int:
    """Run a plan to the end; whatever happens, save the bundle's decisions, then remove everything
    carrying the session's label. `extra_files` go into the agent before it starts.

    The agent starts beside the bundle, not after it: its gate (gate/main.go) holds the agent's
    command until the bundle's port accepts and its CA is in the shared volume, and a bundle that
    fails stops the agent (sidecars.BundleStart)."""
    finished: list[bool] = []  # every create returned: teardown may go by name (session.teardown)

    def body() -> int:
        agent = plan.container("agent")
        entrypoint, cmd = entry
        sidecars.create_networks(runner, plan)
        sidecars.create_bundle(runner, plan)
        ensure_state_volume(runner, plan)
        tty = run is None and sys.stdin.isatty() and sys.stdout.isatty()
        configure, tar = sidecars.configure_argv(plan, secret_values)
        results = runner.run_all([(configure, tar),
                                  (docker_argv.agent_create(plan, agent, run is None, tty, entrypoint, cmd), None)],
                                 timeout=300)
        for what, result in zip(("configuring the bundle", "creating the agent container"), results):
            if result.returncode != 0:
                raise BottleError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
        files = ssh_files(runner, plan, agent) if plan.ssh is not None else {}
        files.update(extra_files or {})
        bundle = sidecars.BundleStart(runner, plan)
        bundle.begin()
        try:
            code = run_agent(runner, plan, files, run)
            finished.append(True)
        except BaseException:
            bundle.abandon()  # whatever it still waits for ends with the teardown: not a failure to report
            raise
        bundle.finish()
        return code

    def cleanup() -> list[str]:
        known = None
        if finished:
            known = ([c.name for c in plan.containers], [n.name for n in plan.networks])
        return session.save_then(lambda: audit.finish(runner, plan, secret_values, state_dir),
                                 lambda: session.teardown(runner, session.session_label(plan.session), known=known))

    return session.guarded(body, cleanup)


def image_entry(result: Result) -> Entry:
    """ENTRYPOINT and CMD from `docker image inspect` (docker_argv.image_entry); (None, None) if unread."""
    if result.returncode != 0:
        raise RuntimeFailure(f"agent image: {result.stderr.strip() or 'docker image inspect failed'}")
    parts = result.stdout.strip().split("\t")
    values: list[list[str] | None] = []
    for part in (parts + ["null", "null"])[:2]:
        try:
            value = json.loads(part)
        except ValueError:
            value = None
        values.append([str(v) for v in value] if isinstance(value, list) else None)
    return values[0], values[1]


def ensure_state_volume(runner: Runner, plan: Plan) -> None:
    """The bottle's kept home: made (and given to the agent's uid) by the first session only."""
    volume = plan.state_volume
    if volume is None or runner.run(docker_argv.volume_exists(volume.name), timeout=60).returncode == 0:
        return
    sidecars.must(runner, docker_argv.volume_create(volume), f"creating the state volume {volume.name}")
    sidecars.must(runner, docker_argv.volume_chown(volume, plan.agent_image, plan.agent_user, plan.labels),
                  "giving the state volume to the agent's user")


def run_agent(runner: Runner, plan: Plan, files: dict[str, tuple[bytes, int]], run: AgentRun | None = None) -> int:
    agent = plan.container("agent")
    if files:
        sidecars.must(runner, docker_argv.copy_in(agent.name, "/"), "giving the agent its files",
                      input=docker_argv.tar_of(files))
    if run is not None:
        return run(docker_argv.start_attached(agent.name, False))
    return runner.attach(docker_argv.start_attached(agent.name, True))


def ssh_files(runner: Runner, plan: Plan, agent: Container) -> dict[str, tuple[bytes, int]]:
    """The agent's SSH files; plus a passwd entry for its uid when the image has none (ssh needs one)."""
    assert plan.ssh is not None
    files = ssh.agent_files(plan.ssh, ssh.helper_source())
    uid, _, gid = plan.agent_user.partition(":")
    found = runner.run(docker_argv.copy_out(agent.name, "/etc/passwd"), timeout=60)
    passwd = read_tar_member(found.stdout_bytes) if found.returncode == 0 else None
    if passwd is None:
        session.warn("could not read the agent image's /etc/passwd; ssh may say \"No user exists for uid\"")
        return files
    import os
    import pwd

    try:
        name = pwd.getpwuid(os.getuid()).pw_name if os.getuid() != 0 else ""
    except KeyError:
        name = ""
    updated = ssh.passwd_with_user(passwd, int(uid), int(gid), name, plan_mod.AGENT_HOME)
    if updated is not None:
        files["etc/passwd"] = (updated.encode("utf-8"), 0o644)
    return files


def read_tar_member(stream: bytes) -> str | None:
    """The first file of a tar stream (what `docker cp CONTAINER:PATH -` prints) as UTF-8 text."""
    import io
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            return handle.read().decode("utf-8") if handle is not None else None
    except (tarfile.TarError, UnicodeError, OSError):
        return None
