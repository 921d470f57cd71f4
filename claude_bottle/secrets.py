"""Secrets the agent never holds: the manifest's `secrets`, their per-session placeholders, their values.

The manifest and the plan carry names, sources and placeholders, never values. The executor reads the
values (`resolve`) right before it creates anything, and they go to the bundle alone, as a file in the
`docker cp` tar on stdin: never on an argv, never in any container's environment, never in a host file.
The agent sees `NAME=<placeholder>`; the bundle's addon swaps the placeholder for the value in one
header of requests to the secret's hosts, over HTTPS only, and refuses it anywhere else.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

TYPE_CHECKING = False  # typing costs a few ms at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

from claude_bottle import agents, egress as egress_mod
from claude_bottle.bundle import shared
from claude_bottle.digest import sha256
from claude_bottle.errors import ManifestError

PLACEHOLDER_PREFIX = shared.PLACEHOLDER_PREFIX
KEYS = ("from_env", "from_file", "inject")
INJECT_KEYS = ("hosts", "header")
MAX_FILE_BYTES = 64 * 1024  # a credential, not a document
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # an RFC 9110 token
# Headers the HTTP framing or the proxy owns: a credential there would be dropped or break the request.
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                             "te", "trailer", "expect", "proxy-authorization", "proxy-connection"})
# Set by the plan itself, so a secret can't take their names.
PLAN_ENV = frozenset({"HOME", "CLAUDE_BOTTLE", "CLAUDE_BOTTLE_SESSION"})


@dataclass(frozen=True)
class Secret:
    """A secret as the manifest names it: where its value comes from and where it may go, never the value."""

    name: str  # the variable the agent sees (holding the placeholder)
    source: str  # "env" or "file"
    ref: str  # the host variable's name, or the file's absolute path
    hosts: tuple[str, ...]  # exact hosts, normalised and sorted
    header: str  # lower case
    implicit: bool = False  # added by claude-bottle (the agent's own credentials), not written in the manifest

    @property
    def field(self) -> str:
        """Where the error message points: the manifest field, or what stood in for it."""
        if self.implicit:
            return f"secrets.{self.name} (implicit, from the host's ${self.ref})"
        return f"secrets.{self.name}.from_{self.source}"

    def to_json(self) -> dict[str, Any]:
        return {f"from_{self.source}": self.ref, "inject": {"hosts": list(self.hosts), "header": self.header}}


@dataclass(frozen=True)
class Planned:
    """One secret in a plan: the source and this session's placeholder, never the value."""

    secret: Secret
    placeholder: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.secret.name, "placeholder": self.placeholder, **self.secret.to_json(),
                "implicit": self.secret.implicit}

    def policy_json(self) -> dict[str, Any]:
        """What the bundle's addon needs (policy.json): still no value."""
        s = self.secret
        return {"name": s.name, "placeholder": self.placeholder, "hosts": list(s.hosts), "header": s.header}


def covered(egress: egress_mod.Egress, host: str) -> bool:
    """Whether some egress rule lets the agent reach `host` at all (a wildcard covers its apex too)."""
    for gate in egress.port_gates:
        if gate.host == host or (gate.wildcard and host.endswith("." + gate.host)):
            return True
    return False


def parse(r: Any, value: Any, base: str, egress: egress_mod.Egress, reserved: frozenset[str],
          agent_env: tuple[str, ...]) -> tuple[tuple[Secret, ...], tuple[str, ...]]:
    """The `secrets` section: (secrets, names set to null). `r` is the manifest's field-aware reader."""
    if not isinstance(value, dict):
        raise r.fail("secrets", "must be an object of NAME: {from_env | from_file, inject}")
    found: list[Secret] = []
    opted_out: list[str] = []
    for name, spec in value.items():
        field = f"secrets.{name}" if ENV_NAME_RE.fullmatch(name) else f"secrets.{name!r}"
        if not ENV_NAME_RE.fullmatch(name):
            raise r.fail(field, "is not a valid variable name (letters, digits, _; not starting with a digit)")
        if name in reserved or name in PLAN_ENV:
            raise r.fail(field, "is set by claude-bottle itself and cannot be a secret")
        if name in agent_env:
            raise r.fail(field, f"is also set in agent.env; a secret gives the agent {name} itself")
        if spec is None:
            opted_out.append(name)  # "no such secret": how ANTHROPIC_API_KEY's implicit default is turned off
            continue
        section = r.obj(spec, field, KEYS)
        sources = [k for k in ("from_env", "from_file") if k in section]
        if len(sources) != 1:
            raise r.fail(field, "needs exactly one of from_env (a host variable) or from_file (a path)")
        if sources == ["from_env"]:
            ref = r.nonempty(section["from_env"], f"{field}.from_env")
            if not ENV_NAME_RE.fullmatch(ref):
                raise r.fail(f"{field}.from_env", f"{ref!r} is not a valid variable name")
        else:
            text = r.nonempty(section["from_file"], f"{field}.from_file")
            ref = os.path.normpath(os.path.join(base, os.path.expanduser(text)))
        if "inject" not in section:
            raise r.fail(f"{field}.inject", "is required: {\"hosts\": [HOST, ...], \"header\": NAME}")
        hosts, header = _inject(r, section["inject"], f"{field}.inject", egress)
        found.append(Secret(name, sources[0].removeprefix("from_"), ref, hosts, header))
    return tuple(found), tuple(opted_out)


def _inject(r: Any, value: Any, field: str, egress: egress_mod.Egress) -> tuple[tuple[str, ...], str]:
    section = r.obj(value, field, INJECT_KEYS)
    raw_hosts = section.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise r.fail(f"{field}.hosts", "must be a non-empty list of hosts")
    hosts: list[str] = []
    for i, item in enumerate(raw_hosts):
        where = f"{field}.hosts[{i}]"
        text = r.nonempty(item, where)
        if "*" in text:
            raise r.fail(where, "name hosts one by one: a wildcard would hand the secret to every subdomain")
        try:
            host = egress_mod.parse_host(text)
        except egress_mod.RuleError as exc:
            raise r.fail(where, str(exc)) from None
        if not covered(egress, host):
            raise r.fail(where, f"{host} is not reachable: add it to egress.allow")
        hosts.append(host)
    if "header" not in section:
        raise r.fail(f"{field}.header", "is required (the header the value goes in, such as \"authorization\")")
    header = r.nonempty(section["header"], f"{field}.header")
    if not HEADER_RE.fullmatch(header):
        raise r.fail(f"{field}.header", f"{header!r} is not an HTTP header name")
    if header.lower() in FRAMING_HEADERS:
        raise r.fail(f"{field}.header", f"{header!r} belongs to HTTP framing or the proxy; it can't carry a secret")
    return tuple(sorted(set(hosts))), header.lower()


def with_default(found: tuple[Secret, ...], opted_out: tuple[str, ...], agent_env: tuple[str, ...],
                 egress: egress_mod.Egress, environ: Mapping[str, str],
                 credentials: tuple[agents.Credential, ...] = agents.KINDS[agents.DEFAULT].credentials,
                 ) -> tuple[Secret, ...]:
    """Add the agent's own credentials (agents.py) that the host has, whose API is allowed, and that the
    manifest says nothing of: a placeholder for the agent, the value injected for that API only."""
    named = {s.name for s in found} | set(opted_out) | set(agent_env)
    extra = tuple(Secret(c.env, "env", c.env, (c.host,), c.header, implicit=True) for c in credentials
                  if c.env not in named and environ.get(c.env) and covered(egress, c.host))
    return found + extra


def placeholder(seed: str, name: str) -> str:
    """Per session and recognisable; derived from the session's random seed (an input of the plan, so
    the plan stays a pure function of its inputs), never from anything visible such as the session id."""
    digest = sha256(f"claude-bottle\0{seed}\0{name}".encode()).hexdigest()[:32]
    return f"{PLACEHOLDER_PREFIX}{name}-{digest}"


def plan(secrets: tuple[Secret, ...], session: str) -> tuple[Planned, ...]:
    return tuple(Planned(s, placeholder(session, s.name)) for s in sorted(secrets, key=lambda s: s.name))


def resolve(planned: tuple[Planned, ...], manifest_path: str) -> dict[str, str]:
    """{name: value}, read now. A missing variable or unreadable file is a ManifestError (exit 2) that
    names the field; no message ever quotes a value."""
    values: dict[str, str] = {}
    for p in planned:
        s = p.secret
        if s.source == "env":
            value = os.environ.get(s.ref, "")
            if not value:
                raise ManifestError(manifest_path, s.field, f"the host variable {s.ref} is not set (or is empty)")
        else:
            value = _read_file(s, manifest_path)
        if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
            raise ManifestError(manifest_path, s.field, "the value holds a line break or control character, "
                                                        "which no HTTP header can carry")
        values[s.name] = value
    return values


def _read_file(s: Secret, manifest_path: str) -> str:
    try:
        with open(s.ref, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ManifestError(manifest_path, s.field, f"cannot read {s.ref}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ManifestError(manifest_path, s.field, f"{s.ref} is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ManifestError(manifest_path, s.field, f"{s.ref} is not UTF-8 text") from None
    if not value:
        raise ManifestError(manifest_path, s.field, f"{s.ref} is empty")
    return value


def values_file(values: dict[str, str]) -> bytes:
    """/etc/claude-bottle/secrets.json in the bundle (mode 0400, owned by the bundle's user)."""
    return (json.dumps({"version": 1, "values": values}, sort_keys=True) + "\n").encode("utf-8")
