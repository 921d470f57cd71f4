"""The Docker executor: carry out a plan, attach to the agent, and remove everything on every exit path."""

from __future__ import annotations

import json
import os
import sys

from claude_bottle import docker_argv, images, plan as plan_mod, secrets, session, ssh
from claude_bottle.errors import BottleError, ManifestError, RuntimeFailure
from claude_bottle.manifest import Manifest
from claude_bottle.plan import Container, Plan
from claude_bottle.runner import Runner

HEALTH_TIMEOUT = 60.0
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
    """Build what is missing (with docker's own progress output); a missing custom agent image is an error.
    Refuses a sidecars image without pipelock (unless accepted) here, before anything is created."""
    if not image_exists(runner, plan.sidecars_image):
        if os.environ.get(images.IMAGE_ENV):
            raise RuntimeFailure(f"{images.IMAGE_ENV}={plan.sidecars_image} does not exist locally")
        build(runner, images.sidecars_build(plan.sidecars_image, {}))
    if image_label(runner, plan.sidecars_image, images.PIPELOCK_LABEL) == "absent":
        check_pipelock(False, plan.sidecars_image)
    if not image_exists(runner, plan.agent_image):
        if plan.agent_image != images.AGENT_IMAGE:
            raise RuntimeFailure(f"agent image {plan.agent_image} is not present; build or pull it first")
        build(runner, images.agent_build({}))


def image_label(runner: Runner, image: str, label: str) -> str:
    """A label's value on a local image; "" when the image or the label is missing."""
    result = runner.run(images.label_argv(image, label), timeout=60)
    value = result.stdout.strip() if result.returncode == 0 else ""
    return "" if value == "<no value>" else value


def pipelock_state(runner: Runner, build_args: dict[str, str]) -> str:
    """Whether the PIPELOCK_IMAGE a build uses holds pipelock: only the placeholder says it does not.
    Dockerfile.sidecars checks this against the image's contents and fails the build if they disagree."""
    image = build_args.get("PIPELOCK_IMAGE")
    if image is None:
        return "present"  # the pinned upstream image
    return "absent" if image_label(runner, image, images.PIPELOCK_LABEL) == "absent" else "present"


def build(runner: Runner, argv: list[str]) -> None:
    print(f"claude-bottle: building {argv[argv.index('-t') + 1]} (first run only)...", file=sys.stderr)
    # Docker's progress goes to stderr: stdout is the agent's (and `build` prints only the tag there).
    if runner.attach(argv, stdout_to_stderr=True) != 0:
        raise BottleError(f"image build failed: {' '.join(argv)}")
    runner.run(images.prune_stages_argv(), timeout=120)  # the legacy builder's dangling stage image


def _must(runner: Runner, argv: list[str], what: str, input: bytes | None = None) -> str:
    result = runner.run(argv, input=input, timeout=300)
    if result.returncode != 0:
        raise BottleError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def start_bundle(runner: Runner, plan: Plan, secret_values: dict[str, str] | None = None) -> None:
    """Create networks and the bundle and start it; wait_bundle() then waits for it to be ready.

    Secret values are read now unless the caller already did (before anything is created, either way)."""
    if secret_values is None:
        secret_values = secrets.resolve(plan.secrets, plan.manifest_path)
    for net in plan.networks:
        _must(runner, docker_argv.network_create(net), f"creating network {net.name}")
    bundle = plan.container("bundle")
    _must(runner, docker_argv.bundle_create(plan, bundle), "creating the bundle")
    for extra in bundle.networks[1:]:
        _must(runner, docker_argv.network_connect(extra, bundle.name), "connecting the bundle")
    values_file = secrets.values_file(secret_values) if plan.secrets else None
    _must(runner, docker_argv.copy_in(bundle.name, docker_argv.BUNDLE_CONFIG_DIR), "configuring the bundle",
          input=docker_argv.bundle_files(plan, values_file))  # fmt: skip
    _must(runner, ["docker", "start", bundle.name], "starting the bundle")


def wait_bundle(runner: Runner, bundle: Container) -> str:
    """Wait (inside the bundle, one exec) until it is ready; returns its CA certificate's public part."""
    result = runner.run(docker_argv.wait_ready(bundle.name, HEALTH_TIMEOUT), timeout=HEALTH_TIMEOUT + 30)
    try:
        ready = json.loads(result.stdout) if result.returncode == 0 else None
    except ValueError:
        ready = None
    if not isinstance(ready, dict):
        tail = runner.run(docker_argv.logs_tail(bundle.name), timeout=30)
        print(f"claude-bottle: bundle log (last lines):\n{(tail.stdout + tail.stderr).strip()}", file=sys.stderr)
        said = (result.stderr or result.stdout).strip() or "no answer"
        raise BottleError(f"the bundle did not become ready: {said}")
    check_pipelock(bool(ready.get("pipelock")), bundle.image)
    ca = str(ready.get("ca", ""))
    if "BEGIN CERTIFICATE" not in ca or "PRIVATE" in ca:
        raise BottleError("the bundle returned something other than a public CA certificate")
    return ca


def check_pipelock(present: bool, image: str) -> None:
    """Refuse a bundle built without pipelock unless the user says, by name, that they accept it."""
    if present:
        return
    if os.environ.get(NO_PIPELOCK_ENV) == "1":
        session.warn("WARNING: the sidecars image has no pipelock; only mitmdump's allowlist guards egress")
        return
    raise RuntimeFailure(
        f"the sidecars image {image} was built without pipelock, so only one layer would guard "
        f"egress; rebuild it with pipelock, or set {NO_PIPELOCK_ENV}=1 to accept that"
    )


def create_agent(runner: Runner, plan: Plan) -> dict[str, tuple[bytes, int]]:
    """Create (not start) the agent; returns the files it still needs. Runs while the bundle boots."""
    agent = plan.container("agent")
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    _must(runner, docker_argv.agent_create(plan, agent, True, tty), "creating the agent container")
    return ssh_files(runner, plan, agent) if plan.ssh is not None else {}


def run_agent(runner: Runner, plan: Plan, ca_pem: str, files: dict[str, tuple[bytes, int]]) -> int:
    agent = plan.container("agent")
    files = {**files, plan_mod.CA_PATH.lstrip("/"): (ca_pem.encode(), 0o444)}
    _must(runner, docker_argv.copy_in(agent.name, "/"), "giving the agent the CA certificate",
          input=docker_argv.tar_of(files))  # fmt: skip
    return runner.attach(docker_argv.start_attached(agent.name, True))


def start(manifest: Manifest, command: tuple[str, ...], runner: Runner) -> int:
    sock = forwarded_agent_socket(manifest)  # a bad one is the user's to fix: exit 2, before anything runs
    preflight(runner)
    sid = session.new_id()
    plan = plan_mod.build(
        manifest, sid, command=command, uid=os.getuid(), gid=os.getgid(), launcher=session.launcher_id(),
        ssh_auth_sock=sock, environ=os.environ, placeholder_seed=session.placeholder_seed(),
    )
    secret_values = secrets.resolve(plan.secrets, plan.manifest_path)  # exit 2 here: nothing created yet
    if plan.ssh is not None and plan.ssh.unknown:
        session.warn(f"no known_hosts entry for {', '.join(plan.ssh.unknown)}: ssh in the bottle will refuse "
                     "those hosts' keys; seed them with ssh.known_hosts (see the README)")  # fmt: skip
    check_external_networks(runner, plan)
    ensure_images(runner, plan)
    return execute(plan, runner, secret_values)


def check_external_networks(runner: Runner, plan: Plan) -> None:
    """A network the manifest names (egress.network) must exist; we join it but never create it."""
    created = {n.name for n in plan.networks}
    for name in plan.container("bundle").networks:
        if name in created:
            continue
        if runner.run(["docker", "network", "inspect", name], timeout=60).returncode != 0:
            raise ManifestError(plan.manifest_path, "egress.network", f"Docker network {name!r} does not exist")


def execute(plan: Plan, runner: Runner, secret_values: dict[str, str] | None = None) -> int:
    """Run a plan to the end; whatever happens, save the bundle's decisions, then remove everything
    carrying the session's label."""
    values = secrets.resolve(plan.secrets, plan.manifest_path) if secret_values is None else secret_values

    def body() -> int:
        start_bundle(runner, plan, values)
        files = create_agent(runner, plan)  # overlaps the bundle's boot (mitmdump takes about a second)
        return run_agent(runner, plan, wait_bundle(runner, plan.container("bundle")), files)

    def cleanup() -> list[str]:
        from claude_bottle import audit
        from claude_bottle.commands.start import state_dir

        return session.save_then(lambda: audit.finish(runner, plan, values, state_dir()),
                                 lambda: session.teardown(runner, session.session_label(plan.session)))  # fmt: skip

    return session.guarded(body, cleanup)


def forwarded_agent_socket(manifest: Manifest) -> str | None:
    """The host's $SSH_AUTH_SOCK when the manifest forwards it, checked for the uid the agent will run as."""
    if manifest.ssh is None or manifest.ssh.agent != "forward":
        return None
    agent_uid = int(plan_mod.agent_user(os.getuid(), os.getgid()).partition(":")[0])
    try:
        return ssh.check_agent_socket(os.environ.get("SSH_AUTH_SOCK"), agent_uid)
    except ValueError as exc:
        raise ManifestError(manifest.path, "ssh.agent", str(exc)) from None


def ssh_files(runner: Runner, plan: Plan, agent: Container) -> dict[str, tuple[bytes, int]]:
    """The agent's SSH files; plus a passwd entry for its uid when the image has none (ssh needs one)."""
    assert plan.ssh is not None
    files = ssh.agent_files(plan.ssh, ssh.helper_source())
    uid, _, gid = plan.agent_user.partition(":")
    found = runner.run(["docker", "cp", f"{agent.name}:/etc/passwd", "-"], timeout=60)
    passwd = None
    if found.returncode == 0:
        import io
        import tarfile

        try:
            with tarfile.open(fileobj=io.BytesIO(found.stdout.encode("utf-8")), mode="r:") as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member is not None and member.isfile() else None
                passwd = handle.read().decode("utf-8") if handle is not None else None
        except (tarfile.TarError, UnicodeError, OSError):
            passwd = None
    if passwd is None:
        session.warn("could not read the agent image's /etc/passwd; ssh may say \"No user exists for uid\"")
        return files
    import pwd

    try:
        name = pwd.getpwuid(os.getuid()).pw_name if os.getuid() != 0 else ""
    except KeyError:
        name = ""
    updated = ssh.passwd_with_user(passwd, int(uid), int(gid), name, plan_mod.AGENT_HOME)
    if updated is not None:
        files["etc/passwd"] = (updated.encode("utf-8"), 0o644)
    return files
