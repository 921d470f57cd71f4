"""The plan: everything `start` will create and run, as frozen data. Pure: no Docker, no files written.

`start --dry-run` prints this; the executors (docker.py, smolvm.py) only carry it out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from claude_bottle import ssh  # imported where used: only a manifest with SSH needs it

from claude_bottle import addressing, agents, images, pipelock, smolfile
from claude_bottle import dlp as dlp_mod, secrets as secrets_mod
from claude_bottle.bundle import shared
from claude_bottle.errors import RuntimeFailure
from claude_bottle.manifest import Manifest, Resources

PROXY_PORT = shared.PROXY_PORT  # mitmdump, the bundle's only agent-facing port
# The Docker runtime's bundle egresses by Docker's default bridge unless the manifest names a network
# (egress.network): a network of the session's own would cost a create and a remove each session, and
# the agent, with no network of its own, never shares it. Nothing on it reaches the bundle's proxy,
# which listens on loopback and on a Unix socket only.
DEFAULT_EGRESS_NETWORK = "bridge"
CA_PATH = shared.SHARED_CA  # the mitmdump CA's public cert, inside the agent
AGENT_HOME = "/home/agent"
AGENT_FALLBACK_UID = 10001  # used when the launcher runs as root: the agent never runs as root
LABEL = "org.claude-bottle"
CA_VARS = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass(frozen=True)
class Network:
    """A Docker network the session creates and removes (the smolmachines bundle's pinned one)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    subnet: str | None = None
    gateway: str | None = None


@dataclass(frozen=True)
class Container:
    """One of the session's containers, with the networks it joins (none: `--network none`)."""

    name: str
    role: str  # "bundle" or "agent"
    image: str
    networks: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    ip: str | None = None


@dataclass(frozen=True)
class Volume:
    """The agent's home, kept per bottle across sessions: labelled with the bottle, not the session, so
    a session's teardown leaves it; `cleanup --state` removes it."""

    name: str
    target: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Plan:
    """Everything a run does, decided before it creates anything: what a dry run prints."""

    name: str
    runtime: str
    session: str
    manifest_path: str
    workspace: str | None
    agent_image: str
    agent_command: tuple[str, ...]
    agent_env: tuple[tuple[str, str], ...]  # sorted; what the agent process sees
    agent_user: str  # "UID:GID"
    resources: Resources
    egress_json: str  # the classified egress (JSON text keeps the dataclass hashable and frozen)
    pipelock_yaml: str
    bundle_policy: str  # JSON for the addon, /etc/claude-bottle/policy.json in the bundle
    sidecars_image: str
    networks: tuple[Network, ...]
    containers: tuple[Container, ...]
    labels: tuple[tuple[str, str], ...]  # on every resource of this session
    proxy_url: str
    bundle_subnet: str | None = None
    bundle_gateway: str | None = None
    bundle_ip: str | None = None
    bundle_subnet_moved_from: str | None = None  # the slug's first choice, when a clash moved us off it
    smolfile: str | None = None
    smolfile_path: str | None = None
    vm_name: str | None = None
    ssh: ssh.SshPlan | None = None  # Docker runtime, when a rule is ssh:// or the manifest has `ssh`
    secrets: tuple[secrets_mod.Planned, ...] = ()  # names, sources and placeholders: never a value
    agent_kind: str = agents.DEFAULT
    state_volume: Volume | None = None  # None: the home is a tmpfs, a clean slate every session
    # Docker runtime: the agent has no network; its gate relays proxy_url, on its own loopback, to this
    # socket in the bundle's volume
    proxy_socket: str | None = None

    def container(self, role: str) -> Container:
        return next(c for c in self.containers if c.role == role)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "runtime": self.runtime,
            "session": self.session,
            "manifest": self.manifest_path,
            "workspace": self.workspace,
            "egress": json.loads(self.egress_json),
            "pipelock": {"version": pipelock.PIPELOCK_VERSION, "config": json.loads(self.pipelock_yaml)},
            "bundle_policy": json.loads(self.bundle_policy),
            "agent": {
                "kind": self.agent_kind,
                "image": self.agent_image,
                "command": list(self.agent_command),
                "env": dict(self.agent_env),
                "user": self.agent_user,
                "resources": {
                    "memory": self.resources.memory,
                    "pids": self.resources.pids,
                    "cpus": self.resources.cpus,
                },
                "proxy": self.proxy_url,
                **({"proxy_socket": self.proxy_socket} if self.proxy_socket else {}),
            },
            "labels": dict(self.labels),
            "resources": {
                "networks": [
                    {"name": n.name, "subnet": n.subnet, "gateway": n.gateway,
                     "labels": dict(n.labels)}
                    for n in self.networks
                ],
                "containers": [
                    {"name": c.name, "role": c.role, "image": c.image, "networks": list(c.networks),
                     "ip": c.ip, "labels": dict(c.labels)}
                    for c in self.containers
                ],
            },
        }
        if self.state_volume is not None:
            v = self.state_volume
            out["resources"]["volumes"] = [{"name": v.name, "target": v.target, "labels": dict(v.labels)}]
        if self.ssh is not None:
            out["ssh"] = self.ssh.to_json()
        if self.secrets:
            out["secrets"] = [p.to_json() for p in self.secrets]
        if self.runtime == "smolmachines":
            out["bundle"] = {"subnet": self.bundle_subnet, "gateway": self.bundle_gateway, "ip": self.bundle_ip,
                             "moved_from": self.bundle_subnet_moved_from}
            out["smolfile"] = self.smolfile
            out["smolfile_path"] = self.smolfile_path
            out["resources"]["vm"] = {"name": self.vm_name, "labels": {**dict(self.labels), f"{LABEL}.role": "vm"}}
        return out


def session_labels(name: str, session: str) -> tuple[tuple[str, str], ...]:
    return ((f"{LABEL}.bottle", name), (f"{LABEL}.session", session))


def bundle_policy(manifest: Manifest, secrets: tuple[secrets_mod.Planned, ...] = ()) -> str:
    """What the bundle's mitmdump addon enforces: per-host port gates, the SSRF exceptions, the DLP modes,
    and where each secret's placeholder is swapped (the values travel in a file of their own)."""
    policy: dict[str, Any] = {
        "version": 1,
        "rules": [gate.to_json() for gate in manifest.egress.port_gates],
        "ssrf_allow": list(manifest.egress.ssrf_allow),
        "dlp": dlp_mod.effective(manifest.dlp, manifest.egress),
    }
    if secrets:
        policy["secrets"] = [p.policy_json() for p in secrets]
    if manifest.trusted_ca:
        policy["upstream_trusted_ca"] = manifest.trusted_ca
    return json.dumps(policy, indent=2, sort_keys=True) + "\n"


def plan_secrets(
    manifest: Manifest, session: str, environ: Mapping[str, str]
) -> tuple[secrets_mod.Planned, ...]:
    """The manifest's secrets plus the agent's own credentials, each with this session's placeholder."""
    env_names = tuple(k for k, _ in manifest.agent.env)
    found = secrets_mod.with_default(manifest.secrets, manifest.secrets_opted_out, env_names, manifest.egress, environ,
                                     agents.KINDS[manifest.agent.kind].credentials)
    return secrets_mod.plan(found, session)


def agent_user(uid: int, gid: int) -> str:
    """Run as the launching user so the workspace stays theirs; never as root."""
    if uid == 0:
        return f"{AGENT_FALLBACK_UID}:{AGENT_FALLBACK_UID}"
    return f"{uid}:{gid}"


def agent_env(
    manifest: Manifest, proxy_url: str, session: str, secrets: tuple[secrets_mod.Planned, ...] = ()
) -> tuple[tuple[str, str], ...]:
    env = dict(agents.KINDS[manifest.agent.kind].env)
    env.update(manifest.agent.env)
    env.update({p.secret.name: p.placeholder for p in secrets})  # the agent holds placeholders only
    env.update({var: proxy_url for var in PROXY_VARS})
    env.update({var: CA_PATH for var in CA_VARS})
    if manifest.ssh is not None and manifest.ssh.agent == "forward":
        from claude_bottle import ssh

        env["SSH_AUTH_SOCK"] = ssh.AGENT_SOCKET
    env.update({"HOME": env.get("HOME", AGENT_HOME), "CLAUDE_BOTTLE": manifest.name,
                "CLAUDE_BOTTLE_SESSION": session})
    return tuple(sorted(env.items()))


def build(
    manifest: Manifest,
    session: str,
    *,
    command: tuple[str, ...] = (),
    uid: int = 0,
    gid: int = 0,
    taken_subnets: tuple[str, ...] = (),
    state_dir: str = "",
    launcher: str = "dry-run",
    ssh_auth_sock: str | None = None,
    environ: Mapping[str, str] | None = None,
    placeholder_seed: str = "",
) -> Plan:
    """Build the plan for one session. `taken_subnets` are CIDRs already in use on the host;
    `ssh_auth_sock` is the host's SSH agent socket, already checked, when the manifest forwards it;
    `environ` is the host's environment, read only for the implicit ANTHROPIC_API_KEY secret;
    `placeholder_seed` is a random per-session value (session.placeholder_seed()) that makes the
    placeholders unguessable: the session id is in every resource name, so it must not be enough."""
    prefix = f"claude-bottle-{manifest.name}-{session}"
    planned = plan_secrets(manifest, placeholder_seed or session, environ or {})
    labels = session_labels(manifest.name, session) + ((f"{LABEL}.launcher", launcher),)

    def tagged(role: str) -> tuple[tuple[str, str], ...]:
        return labels + ((f"{LABEL}.role", role),)

    common = dict(
        name=manifest.name,
        runtime=manifest.runtime,
        session=session,
        manifest_path=manifest.path,
        workspace=manifest.workspace,
        agent_image=manifest.agent.image,
        agent_kind=manifest.agent.kind,
        agent_command=command or manifest.agent.command,
        agent_user=agent_user(uid, gid),
        resources=manifest.resources,
        egress_json=json.dumps(manifest.egress.to_json(), sort_keys=True),
        pipelock_yaml=pipelock.render(manifest.egress),
        bundle_policy=bundle_policy(manifest, planned),
        secrets=planned,
        sidecars_image=images.sidecars_image(),
        labels=labels,
    )
    bundle_name = f"{prefix}-bundle"
    if manifest.runtime == "smolmachines":
        try:
            subnet, gateway, ip = addressing.first_free_subnet(manifest.name, taken_subnets)
        except ValueError as exc:
            raise RuntimeFailure(str(exc)) from None
        first_choice = addressing.smolmachines_bundle_subnet(manifest.name)[0]
        proxy_url = f"http://{ip}:{PROXY_PORT}"
        env = agent_env(manifest, proxy_url, session, planned)
        net = Network(f"{prefix}-net", tagged("network"), subnet, gateway)
        smolfile_path = os.path.join(state_dir or "$STATE", f"{prefix}.smolfile")
        return Plan(
            **common,
            agent_env=env,
            networks=(net,),
            containers=(Container(bundle_name, "bundle", images.sidecars_image(), (net.name,), tagged("bundle"), ip),),
            proxy_url=proxy_url,
            bundle_subnet=subnet,
            bundle_gateway=gateway,
            bundle_ip=ip,
            bundle_subnet_moved_from=None if subnet == first_choice else first_choice,
            smolfile=smolfile.render(env, ip),
            smolfile_path=smolfile_path,
            vm_name=f"{prefix}-vm",
        )
    proxy_url = f"http://{shared.AGENT_PROXY}"
    # The user's own network is joined, never created or removed.
    outside_name = manifest.egress_network or DEFAULT_EGRESS_NETWORK
    return Plan(
        **common,
        agent_env=agent_env(manifest, proxy_url, session, planned),
        networks=(),
        containers=(
            Container(bundle_name, "bundle", images.sidecars_image(), (outside_name,), tagged("bundle")),
            Container(f"{prefix}-agent", "agent", manifest.agent.image, (), tagged("agent")),
        ),
        proxy_url=proxy_url,
        proxy_socket=shared.PROXY_SOCKET,
        ssh=ssh_plan(manifest, ssh_auth_sock),
        state_volume=state_volume(manifest),
    )


def ssh_plan(manifest: Manifest, agent_socket: str | None) -> ssh.SshPlan | None:
    """ssh.plan, for a manifest with an ssh:// rule or an `ssh` section; None, without importing it, else."""
    if manifest.ssh is None and not any(rule.kind == "ssh" for rule in manifest.egress.rules):
        return None
    from claude_bottle import ssh

    return ssh.plan(manifest.egress, manifest.ssh, agent_socket)


def state_volume(manifest: Manifest) -> Volume | None:
    if manifest.agent.state != "persist":
        return None
    labels = ((f"{LABEL}.bottle", manifest.name), (f"{LABEL}.role", "state"))
    return Volume(f"claude-bottle-{manifest.name}-state", AGENT_HOME, labels)
