"""The Docker executor: carry out a plan, with the agent in a container, and remove everything on every
exit path. The bundle's side (engine, images, bundle) is sidecars.py, shared with smolmachines."""

from __future__ import annotations

import sys

from claude_bottle import audit, docker_argv, paths, plan as plan_mod, session, sidecars, ssh
from claude_bottle.errors import ManifestError
from claude_bottle.plan import Container, Plan
from claude_bottle.runner import Runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # Runs the agent from `docker start --attach` argv, instead of handing it our terminal, and returns
    # its exit status: how `verify` captures its probe's output. None (start): the terminal is the agent's.
    AgentRun = Callable[[list[str]], int]
    Files = dict[str, tuple[bytes, int]]


def start(plan: Plan, secret_values: dict[str, str], runner: Runner, state_dir: str | None = None, *,
          extra_files: Files | None = None, run: AgentRun | None = None) -> int:
    """Check what a run needs (nothing is created before all of it holds), then run the plan."""
    sidecars.preflight(runner)
    if plan.ssh is not None and plan.ssh.unknown:
        session.warn(f"no known_hosts entry for {', '.join(plan.ssh.unknown)}: ssh in the bottle will refuse "
                     "those hosts' keys; seed them with ssh.known_hosts (see the README)")
    check_external_networks(runner, plan)
    sidecars.ensure_images(runner, plan)
    return execute(plan, runner, secret_values, state_dir or paths.state_dir(), extra_files=extra_files, run=run)


def check_external_networks(runner: Runner, plan: Plan) -> None:
    """A network the manifest names (egress.network) must exist; we join it but never create it."""
    created = {n.name for n in plan.networks}
    for name in plan.container("bundle").networks:
        if name in created:
            continue
        if runner.run(docker_argv.network_inspect(name), timeout=60).returncode != 0:
            raise ManifestError(plan.manifest_path, "egress.network", f"Docker network {name!r} does not exist")


def execute(plan: Plan, runner: Runner, secret_values: dict[str, str], state_dir: str, *,
            extra_files: Files | None = None, run: AgentRun | None = None) -> int:
    """Run a plan to the end; whatever happens, save the bundle's decisions, then remove everything
    carrying the session's label. `extra_files` go into the agent with the CA, before it starts."""

    def body() -> int:
        sidecars.start_bundle(runner, plan, secret_values)
        ensure_state_volume(runner, plan)
        files = create_agent(runner, plan, interactive=run is None)  # overlaps the bundle's boot (about 1 s)
        files.update(extra_files or {})
        return run_agent(runner, plan, sidecars.wait_bundle(runner, plan.container("bundle")), files, run)

    def cleanup() -> list[str]:
        return session.save_then(lambda: audit.finish(runner, plan, secret_values, state_dir),
                                 lambda: session.teardown(runner, session.session_label(plan.session)))

    return session.guarded(body, cleanup)


def ensure_state_volume(runner: Runner, plan: Plan) -> None:
    """The bottle's kept home: made (and given to the agent's uid) by the first session only."""
    volume = plan.state_volume
    if volume is None or runner.run(docker_argv.volume_exists(volume.name), timeout=60).returncode == 0:
        return
    sidecars.must(runner, docker_argv.volume_create(volume), f"creating the state volume {volume.name}")
    sidecars.must(runner, docker_argv.volume_chown(volume, plan.agent_image, plan.agent_user, plan.labels),
                  "giving the state volume to the agent's user")


def create_agent(runner: Runner, plan: Plan, interactive: bool = True) -> dict[str, tuple[bytes, int]]:
    """Create (not start) the agent; returns the files it still needs. Runs while the bundle boots.
    Not interactive: no stdin and no tty, so its output can be captured as it was written."""
    agent = plan.container("agent")
    tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
    sidecars.must(runner, docker_argv.agent_create(plan, agent, interactive, tty), "creating the agent container")
    return ssh_files(runner, plan, agent) if plan.ssh is not None else {}


def run_agent(runner: Runner, plan: Plan, ca_pem: str, files: dict[str, tuple[bytes, int]],
              run: AgentRun | None = None) -> int:
    agent = plan.container("agent")
    files = {**files, plan_mod.CA_PATH.lstrip("/"): (ca_pem.encode(), 0o444)}
    sidecars.must(runner, docker_argv.copy_in(agent.name, "/"), "giving the agent the CA certificate",
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
