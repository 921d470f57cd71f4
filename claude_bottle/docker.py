"""The Docker executor: carry out a plan, attach to the agent, and remove everything on every exit path."""

from __future__ import annotations

import os
import sys
import time

from claude_bottle import docker_argv, images, plan as plan_mod, session
from claude_bottle.errors import BottleError, ManifestError, RuntimeFailure
from claude_bottle.manifest import Manifest
from claude_bottle.plan import Container, Plan
from claude_bottle.runner import Runner

HEALTH_TIMEOUT = 60.0
HEALTH_INTERVAL = 0.25
NO_PIPELOCK_ENV = "CLAUDE_BOTTLE_ALLOW_NO_PIPELOCK"


def preflight(runner: Runner) -> str:
    """The Docker server version, or a RuntimeFailure (exit 125) that says what to fix."""
    result = runner.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    if result.returncode == 127:
        raise RuntimeFailure("docker: command not found; install Docker and make sure `docker` is on PATH")
    if result.returncode != 0 or not result.stdout.strip():
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
        raise RuntimeFailure(f"the Docker daemon is not reachable ({detail}); is it running?")
    return result.stdout.strip()


def image_exists(runner: Runner, image: str) -> bool:
    return runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout=60).returncode == 0


def ensure_images(runner: Runner, plan: Plan) -> None:
    """Build what is missing (with docker's own progress output); a missing custom agent image is an error."""
    if not image_exists(runner, plan.sidecars_image):
        if os.environ.get(images.IMAGE_ENV):
            raise RuntimeFailure(f"{images.IMAGE_ENV}={plan.sidecars_image} does not exist locally")
        build(runner, images.sidecars_build(plan.sidecars_image, {}))
    if not image_exists(runner, plan.agent_image):
        if plan.agent_image != images.AGENT_IMAGE:
            raise RuntimeFailure(f"agent image {plan.agent_image} is not present; build or pull it first")
        build(runner, images.agent_build({}))


def build(runner: Runner, argv: list[str]) -> None:
    print(f"claude-bottle: building {argv[argv.index('-t') + 1]} (first run only)...", file=sys.stderr)
    if runner.attach(argv) != 0:
        raise BottleError(f"image build failed: {' '.join(argv)}")


def _must(runner: Runner, argv: list[str], what: str, input: bytes | None = None) -> str:
    result = runner.run(argv, input=input, timeout=300)
    if result.returncode != 0:
        raise BottleError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def start_bundle(runner: Runner, plan: Plan) -> str:
    """Create networks and the bundle, wait for health; returns the CA certificate (public part)."""
    for net in plan.networks:
        _must(runner, docker_argv.network_create(net), f"creating network {net.name}")
    bundle = plan.container("bundle")
    _must(runner, docker_argv.bundle_create(plan, bundle), "creating the bundle")
    for extra in bundle.networks[1:]:
        _must(runner, docker_argv.network_connect(extra, bundle.name), "connecting the bundle")
    _must(runner, docker_argv.copy_in(bundle.name, docker_argv.BUNDLE_CONFIG_DIR), "configuring the bundle",
          input=docker_argv.bundle_files(plan))  # fmt: skip
    _must(runner, ["docker", "start", bundle.name], "starting the bundle")
    wait_healthy(runner, bundle)
    check_pipelock(runner, bundle)
    ca = _must(runner, docker_argv.fetch_ca(bundle.name), "reading the bundle's CA certificate")
    if "BEGIN CERTIFICATE" not in ca or "PRIVATE" in ca:
        raise BottleError("the bundle returned something other than a public CA certificate")
    return ca


def wait_healthy(runner: Runner, bundle: Container) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        result = runner.run(docker_argv.health_check(bundle.name), timeout=30)
        if result.returncode == 0:
            return
        last = (result.stderr or result.stdout).strip()
        time.sleep(HEALTH_INTERVAL)
    tail = runner.run(docker_argv.logs_tail(bundle.name), timeout=30)
    log = (tail.stdout + tail.stderr).strip()
    print(f"claude-bottle: bundle log (last lines):\n{log}", file=sys.stderr)
    raise BottleError(f"the bundle was not healthy after {HEALTH_TIMEOUT:.0f} s: {last or 'no answer'}")


def check_pipelock(runner: Runner, bundle: Container) -> None:
    """Refuse a bundle built without pipelock unless the user says, by name, that they accept it."""
    present = runner.run(docker_argv.exec_in(bundle.name, ["test", "-e", docker_argv.PIPELOCK_MARKER]), timeout=30)
    if present.returncode == 0:
        return
    if os.environ.get(NO_PIPELOCK_ENV) == "1":
        session.warn("WARNING: the sidecars image has no pipelock; only mitmdump's allowlist guards egress")
        return
    raise RuntimeFailure(
        f"the sidecars image {bundle.image} was built without pipelock, so only one layer would guard "
        f"egress; rebuild it with pipelock, or set {NO_PIPELOCK_ENV}=1 to accept that"
    )


def run_agent(runner: Runner, plan: Plan, ca_pem: str) -> int:
    agent = plan.container("agent")
    interactive = True
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    _must(runner, docker_argv.agent_create(plan, agent, interactive, tty), "creating the agent container")
    files = {plan_mod.CA_PATH.lstrip("/"): (ca_pem.encode(), 0o444)}
    _must(runner, docker_argv.copy_in(agent.name, "/"), "giving the agent the CA certificate",
          input=docker_argv.tar_of(files))  # fmt: skip
    return runner.attach(docker_argv.start_attached(agent.name, interactive))


def start(manifest: Manifest, command: tuple[str, ...], runner: Runner) -> int:
    preflight(runner)
    sid = session.new_id()
    plan = plan_mod.build(
        manifest, sid, command=command, uid=os.getuid(), gid=os.getgid(), launcher=session.launcher_id()
    )
    check_external_networks(runner, plan)
    ensure_images(runner, plan)
    return execute(plan, runner)


def check_external_networks(runner: Runner, plan: Plan) -> None:
    """A network the manifest names (egress.network) must exist; we join it but never create it."""
    created = {n.name for n in plan.networks}
    for name in plan.container("bundle").networks:
        if name in created:
            continue
        if runner.run(["docker", "network", "inspect", name], timeout=60).returncode != 0:
            raise ManifestError(plan.manifest_path, "egress.network", f"Docker network {name!r} does not exist")


def execute(plan: Plan, runner: Runner) -> int:
    """Run a plan to the end; whatever happens, remove everything carrying the session's label."""
    guard = session.SignalGuard()
    try:
        guard.arm()
        ca = start_bundle(runner, plan)
        return run_agent(runner, plan, ca)
    except session.Interrupted as stop:
        guard.shield()
        session.warn(f"stopped by signal {stop.signum}; removing the bottle")
        return stop.exit_code
    finally:
        guard.shield()
        for problem in session.teardown(runner, session.session_label(plan.session)):
            session.warn(f"cleanup: {problem}")
        guard.restore()
