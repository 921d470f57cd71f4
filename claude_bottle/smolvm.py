"""The smolmachines executor: the agent in a smolvm microVM whose only allowed CIDR is the bundle.

The bundle runs in Docker on a pinned 192.168.N.0/24 (sidecars.start_bundle); the VM is created from a
`.smolmachine` artifact packed from the agent image (cached by image id) with the plan's Smolfile, and
sees the bundle's public CA through a read-only volume of a per-session directory in the state dir.
Teardown removes the VM first, then everything with the session's Docker label, then the state files,
on every exit path.
"""

from __future__ import annotations

import os
import platform
import posixpath
import shutil
import sys
import tempfile

from claude_bottle import audit, docker_argv, paths, plan as plan_mod, session, sidecars, smolvm_argv as argv
from claude_bottle.errors import BottleError, RuntimeFailure
from claude_bottle.manifest import Manifest
from claude_bottle.plan import Plan
from claude_bottle.runner import Runner

KVM_PATH = "/dev/kvm"
GUEST_WORKSPACE = "/workspace"
CREATE_TIMEOUT = 600
PACK_TIMEOUT = 1800


def check_hypervisor(runner: Runner) -> None:
    """smolvm needs KVM on Linux and Hypervisor.framework on macOS. Tests with the fake replace this."""
    system = platform.system()
    if system == "Linux":
        if not os.path.exists(KVM_PATH):
            raise RuntimeFailure(f"{KVM_PATH} does not exist: smolvm needs KVM (enable virtualisation in the "
                                 "firmware and load kvm_intel or kvm_amd), or use runtime \"docker\"")
        if not os.access(KVM_PATH, os.R_OK | os.W_OK):
            raise RuntimeFailure(f"{KVM_PATH} is not readable and writable by you: add yourself to its group "
                                 "(usually `sudo usermod -aG kvm $USER`, then log in again)")
    elif system == "Darwin":
        result = runner.run(["sysctl", "-n", "kern.hv_support"], timeout=30)
        if result.stdout.strip() != "1":
            raise RuntimeFailure("the macOS Hypervisor framework is not available (sysctl kern.hv_support != 1)")
    else:
        raise RuntimeFailure(f"runtime smolmachines needs Linux with KVM or macOS, not {system}")


def preflight(runner: Runner, allow_unsafe: bool = False) -> tuple[int, int, int]:
    """smolvm's version (refusing versions with known egress defects unless overridden), KVM, Docker."""
    result = runner.run(argv.version(), timeout=30)
    if result.returncode == 127:
        raise RuntimeFailure("smolvm: command not found; install smolvm and make sure `smolvm` is on PATH")
    version = argv.parse_version(result.stdout) if result.returncode == 0 else None
    if version is None:
        said = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
        raise RuntimeFailure(f"could not read smolvm's version from `smolvm --version` ({said[-1]})")
    found = argv.defects(version)
    shown = argv.version_str(version)
    if found and not allow_unsafe:
        safe = argv.version_str(max(d.fixed_in for d in argv.EGRESS_DEFECTS))
        raise RuntimeFailure(
            f"smolvm {shown} has known egress defects: {'; and '.join(found)}. The bundle would not be the "
            f"agent's only way out. Upgrade smolvm to {safe} or later, or pass {argv.UNSAFE_FLAG} to run anyway"
        )
    for what in found:
        session.warn(f"WARNING ({argv.UNSAFE_FLAG}): smolvm {shown}: {what}")
    check_hypervisor(runner)
    sidecars.preflight(runner)
    return version


def host_routes(runner: Runner) -> list[str]:
    if platform.system() == "Darwin":
        result = runner.run(["netstat", "-rn", "-f", "inet"], timeout=30)
        return argv.parse_netstat_routes(result.stdout) if result.returncode == 0 else []
    result = runner.run(argv.ip_routes(), timeout=30)
    if result.returncode == 0:
        try:
            return argv.parse_ip_json_routes(result.stdout)
        except ValueError:
            pass
    try:
        with open("/proc/net/route", encoding="ascii") as handle:
            return argv.parse_proc_net_route(handle.read())
    except OSError:
        return []


def taken_subnets(runner: Runner) -> tuple[str, ...]:
    """CIDRs used by Docker networks and host routes: the bundle's /24 must overlap none of them."""
    listed = runner.run(docker_argv.network_ids(), timeout=60)
    if listed.returncode != 0:
        raise RuntimeFailure(f"listing Docker networks failed: {listed.stderr.strip()}")
    subnets: list[str] = []
    for net_id in listed.stdout.split():  # one by one: a network removed meanwhile is not an error
        inspected = runner.run(docker_argv.network_subnets([net_id]), timeout=60)
        if inspected.returncode == 0:
            subnets += argv.parse_subnet_words(inspected.stdout)
    return tuple(dict.fromkeys(subnets + host_routes(runner)))


def ensure_artifact(runner: Runner, image: str, version: tuple[int, int, int], cache_dir: str) -> str:
    """The `.smolmachine` for `image`, packed once per image id (and smolvm version)."""
    image_id = sidecars.image_id(runner, image).rpartition(":")[2]
    if not image_id:
        raise RuntimeFailure(f"agent image {image} is not present; build or pull it first")
    key = f"agent-{image_id[:32]}-smolvm{argv.version_str(version)}"
    artifact = os.path.join(cache_dir, key + argv.ARTIFACT_SUFFIX)
    if os.path.isfile(artifact):
        return artifact
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".pack-", dir=cache_dir)  # a rename makes a half-packed file impossible
    try:
        print(f"claude-bottle: packing {image} for smolvm (once per image)...", file=sys.stderr)
        packed = runner.run(argv.pack_create(image, os.path.join(scratch, key)), timeout=PACK_TIMEOUT)
        if packed.returncode != 0:
            raise BottleError(f"smolvm pack create failed: {(packed.stderr or packed.stdout).strip()}")
        os.replace(os.path.join(scratch, key + argv.ARTIFACT_SUFFIX), artifact)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return artifact


def write_smolfile(plan: Plan) -> None:
    assert plan.smolfile is not None and plan.smolfile_path is not None
    os.makedirs(os.path.dirname(plan.smolfile_path), mode=0o700, exist_ok=True)
    fd = os.open(plan.smolfile_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plan.smolfile)


def write_ca(ca_dir: str, ca_pem: str) -> None:
    """Public cert only, world-readable: the guest user's uid need not be the launcher's."""
    os.mkdir(ca_dir, 0o755)
    os.chmod(ca_dir, 0o755)  # whatever the umask
    path = os.path.join(ca_dir, posixpath.basename(plan_mod.CA_PATH))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(ca_pem)


def forget_session(state_dir: str, name: str, session_id: str) -> list[str]:
    """Remove a session's files from the state dir (also for `cleanup`). Returns problems."""
    problems = []
    smolfile_path, ca_dir = paths.smolvm_session_files(state_dir, name, session_id)
    try:
        os.remove(smolfile_path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"removing {smolfile_path}: {exc}")
    if os.path.lexists(ca_dir):
        shutil.rmtree(ca_dir, onerror=lambda _f, path, exc: problems.append(f"removing {path}: {exc[1]}"))
    return problems


def list_vms(runner: Runner) -> list[argv.Vm]:
    """claude-bottle's VMs known to smolvm; none when smolvm is not installed."""
    listed = runner.run(argv.machine_ls(), timeout=60)
    if listed.returncode == 127:
        return []
    if listed.returncode != 0:
        raise RuntimeFailure(f"listing smolvm machines failed: {(listed.stderr or listed.stdout).strip()}")
    try:
        return argv.parse_machine_ls(listed.stdout)
    except (ValueError, AttributeError, TypeError) as exc:
        raise RuntimeFailure(f"`smolvm machine ls --json` printed something unexpected: {exc}") from None


def remove_vm(runner: Runner, name: str) -> None:
    """Stop and delete one VM; quiet when it is already gone, an error when it stays."""
    runner.run(argv.machine_stop(name), timeout=120)
    deleted = runner.run(argv.machine_delete(name), timeout=120)
    if deleted.returncode != 0 and any(vm.name == name for vm in list_vms(runner)):
        raise BottleError(f"removing microVM {name} failed: {(deleted.stderr or deleted.stdout).strip()}")


def _must(runner: Runner, command: list[str], what: str, timeout: float = 300) -> None:
    result = runner.run(command, timeout=timeout)
    if result.returncode == 0:
        return
    said = (result.stderr or result.stdout).strip()
    if "--from" in said and "cannot be used with" in said:
        raise RuntimeFailure(
            f"{what} failed: this smolvm cannot start a .smolmachine artifact together with a Smolfile, so "
            f"the VM would run without its network allowlist; refusing ({said.splitlines()[0]})"
        )
    raise BottleError(f"{what} failed: {said}")


def run_vm(runner: Runner, plan: Plan, artifact: str, ca_dir: str) -> int:
    assert plan.vm_name is not None and plan.smolfile_path is not None
    volumes = [f"{ca_dir}:{posixpath.dirname(plan_mod.CA_PATH)}:ro"]
    if plan.workspace:
        volumes.append(f"{plan.workspace}:{GUEST_WORKSPACE}")
    create = argv.machine_create(plan.vm_name, artifact, plan.smolfile_path, volumes, plan.resources)
    _must(runner, create, "creating the microVM", CREATE_TIMEOUT)
    _must(runner, argv.machine_start(plan.vm_name), "starting the microVM", CREATE_TIMEOUT)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    workdir = GUEST_WORKSPACE if plan.workspace else None
    return runner.attach(argv.machine_exec(plan.vm_name, plan.agent_command, tty=tty, workdir=workdir))


def execute(plan: Plan, runner: Runner, artifact: str, state_dir: str, values: dict[str, str]) -> int:
    """Run a plan to the end; whatever happens, save the bundle's decisions, then remove the VM, the
    session's Docker objects and files."""
    assert plan.vm_name is not None
    _, ca_dir = paths.smolvm_session_files(state_dir, plan.name, plan.session)
    vm_name = plan.vm_name

    def body() -> int:
        write_smolfile(plan)
        sidecars.start_bundle(runner, plan, values)
        write_ca(ca_dir, sidecars.wait_bundle(runner, plan.container("bundle")))
        return run_vm(runner, plan, artifact, ca_dir)

    def cleanup() -> list[str]:
        def remove() -> list[str]:
            label = session.session_label(plan.session)
            return session.teardown(runner, label, lambda: remove_vm(runner, vm_name)) + forget_session(
                state_dir, plan.name, plan.session
            )

        return session.save_then(lambda: audit.finish(runner, plan, values, state_dir), remove)

    return session.guarded(body, cleanup)


def start(plan: Plan, secret_values: dict[str, str], runner: Runner, allow_unsafe: bool = False,
          state_dir: str | None = None) -> int:
    """Check what a run needs (nothing is created before all of it holds), then run the plan."""
    state = state_dir or paths.state_dir()
    version = preflight(runner, allow_unsafe)
    if plan.bundle_subnet_moved_from:
        session.warn(f"{plan.bundle_subnet_moved_from} is taken by a Docker network or host route; "
                     f"the bundle uses {plan.bundle_subnet}")
    sidecars.ensure_images(runner, plan)
    artifact = ensure_artifact(runner, plan.agent_image, version, paths.smolvm_cache(state))
    return execute(plan, runner, artifact, state, secret_values)
