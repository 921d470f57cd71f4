"""Load and validate a manifest (JSON, version 1) into a frozen Manifest, or fail with one clear line.

Every error names the file and the field (`egress.allow[2]`), and unknown keys get a "did you mean".
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

    # Imported where used: a manifest without an ssh or a cluster section (most) never needs them.
    from claude_bottle import kubernetes_settings, ssh

from claude_bottle import agents, egress
from claude_bottle import dlp as dlp_mod, secrets as secrets_mod
from claude_bottle.errors import ManifestError

MAX_BYTES = 1 << 20  # a manifest is a page of JSON; anything this large is a mistake or an attack
MAX_DEPTH = 16
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY_RE = re.compile(r"^[1-9][0-9]*[kmg]?$")
RUNTIMES = ("docker", "smolmachines", "kubernetes")

STATE_MODES = ("persist", "ephemeral")  # agent.state: keep the agent's home per bottle, or start clean
DEFAULT_MEMORY = "4g"
DEFAULT_PIDS = 1024
MIN_MEMORY = 6 << 20  # Docker's own minimum for --memory

# The bottle sets these itself; letting the manifest override them would undo the confinement.
RESERVED_ENV = frozenset(
    {
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "http_proxy", "https_proxy", "all_proxy", "no_proxy",
        "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE",
        "SSH_AUTH_SOCK",
    }
)

TOP_KEYS = ("version", "name", "runtime", "workspace", "agent", "egress", "resources", "ssh", "secrets", "kubernetes")
SSH_KEYS = ("agent", "known_hosts")
AGENT_KEYS = ("kind", "image", "command", "env", "state")
EGRESS_KEYS = ("allow", "trusted_ca", "network", "dlp")
DOCKER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RESOURCE_KEYS = ("memory", "pids", "cpus")


@dataclass(frozen=True)
class Agent:
    """The manifest's `agent` section, with the kind's defaults filled in."""

    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # sorted by name
    kind: str = agents.DEFAULT  # which agent (agents.KINDS): its defaults and credentials
    state: str = "persist"  # "persist": a per-bottle volume keeps the home; "ephemeral": a tmpfs


@dataclass(frozen=True)
class Resources:
    """The agent container's limits."""

    memory: str
    pids: int
    cpus: float | None


@dataclass(frozen=True)
class Manifest:
    """A manifest, loaded and checked: every later step reads this, never the JSON."""

    path: str  # absolute
    name: str
    runtime: str
    workspace: str | None  # absolute host directory, or None for no mount
    agent: Agent
    egress: egress.Egress
    trusted_ca: str | None  # PEM text of an extra CA the bundle trusts for upstream TLS
    resources: Resources
    egress_network: str | None = None  # an existing Docker network the bundle uses to reach out
    ssh: ssh.Settings | None = None  # the `ssh` section (agent forwarding, known_hosts), if any
    secrets: tuple[secrets_mod.Secret, ...] = ()  # names and sources; values are read only when starting
    secrets_opted_out: tuple[str, ...] = ()  # names set to null (turns off the implicit ANTHROPIC_API_KEY)
    dlp: dlp_mod.Dlp | None = None  # egress.dlp, when the manifest has one
    kubernetes: kubernetes_settings.Settings | None = None  # runtime "kubernetes": always set (defaults)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "name": self.name,
            "runtime": self.runtime,
            "workspace": self.workspace,
            "agent": {"kind": self.agent.kind, "image": self.agent.image, "command": list(self.agent.command),
                      "env": dict(self.agent.env), "state": self.agent.state},
            "egress": {
                "allow": list(dict.fromkeys(rule.normalized for rule in self.egress.rules)),
                "trusted_ca": self.trusted_ca is not None,
                "network": self.egress_network,
                **({"dlp": self.dlp.to_json()} if self.dlp else {}),
            },
            "resources": {"memory": self.resources.memory, "pids": self.resources.pids, "cpus": self.resources.cpus},
            **({"ssh": self.ssh.to_json()} if self.ssh else {}),
            **({"kubernetes": self.kubernetes.to_json()} if self.kubernetes else {}),
            **({"secrets": self._secrets_json()} if self.secrets or self.secrets_opted_out else {}),
        }

    def _secrets_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {s.name: s.to_json() for s in self.secrets}
        out.update(dict.fromkeys(self.secrets_opted_out))  # null: turned off (the implicit ANTHROPIC_API_KEY)
        return out


class _Reader:
    """Walks the parsed document, raising ManifestError with the field path on the first problem."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field: str, message: str) -> ManifestError:
        return ManifestError(self.path, field, message)

    def obj(self, value: Any, field: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field or "(top level)", f"must be an object, not {_kind(value)}")
        for key in value:
            if key not in known:
                close = _close(key, known)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
                raise self.fail(_join(field, key), f"unknown key{hint}")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, not {_kind(value)}")
        if "\x00" in value:
            raise self.fail(field, "must not contain a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: not text anyone can run
            raise self.fail(field, "must be valid Unicode (it holds a lone surrogate)") from None
        return value

    def nonempty(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        if not text.strip():
            raise self.fail(field, "must not be empty")
        return text

    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be a whole number, not {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(field, f"must be from {low} to {high}, not {value}")
        return value


def _close(word: str, known: tuple[str, ...]) -> list[str]:
    import difflib  # only on error paths: it is slow to import

    return difflib.get_close_matches(word, known, n=1)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _join(field: str, key: str) -> str:
    # Keys come from the file: quote any that could break the one-line error or mislead the reader.
    shown = key if key.isprintable() and key and not any(c in key for c in ". ") else repr(key)
    return f"{field}.{shown}" if field else shown


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_document(path: str) -> Any:
    """Read and parse the file, with errors for size, encoding, syntax and nesting."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise ManifestError(path, "", "is a directory, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ManifestError(path, "", f"is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(path, "", f"is not UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ManifestError(path, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise ManifestError(path, "", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ManifestError(path, "", f"is nested deeper than {MAX_DEPTH} levels") from None
    if _depth(document, MAX_DEPTH) > MAX_DEPTH:
        raise ManifestError(path, "", f"is nested deeper than {MAX_DEPTH} levels")
    return document


def load(path: str) -> Manifest:
    """Load a manifest file. Raises ManifestError (exit 2) for any bad input."""
    path = os.path.abspath(path)
    return parse(read_document(path), path)


def parse(document: Any, path: str) -> Manifest:
    r = _Reader(path)
    top = r.obj(document, "", TOP_KEYS)
    if "version" in top and (type(top["version"]) is not int or top["version"] != 1):
        raise r.fail("version", f"must be 1, not {json.dumps(top['version'])}")
    if "name" not in top:
        raise r.fail("name", "is required (a short slug such as \"my-project\")")
    name = r.string(top["name"], "name")
    if not NAME_RE.fullmatch(name):
        raise r.fail("name", f"{name!r} must be 1-40 of a-z, 0-9 and inner hyphens")
    runtime = r.string(top.get("runtime", "docker"), "runtime")
    if runtime not in RUNTIMES:
        close = _close(runtime, RUNTIMES)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise r.fail("runtime", f"must be one of {', '.join(RUNTIMES)}, not {runtime!r}{hint}")
    base = os.path.dirname(path)
    workspace = None
    if "workspace" in top:
        workspace = _existing(r, top["workspace"], "workspace", base, want_dir=True)
        if any(c in workspace for c in ",=:"):
            # docker's --mount is comma-separated key=value (a "," could add a second source=) and
            # smolvm's -v splits on ":"; quoting differs by tool, so such paths are refused outright.
            raise r.fail("workspace", f"{workspace!r} must not contain ',', '=' or ':'")
    section = r.obj(top.get("egress", {}), "egress", EGRESS_KEYS)
    rules, trusted_ca = _egress(r, section, base)
    egress_network = None
    if "network" in section:
        egress_network = r.nonempty(section["network"], "egress.network")
        if runtime != "docker":
            raise r.fail("egress.network", f"is only supported with runtime \"docker\", not {runtime!r}")
        if not DOCKER_NAME_RE.fullmatch(egress_network):
            raise r.fail("egress.network", f"{egress_network!r} is not a valid Docker network name")
    manifest = Manifest(
        path=path,
        name=name,
        runtime=runtime,
        workspace=workspace,
        agent=_agent(r, top.get("agent", {})),
        egress=egress.classify(rules),
        trusted_ca=trusted_ca,
        resources=_resources(r, top.get("resources", {})),
        egress_network=egress_network,
        ssh=_ssh(r, top["ssh"], base, runtime) if "ssh" in top else None,
        kubernetes=_kubernetes(r, top, runtime, rules),
    )
    return _secrets_and_dlp(r, top, section, base, manifest)


def _existing(r: _Reader, value: Any, field: str, base: str, want_dir: bool) -> str:
    text = r.nonempty(value, field)
    full = os.path.normpath(os.path.join(base, os.path.expanduser(text)))
    if want_dir and not os.path.isdir(full):
        raise r.fail(field, f"{full!r} is not an existing directory")
    if not want_dir and not os.path.isfile(full):
        raise r.fail(field, f"{full!r} is not an existing file")
    return full


def _agent(r: _Reader, value: Any) -> Agent:
    agent = r.obj(value, "agent", AGENT_KEYS)
    kind_name = r.nonempty(agent.get("kind", agents.DEFAULT), "agent.kind")
    if kind_name not in agents.KINDS:
        raise r.fail("agent.kind", f"must be one of {', '.join(agents.KINDS)}, not {kind_name!r}")
    kind = agents.KINDS[kind_name]
    state = r.nonempty(agent.get("state", "persist"), "agent.state")
    if state not in STATE_MODES:
        raise r.fail("agent.state", f"must be one of {', '.join(STATE_MODES)}, not {state!r}")
    image = r.nonempty(agent.get("image", kind.image), "agent.image")
    if any(c.isspace() for c in image):
        raise r.fail("agent.image", f"{image!r} must not contain spaces")
    command = kind.command
    if "command" in agent:
        raw = agent["command"]
        if not isinstance(raw, list) or not raw:
            raise r.fail("agent.command", "must be a non-empty list of strings")
        command = tuple(r.nonempty(arg, f"agent.command[{i}]") for i, arg in enumerate(raw))
    env_raw = agent.get("env", {})
    if not isinstance(env_raw, dict):
        raise r.fail("agent.env", f"must be an object, not {_kind(env_raw)}")
    env: list[tuple[str, str]] = []
    for key, val in env_raw.items():
        field = _join("agent.env", key)
        if not ENV_NAME_RE.fullmatch(key):
            raise r.fail(field, "is not a valid variable name (letters, digits, _; not starting with a digit)")
        if key in RESERVED_ENV:
            raise r.fail(field, "is set by claude-bottle itself and cannot be overridden")
        env.append((key, r.string(val, field)))
    return Agent(image=image, command=command, env=tuple(sorted(env)), kind=kind_name, state=state)


def _egress(r: _Reader, section: dict[str, Any], base: str) -> tuple[tuple[egress.Rule, ...], str | None]:
    allow = section.get("allow", [])
    if not isinstance(allow, list):
        raise r.fail("egress.allow", f"must be a list of rules, not {_kind(allow)}")
    rules = egress.expand(allow, lambda i, msg: r.fail(f"egress.allow[{i}]", msg))
    trusted_ca = None
    if "trusted_ca" in section:
        ca_path = _existing(r, section["trusted_ca"], "egress.trusted_ca", base, want_dir=False)
        try:
            with open(ca_path, encoding="ascii") as handle:
                trusted_ca = handle.read(MAX_BYTES)
        except (OSError, UnicodeDecodeError) as exc:
            raise r.fail("egress.trusted_ca", f"cannot read {ca_path}: {exc}") from None
        if "-----BEGIN CERTIFICATE-----" not in trusted_ca or "PRIVATE KEY" in trusted_ca:
            raise r.fail("egress.trusted_ca", f"{ca_path} must hold PEM certificates and no private key")
    return rules, trusted_ca


def _resources(r: _Reader, value: Any) -> Resources:
    section = r.obj(value, "resources", RESOURCE_KEYS)
    memory = r.string(section.get("memory", DEFAULT_MEMORY), "resources.memory").lower()
    if not MEMORY_RE.fullmatch(memory):
        raise r.fail("resources.memory", f"{memory!r} must be a size such as \"512m\" or \"4g\"")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(memory[-1], 1)
    if int(memory.rstrip("kmg")) * scale < MIN_MEMORY:  # Docker refuses less, after networks exist
        raise r.fail("resources.memory", f"{memory!r} is below the 6m Docker requires")
    pids = r.integer(section.get("pids", DEFAULT_PIDS), "resources.pids", 16, 1 << 20)
    cpus = section.get("cpus")
    if cpus is not None:
        most = os.cpu_count() or 1
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0.01 <= cpus <= most:
            # Docker refuses more CPUs than the host has, and would do so only after networks exist.
            raise r.fail("resources.cpus", f"must be a number of CPUs from 0.01 to {most} (this host's count)")
        cpus = float(cpus)
    return Resources(memory=memory, pids=pids, cpus=cpus)


def _kubernetes(r: _Reader, top: dict[str, Any], runtime: str, rules: list[str]
                ) -> kubernetes_settings.Settings | None:
    if runtime != "kubernetes" and "kubernetes" not in top:
        return None
    from claude_bottle import kubernetes_settings

    return kubernetes_settings.from_top(r, top, runtime, egress.classify(rules))


def _ssh(r: _Reader, value: Any, base: str, runtime: str) -> ssh.Settings:
    """The `ssh` section: how the agent authenticates (a forwarded agent or nothing) and its known_hosts."""
    from claude_bottle import ssh

    section = r.obj(value, "ssh", SSH_KEYS)
    if runtime != "docker":
        raise r.fail("ssh", f"is not supported with runtime {runtime!r} yet (only \"docker\")")
    agent = r.string(section.get("agent", "none"), "ssh.agent")
    if agent not in ssh.AGENT_MODES:
        raise r.fail("ssh.agent", f"must be one of {', '.join(ssh.AGENT_MODES)}, not {agent!r}")
    if "known_hosts" not in section:
        return ssh.Settings(agent=agent)
    path = _existing(r, section["known_hosts"], "ssh.known_hosts", base, want_dir=False)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise r.fail("ssh.known_hosts", f"{path} is larger than {MAX_BYTES // 1024} KiB")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise r.fail("ssh.known_hosts", f"cannot read {path}: {exc}") from None
    try:
        ssh.parse_known_hosts(text)
    except ValueError as exc:
        raise r.fail("ssh.known_hosts", f"{path}: {exc}") from None
    return ssh.Settings(agent=agent, known_hosts=text, known_hosts_path=path)


def _secrets_and_dlp(r: _Reader, top: dict[str, Any], section: dict[str, Any], base: str,
                     manifest: Manifest) -> Manifest:
    """`secrets` and `egress.dlp`: both are checked against the classified allowlist."""
    import dataclasses

    found: tuple[secrets_mod.Secret, ...] = ()
    opted_out: tuple[str, ...] = ()
    if "secrets" in top:
        env_names = tuple(k for k, _ in manifest.agent.env)
        found, opted_out = secrets_mod.parse(r, top["secrets"], base, manifest.egress, RESERVED_ENV, env_names)
    dlp = dlp_mod.parse(r, section["dlp"], manifest.egress) if "dlp" in section else None
    return dataclasses.replace(manifest, secrets=found, secrets_opted_out=opted_out, dlp=dlp)
