"""Pure argv builders for every docker command the launcher runs. Nothing here runs anything.

Kept apart from docker.py (which runs them) so the exact flags are easy to read, review and test.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable

from claude_bottle import ssh
from claude_bottle.bundle import shared
from claude_bottle.plan import AGENT_HOME, Container, Network, Plan, Volume

BUNDLE_CONFIG_DIR = shared.CONFIG_DIR
SUPERVISE = ["python3", "/opt/claude-bottle/supervise.py"]
PIPELOCK_MARKER = "/opt/claude-bottle/pipelock-present"  # written by Dockerfile.sidecars
BUNDLE_MEMORY = "1g"
BUNDLE_UID = 10001  # the bundle image's `bottle` user (Dockerfile.sidecars): owns the secrets file
BUNDLE_PIDS = 512


def _labels(labels: Iterable[tuple[str, str]]) -> list[str]:
    argv: list[str] = []
    for key, value in labels:
        argv += ["--label", f"{key}={value}"]
    return argv


def network_create(net: Network) -> list[str]:
    argv = ["docker", "network", "create", "--driver", "bridge", *_labels(net.labels)]
    if net.subnet:
        argv += ["--subnet", net.subnet]
    if net.gateway:
        argv += ["--gateway", net.gateway]
    return argv + [net.name]


def bundle_create(plan: Plan, bundle: Container) -> list[str]:
    """The bundle: first network at create time, the rest joined with `network connect`."""
    argv = ["docker", "create", "--name", bundle.name, *_labels(bundle.labels)]
    argv += ["--network", bundle.networks[0]]
    if plan.proxy_socket:  # its agent comes in by the socket: the port serves loopback alone
        argv += ["--env", f"{shared.PROXY_HOST_ENV}=127.0.0.1"]
    if bundle.ip:
        argv += ["--ip", bundle.ip]
    argv += [
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--pids-limit", str(BUNDLE_PIDS),
        "--memory", BUNDLE_MEMORY,
        "--restart", "no",
    ]
    return argv + [bundle.image]


def network_connect(network: str, container: str) -> list[str]:
    return ["docker", "network", "connect", network, container]


def gated_command(entrypoint: list[str] | None, cmd: list[str] | None, command: tuple[str, ...]) -> list[str]:
    """What the image would run (its ENTRYPOINT, then the plan's command or else its CMD), for the gate
    to become: replacing the entrypoint makes Docker drop the image's CMD, so it is passed on here."""
    return [*(entrypoint or []), *(command or cmd or [])]


def agent_create(plan: Plan, agent: Container, interactive: bool, tty: bool,
                 entrypoint: list[str] | None = None, cmd: list[str] | None = None) -> list[str]:
    """The agent starts beside the bundle: its first program is the bundle's gate (from the bundle's
    volume, mounted read-only), which waits for the bundle's proxy and CA, then runs the image's own.

    With no network (the plan's proxy_socket), the agent has a loopback interface and nothing else: no
    route, no DNS, no address on any bridge. The gate relays its proxy port there to the bundle's socket."""
    uid, _, gid = plan.agent_user.partition(":")
    argv = ["docker", "create", "--name", agent.name, *_labels(agent.labels)]
    argv += ["--network", agent.networks[0] if agent.networks else "none"]
    proxy = plan.proxy_url.removeprefix("http://").rstrip("/")
    argv += ["--volumes-from", f"{plan.container('bundle').name}:ro", "--entrypoint", shared.GATE,
             "--env", f"CLAUDE_BOTTLE_GATE_CA={shared.SHARED_CA}"]
    if plan.proxy_socket:
        argv += ["--env", f"CLAUDE_BOTTLE_GATE_PROXY={plan.proxy_socket}", "--env", f"CLAUDE_BOTTLE_GATE_LISTEN={proxy}"]
    else:
        argv += ["--env", f"CLAUDE_BOTTLE_GATE_PROXY={proxy}"]
    if interactive:
        argv.append("--interactive")
    if tty:
        argv.append("--tty")
    argv += [
        "--init",
        "--user", plan.agent_user,
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--pids-limit", str(plan.resources.pids),
        "--memory", plan.resources.memory,
        "--workdir", "/workspace",
    ]
    if plan.state_volume is not None:  # the home the agent's earlier sessions left (login, settings, history)
        argv += ["--mount", f"type=volume,source={plan.state_volume.name},target={plan.state_volume.target}"]
    else:  # scratch space owned by the agent user, whatever uid that is: a clean slate every session
        argv += ["--tmpfs", f"{AGENT_HOME}:rw,exec,uid={uid},gid={gid},mode=0700"]
    if plan.resources.cpus:
        argv += ["--cpus", f"{plan.resources.cpus:g}"]
    if plan.workspace:
        argv += ["--mount", f"type=bind,source={plan.workspace},target=/workspace"]
    if plan.ssh is not None and plan.ssh.agent_socket:
        argv += ["--mount", f"type=bind,source={plan.ssh.agent_socket},target={ssh.AGENT_SOCKET},readonly"]
    for key, value in plan.agent_env:
        argv += ["--env", f"{key}={value}"]
    return argv + [agent.image, *gated_command(entrypoint, cmd, plan.agent_command)]


def start_attached(name: str, interactive: bool) -> list[str]:
    return ["docker", "start", "--attach", *(["--interactive"] if interactive else []), name]


def copy_in(container: str, dest: str) -> list[str]:
    """`docker cp` from a tar stream on stdin: no temporary files on the host."""
    return ["docker", "cp", "-", f"{container}:{dest}"]


def tar_of(files: dict[str, tuple[bytes, int]], owners: dict[str, int] | None = None) -> bytes:
    """A tar stream of {path: (content, mode)}, owned by root (or by `owners[path]`, uid and gid), for
    copy_in; `docker cp` from a stream keeps the tar's ownership."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(files):
            content, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = mode
            info.uid = info.gid = (owners or {}).get(path, 0)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def bundle_files(plan: Plan, secrets_json: bytes | None = None) -> bytes:
    # Readable by the bundle's non-root user; the launcher owns the only other copy (in memory).
    files = {
        "pipelock.yaml": (plan.pipelock_yaml.encode(), 0o444),
        "policy.json": (plan.bundle_policy.encode(), 0o444),
    }
    if secrets_json is None:
        return tar_of(files)
    # Secret values: readable by the bundle's user alone, and nowhere else but the launcher's memory.
    files["secrets.json"] = (secrets_json, 0o400)
    return tar_of(files, {"secrets.json": BUNDLE_UID})


def exec_in(container: str, argv: list[str]) -> list[str]:
    return ["docker", "exec", container, *argv]


def health_check(container: str) -> list[str]:
    return exec_in(container, [*SUPERVISE, "--check"])


def fetch_ca(container: str) -> list[str]:
    return exec_in(container, [*SUPERVISE, "--ca"])


def wait_ready(container: str, seconds: float) -> list[str]:
    """Blocks in the bundle until it is ready; prints {"ca": PEM, "pipelock": bool}."""
    return exec_in(container, [*SUPERVISE, "--wait", f"{seconds:g}"])


def logs_tail(container: str, lines: int = 40) -> list[str]:
    return ["docker", "logs", "--tail", str(lines), container]


def list_by_label(kind: str, label: str) -> list[str]:
    """`kind` is "container" or "network"; ids of every object carrying `label` (k or k=v)."""
    if kind == "container":
        return ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}"]
    return ["docker", "network", "ls", "--quiet", "--no-trunc", "--filter", f"label={label}"]


def remove(kind: str, ids: list[str]) -> list[str]:
    if kind == "container":
        return ["docker", "rm", "--force", "--volumes", *ids]
    return ["docker", "network", "rm", *ids]


def server_version() -> list[str]:
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def image_id(image: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", image]


def start(name: str) -> list[str]:
    return ["docker", "start", name]


def container_state(name: str) -> list[str]:
    """"exited (exit 1)", "running (exit 0)": what `not ready` adds for a bundle that is no longer running."""
    return ["docker", "container", "inspect", "--format", "{{.State.Status}} (exit {{.State.ExitCode}})", name]


def kill(name: str) -> list[str]:
    return ["docker", "kill", name]


def image_entry(image: str) -> list[str]:
    """An image's ENTRYPOINT and CMD, as two JSON values on one line."""
    return ["docker", "image", "inspect", "--format", "{{json .Config.Entrypoint}}\t{{json .Config.Cmd}}", image]


def network_inspect(name: str) -> list[str]:
    return ["docker", "network", "inspect", name]


def network_ids() -> list[str]:
    return ["docker", "network", "ls", "--quiet", "--no-trunc"]


def network_subnets(ids: list[str]) -> list[str]:
    return ["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids]


def copy_out(container: str, path: str) -> list[str]:
    """A tar stream of one path in a container, on stdout."""
    return ["docker", "cp", f"{container}:{path}", "-"]


def logs(container: str, follow: bool = False) -> list[str]:
    return ["docker", "logs", *(["--follow"] if follow else []), container]


def label_columns(label_prefix: str, fields: Iterable[str]) -> list[str]:
    return [f'{{{{.Label "{label_prefix}.{f}"}}}}' for f in fields]


def list_sessions(kind: str, label_prefix: str, columns: list[str]) -> list[str]:
    """Every container (all states) or network carrying a session label, as tab-separated columns."""
    fmt = "\t".join(columns)
    if kind == "container":
        return ["docker", "ps", "--all", "--filter", f"label={label_prefix}.session", "--format", fmt]
    return ["docker", "network", "ls", "--filter", f"label={label_prefix}.session", "--format", fmt]


def running_bundles(label_prefix: str, name: str) -> list[str]:
    """Running bundles of one bottle: created, session, id."""
    return ["docker", "ps", "--filter", f"label={label_prefix}.bottle={name}", "--filter",
            f"label={label_prefix}.role=bundle", "--format",
            f'{{{{.CreatedAt}}}}\t{{{{.Label "{label_prefix}.session"}}}}\t{{{{.ID}}}}']


def volume_exists(name: str) -> list[str]:
    return ["docker", "volume", "inspect", "--format", "{{.Name}}", name]


def volume_create(volume: Volume) -> list[str]:
    return ["docker", "volume", "create", *_labels(volume.labels), volume.name]


def volume_chown(volume: Volume, image: str, user: str, labels: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Give a new state volume to the agent's uid: Docker makes it with the image's owner of the
    mount point, which is not the launching user's uid. No network, no capabilities but CHOWN; the
    session's labels, so a teardown after a signal finds it."""
    return ["docker", "run", "--rm", *_labels(labels), "--network", "none", "--user", "0", "--cap-drop", "ALL",
            "--cap-add", "CHOWN",
            "--security-opt", "no-new-privileges", "--mount", f"type=volume,source={volume.name},target=/state",
            "--entrypoint", "chown", image, "-R", user, "/state"]


def list_volumes(label: str) -> list[str]:
    return ["docker", "volume", "ls", "--quiet", "--filter", f"label={label}"]


def volume_remove(names: list[str]) -> list[str]:
    return ["docker", "volume", "rm", *names]
