"""The bundle's lifecycle on the Docker engine, shared by both runtimes: the engine is there, the
images are (built if missing, refused without pipelock), the bundle is created, configured, started
and ready. The agent's side lives in docker.py (a container) and smolvm.py (a microVM)."""

from __future__ import annotations

import json
import os
import sys

from claude_bottle import agents, docker_argv, images, secrets, session
from claude_bottle.errors import BottleError, RuntimeFailure
from claude_bottle.plan import Container, Plan
from claude_bottle.runner import Result, Runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

HEALTH_TIMEOUT = 60.0
NO_PIPELOCK_ENV = "CLAUDE_BOTTLE_ALLOW_NO_PIPELOCK"


def preflight(runner: Runner) -> str:
    """The Docker server version, or a RuntimeFailure (exit 125) that says what to fix."""
    return server_version(runner.run(docker_argv.server_version(), timeout=30))


def server_version(result: Result) -> str:
    """preflight's judgement of `docker version` (docker_argv.server_version), for a caller that ran it
    beside other read-only calls."""
    if result.returncode == 127:
        raise RuntimeFailure("docker: command not found; install Docker and make sure `docker` is on PATH")
    if result.returncode != 0 or not result.stdout.strip():
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
        raise RuntimeFailure(f"the Docker daemon is not reachable ({detail}); is it running?")
    return result.stdout.strip()


def image_id(runner: Runner, image: str) -> str:
    """A local image's id, "" when it is not there."""
    result = runner.run(docker_argv.image_id(image), timeout=60)
    return result.stdout.strip() if result.returncode == 0 else ""


def ensure_images(runner: Runner, plan: Plan, also: tuple[list[str], ...] = (),
                  check: Callable[[list[Result]], None] | None = None) -> list[Result]:
    """Build what is missing (with docker's own progress output); a missing custom agent image is an error.
    Refuses a sidecars image without pipelock (unless accepted) here, before anything is created.
    The first look at both images goes side by side with `also` (read-only calls): `check` sees their
    results before anything is built; the results are returned."""
    first = runner.run_all([(docker_argv.image_id(plan.sidecars_image), None),
                            (images.label_argv(plan.sidecars_image, images.PIPELOCK_LABEL), None),
                            (docker_argv.image_id(plan.agent_image), None), *((argv, None) for argv in also)],
                           timeout=60)
    if check is not None:
        check(first[3:])
    sidecars_id, label, agent_id = (r.stdout.strip() if r.returncode == 0 else "" for r in first[:3])
    if not sidecars_id:
        if os.environ.get(images.IMAGE_ENV):
            raise RuntimeFailure(f"{images.IMAGE_ENV}={plan.sidecars_image} does not exist locally")
        try:
            build(runner, images.sidecars_build(plan.sidecars_image, {}))
        except BottleError:
            # Most often: no registry to pull the pinned upstream images from. The same images can be
            # made from Debian's archive and the Go module proxy; say so and do it.
            print("claude-bottle: building from the pinned upstream images failed (no container registry?); "
                  "building every image from Debian's archive and the Go module proxy instead "
                  "(claude-bottle build --offline)", file=sys.stderr)
            build_offline(runner)
        label = image_label(runner, plan.sidecars_image, images.PIPELOCK_LABEL)
        agent_id = agent_id or image_id(runner, plan.agent_image)  # an offline build makes agent images too
    if label == "absent":
        check_pipelock(False, plan.sidecars_image)
    if not agent_id:
        kind = agents.KINDS[plan.agent_kind]
        if plan.agent_image != kind.image:
            raise RuntimeFailure(f"agent image {plan.agent_image} is not present; build or pull it first")
        try:
            build(runner, images.agent_build({}, kind.image, kind.dockerfile))
        except BottleError:
            raise RuntimeFailure(
                f"the {kind.name} agent image needs the npm registry to build; on a machine without one, "
                f"`claude-bottle build --offline` makes {images.AGENT_BASE_IMAGE} (python3, git) for agent.image"
            ) from None
    if not first[2].stdout.strip() or first[2].returncode != 0:
        return [runner.run(argv, timeout=60) for argv in also]  # the agent image is new: look again
    return first[3:]


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


def build_offline(runner: Runner) -> None:
    """Every image a bottle needs, from Debian's archive and the Go module proxy (offline/build-images)."""
    if runner.attach(["bash", images.OFFLINE_SCRIPT], stdout_to_stderr=True) != 0:
        raise BottleError(f"the offline image build failed ({images.OFFLINE_SCRIPT}); its output is above")


def build(runner: Runner, argv: list[str]) -> None:
    print(f"claude-bottle: building {argv[argv.index('-t') + 1]} (first run only)...", file=sys.stderr)
    # Docker's progress goes to stderr: stdout is the agent's (and `build` prints only the tag there).
    if runner.attach(argv, stdout_to_stderr=True) != 0:
        raise BottleError(f"image build failed: {' '.join(argv)}")
    runner.run(images.prune_stages_argv(), timeout=120)  # the legacy builder's dangling stage image


def must(runner: Runner, argv: list[str], what: str, input: bytes | None = None) -> str:
    result = runner.run(argv, input=input, timeout=300)
    if result.returncode != 0:
        raise BottleError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def start_bundle(runner: Runner, plan: Plan, secret_values: dict[str, str]) -> None:
    """Create networks and the bundle and start it; wait_bundle() then waits for it to be ready."""
    create_networks(runner, plan)
    create_bundle(runner, plan)
    configure_bundle(runner, plan, secret_values)
    must(runner, docker_argv.start(plan.container("bundle").name), "starting the bundle")


def create_networks(runner: Runner, plan: Plan) -> None:
    """The plan's networks, side by side."""
    results = runner.run_all([(docker_argv.network_create(n), None) for n in plan.networks], timeout=300)
    for net, result in zip(plan.networks, results):
        if result.returncode != 0:
            raise BottleError(f"creating network {net.name} failed: {result.stderr.strip() or result.stdout.strip()}")


def create_bundle(runner: Runner, plan: Plan) -> None:
    bundle = plan.container("bundle")
    must(runner, docker_argv.bundle_create(plan, bundle), "creating the bundle")
    for extra in bundle.networks[1:]:
        must(runner, docker_argv.network_connect(extra, bundle.name), "connecting the bundle")


def configure_argv(plan: Plan, secret_values: dict[str, str]) -> tuple[list[str], bytes]:
    """The `docker cp` that gives the created bundle its config, and its tar stream."""
    values_file = secrets.values_file(secret_values) if plan.secrets else None
    return (docker_argv.copy_in(plan.container("bundle").name, docker_argv.BUNDLE_CONFIG_DIR),
            docker_argv.bundle_files(plan, values_file))


def configure_bundle(runner: Runner, plan: Plan, secret_values: dict[str, str]) -> None:
    argv, tar = configure_argv(plan, secret_values)
    must(runner, argv, "configuring the bundle", input=tar)


def ready_answer(result: Result) -> dict[str, object] | None:
    """What `supervise.py --wait` printed once ready, or None."""
    try:
        ready = json.loads(result.stdout) if result.returncode == 0 else None
    except ValueError:
        return None
    return ready if isinstance(ready, dict) else None


def not_ready(runner: Runner, bundle: Container, result: Result) -> BottleError:
    """The bundle's last log lines (stderr) and the error that says it never became ready."""
    tail = runner.run(docker_argv.logs_tail(bundle.name), timeout=30)
    print(f"claude-bottle: bundle log (last lines):\n{(tail.stdout + tail.stderr).strip()}", file=sys.stderr)
    said = (result.stderr or result.stdout).strip() or "no answer"
    state = runner.run(docker_argv.container_state(bundle.name), timeout=30).stdout.strip()
    if state and not state.startswith("running"):
        # The wait ended with the bundle, or could not even start in it (the engine's own error, then):
        # how the bundle ended is the news.
        said += f"; its container is {state}"
    return BottleError(f"the bundle did not become ready: {said}")


def wait_bundle(runner: Runner, bundle: Container) -> str:
    """Wait (inside the bundle, one exec) until it is ready; returns its CA certificate's public part."""
    result = runner.run(docker_argv.wait_ready(bundle.name, HEALTH_TIMEOUT), timeout=HEALTH_TIMEOUT + 30)
    ready = ready_answer(result)
    if ready is None:
        raise not_ready(runner, bundle, result)
    check_pipelock(bool(ready.get("pipelock")), bundle.image)
    ca = str(ready.get("ca", ""))
    if "BEGIN CERTIFICATE" not in ca or "PRIVATE" in ca:
        raise BottleError("the bundle returned something other than a public CA certificate")
    return ca


class BundleStart:
    """Start the bundle and wait until it is ready while the agent starts beside it (Docker runtime).

    The agent's gate holds its command until the bundle's port accepts and the CA is in the shared
    volume; a bundle that then fails to start or to become ready stops the agent, and `finish()`
    raises why. Whatever this thread still waits for once the agent is done ends with the teardown."""

    def __init__(self, runner: Runner, plan: Plan) -> None:
        import threading

        self._runner, self._bundle, self._agent = runner, plan.container("bundle"), plan.container("agent")
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bundle-start", daemon=True)
        self.error: BottleError | None = None

    def begin(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            must(self._runner, docker_argv.start(self._bundle.name), "starting the bundle")
            result = self._runner.run(docker_argv.wait_ready(self._bundle.name, HEALTH_TIMEOUT),
                                      timeout=HEALTH_TIMEOUT + 30)
            if self._over.is_set():
                return
            ready = ready_answer(result)
            if ready is None:
                raise not_ready(self._runner, self._bundle, result)
            check_pipelock(bool(ready.get("pipelock")), self._bundle.image)
        except BottleError as exc:
            if self._over.is_set():
                return
            self.error = exc
            self._stop_agent()

    def _stop_agent(self) -> None:
        # The agent may not be running yet: the main thread starts it right after begin().
        for _ in range(100):
            if self._over.is_set() or self._runner.run(docker_argv.kill(self._agent.name), timeout=30).returncode == 0:
                return
            self._over.wait(0.1)

    def finish(self) -> None:
        """The agent is done: raise the bundle's failure, if it had one."""
        self._over.set()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """The session failed otherwise: the bundle's own failure, if any, is no longer news."""
        self._over.set()


def check_pipelock(present: bool, image: str) -> None:
    """Refuse a bundle built without pipelock unless the user says, by name, that they accept it."""
    if present:
        return
    if os.environ.get(NO_PIPELOCK_ENV) == "1":
        session.warn("WARNING: the sidecars image has no pipelock, so only mitmdump's addon guards egress; "
                     "make an image claude-bottle/pipelock:local and run `claude-bottle build --offline` "
                     "(see the README's Images section)")
        return
    raise RuntimeFailure(
        f"the sidecars image {image} was built without pipelock, so only one layer would guard "
        f"egress; rebuild it with pipelock, or set {NO_PIPELOCK_ENV}=1 to accept that"
    )
