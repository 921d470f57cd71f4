"""SSH from the bottle: the agent's ssh client configuration, its known_hosts, and agent forwarding.

The bottle has no route out, so every SSH connection goes through the bundle: the agent's ssh runs
`ProxyCommand /etc/claude-bottle/bottle-connect %h %p` (claude_bottle/agent/bottle_connect.py), which
opens an HTTP CONNECT tunnel through mitmdump's port gate (and pipelock). Only the host:port pairs that
`ssh://HOST[:PORT]` rules name get through; anything else gets the bundle's 403.

Keys never enter the bottle: the manifest's `ssh.agent` is "none" (the default) or "forward" (the
host's $SSH_AUTH_SOCK is bind-mounted). Host keys are checked strictly against `ssh.known_hosts`.

Everything here is pure except check_agent_socket (a stat) and helper_source (reads a package file).
"""

from __future__ import annotations

import binascii
import os
import re
import stat
from dataclasses import dataclass

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from claude_bottle.egress import Egress

AGENT_MODES = ("none", "forward")
# Inside the agent container.
HELPER_PATH = "/etc/claude-bottle/bottle-connect"
CONFIG_PATH = "/etc/claude-bottle/ssh_config"
KNOWN_HOSTS_PATH = "/etc/claude-bottle/known_hosts"
# Debian's (and most distributions') /etc/ssh/ssh_config starts with `Include /etc/ssh/ssh_config.d/*.conf`,
# and the first value set wins, so this file's settings beat the rest of the system config.
SYSTEM_DROP_IN = "/etc/ssh/ssh_config.d/claude-bottle.conf"
AGENT_SOCKET = "/run/claude-bottle/ssh-agent.sock"
HELPER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent", "bottle_connect.py")
# Public key algorithms a known_hosts line may name (the CA key of @cert-authority lines included).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519", "ssh-rsa", "ssh-dss",
        "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MARKERS = ("@cert-authority", "@revoked")


@dataclass(frozen=True)
class Settings:
    """The manifest's `ssh` section."""

    agent: str = "none"  # "none" or "forward"
    known_hosts: str | None = None  # the file's text, validated
    known_hosts_path: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"agent": self.agent, "known_hosts": self.known_hosts_path}


@dataclass(frozen=True)
class SshPlan:
    """What the agent container gets for SSH. Present when a rule is ssh:// or the manifest has `ssh`."""

    targets: tuple[tuple[str, int], ...]  # (host, port) of every ssh:// rule
    agent: str
    agent_socket: str | None  # the host's socket to bind-mount (None until resolved, or agent "none")
    known_hosts: str  # seeded into the bottle; empty means every host key is refused
    unknown: tuple[str, ...]  # targets known_hosts has no key for: ssh will refuse them
    config: str  # /etc/claude-bottle/ssh_config

    def to_json(self) -> dict[str, object]:
        forwarded = self.agent == "forward"
        return {
            "targets": [authority(h, p) for h, p in self.targets],
            "agent": self.agent,
            "agent_socket": (self.agent_socket or "$SSH_AUTH_SOCK") if forwarded else None,
            "agent_socket_in_bottle": AGENT_SOCKET if forwarded else None,
            "known_hosts": {"keys": len(parse_known_hosts(self.known_hosts)) if self.known_hosts else 0,
                            "missing": list(self.unknown)},
            "config": self.config,
        }


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def known_hosts_name(host: str, port: int) -> str:
    """How ssh looks a host up in known_hosts: `host` on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_known_hosts(text: str) -> tuple[tuple[str | None, tuple[str, ...], str], ...]:
    """Every host key line as (marker, patterns, key type); ValueError naming the line for anything else.

    marker is "@cert-authority", "@revoked" or None; patterns are as written: names, [name]:port,
    wildcards, !negations and |1|hashes.
    """
    if "PRIVATE KEY" in text:
        raise ValueError("holds a private key; give only public host keys (ssh-keyscan output)")
    keys: list[tuple[str | None, tuple[str, ...], str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if any(not (c.isprintable() or c == "\t") for c in line):
            raise ValueError(f"line {number}: holds control characters")
        marker = None
        if fields[0].startswith("@"):
            if fields[0] not in MARKERS:
                raise ValueError(f"line {number}: unknown marker {fields[0]!r} (known: {', '.join(MARKERS)})")
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            raise ValueError(f"line {number}: expected `HOSTS KEYTYPE BASE64KEY [COMMENT]`")
        patterns, key_type, blob = fields[0], fields[1], fields[2]
        if key_type not in KEY_TYPES:
            raise ValueError(f"line {number}: unknown key type {key_type[:40]!r}")
        try:
            raw = binascii.a2b_base64(blob.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError(f"line {number}: the key is not base64") from None
        # The blob starts with the key type as an SSH string: uint32 length, then the name.
        size = int.from_bytes(raw[:4], "big")
        if raw[4 : 4 + size] != key_type.encode():
            raise ValueError(f"line {number}: the key's contents do not match its type {key_type}")
        keys.append((marker, tuple(patterns.split(",")), key_type))
    if not keys:
        raise ValueError("holds no host keys")
    return tuple(keys)


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):  # hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        import hashlib
        import hmac

        try:
            salt, digest = (binascii.a2b_base64(p) for p in pattern[3:].split("|", 1))
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    # ssh's wildcards are * and ? only ("[host]:port" is literal), and host names are case-insensitive.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower()) is not None


def is_known(keys: tuple[tuple[str | None, tuple[str, ...], str], ...], host: str, port: int) -> bool:
    """Whether ssh would find a key (or a CA) for host:port: a positive pattern matches, no negated one."""
    name = known_hosts_name(host, port)
    for marker, patterns, _ in keys:
        if marker == "@revoked":
            continue
        positive = any(_pattern_matches(p, name) for p in patterns if not p.startswith("!"))
        negative = any(_pattern_matches(p[1:], name) for p in patterns if p.startswith("!"))
        if positive and not negative:
            return True
    return False


def targets(egress: Egress) -> tuple[tuple[str, int], ...]:
    return tuple(sorted({(r.host, r.ports[0]) for r in egress.rules if r.kind == "ssh"}))


def client_config(agent: str) -> str:
    """The agent's ssh settings: every host through the bundle, host keys checked strictly."""
    lines = [
        "# claude-bottle: written by the launcher; the bottle's only way out is the bundle, so every",
        "# SSH connection is tunnelled through it (HTTP CONNECT). Hosts and ports that no ssh:// rule",
        "# names are refused by the bundle (403).",
        "Host *",
        f"    ProxyCommand {HELPER_PATH} %h %p",
        "    StrictHostKeyChecking yes",
        f"    UserKnownHostsFile {KNOWN_HOSTS_PATH}",
        "    UpdateHostKeys no",
        "    CheckHostIP no",
        "    ForwardAgent no",
        "    ForwardX11 no",
        "    ServerAliveInterval 60",
    ]
    if agent == "forward":
        lines.append(f"    IdentityAgent {AGENT_SOCKET}")
    return "\n".join(lines) + "\n"


def plan(egress: Egress, settings: Settings | None, agent_socket: str | None = None) -> SshPlan | None:
    """The SSH part of a Docker plan, or None when the manifest has no ssh:// rule and no `ssh` section."""
    found = targets(egress)
    if not found and settings is None:
        return None
    settings = settings or Settings()
    text = settings.known_hosts or ""
    keys = parse_known_hosts(text) if text else ()
    unknown = tuple(authority(h, p) for h, p in found if not is_known(keys, h, p))
    return SshPlan(
        targets=found,
        agent=settings.agent,
        agent_socket=agent_socket if settings.agent == "forward" else None,
        known_hosts=text,
        unknown=unknown,
        config=client_config(settings.agent),
    )


def helper_source() -> bytes:
    with open(HELPER_SOURCE, "rb") as handle:
        return handle.read()


def agent_files(ssh: SshPlan, helper: bytes) -> dict[str, tuple[bytes, int]]:
    """{path without the leading /: (content, mode)} for the agent's tar; all root-owned, read-only."""
    return {
        HELPER_PATH.lstrip("/"): (helper, 0o555),
        CONFIG_PATH.lstrip("/"): (ssh.config.encode(), 0o444),
        KNOWN_HOSTS_PATH.lstrip("/"): (ssh.known_hosts.encode(), 0o444),
        SYSTEM_DROP_IN.lstrip("/"): (f"# claude-bottle\nInclude {CONFIG_PATH}\n".encode(), 0o444),
    }


def passwd_with_user(passwd: str, uid: int, gid: int, name: str, home: str) -> str | None:
    """/etc/passwd with an entry for `uid` added, or None when it has one already.

    ssh refuses to run for a uid with no passwd entry ("No user exists for uid N"), and the agent runs
    as the launching user's uid, which the image rarely knows.
    """
    names = set()
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3:
            if fields[2] == str(uid):
                return None
            names.add(fields[0])
    candidates = [name] if re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name) else []
    candidates += ["bottle"] + [f"bottle{n}" for n in range(2, len(names) + 3)]
    name = next(c for c in candidates if c not in names)
    entry = f"{name}:x:{uid}:{gid}:claude-bottle agent:{home}:/bin/sh\n"
    return passwd + ("" if not passwd or passwd.endswith("\n") else "\n") + entry


def check_agent_socket(path: str | None, agent_uid: int) -> str:
    """The host's SSH agent socket to forward, or ValueError saying what is wrong with it."""
    if not path:
        raise ValueError("is \"forward\" but SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); "
                         "ssh-add) or set \"agent\": \"none\"")
    path = os.path.abspath(path)
    if "," in path or "=" in path:  # `docker create --mount type=bind,source=...` splits on them
        raise ValueError(f"SSH_AUTH_SOCK={path} holds ',' or '=', which a Docker bind mount cannot take; "
                         "start an agent with a plainer socket path (ssh-agent -a PATH)")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError(f"SSH_AUTH_SOCK={path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ValueError(f"SSH_AUTH_SOCK={path} is not a socket")
    if info.st_uid != agent_uid:
        # ssh-agent serves only its own uid (and root); the agent runs as agent_uid.
        raise ValueError(
            f"SSH_AUTH_SOCK={path} belongs to uid {info.st_uid}, but the agent runs as uid {agent_uid} and "
            f"ssh-agent answers only its own user; run claude-bottle as the socket's owner, or start an "
            f"agent as uid {agent_uid} (setpriv --reuid={agent_uid} --regid={agent_uid} --clear-groups "
            f"ssh-agent -a PATH) and ssh-add to it"
        )
    return path
