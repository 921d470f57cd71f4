"""Pure helpers for the smolmachines runtime: smolvm argv, version classes, VM names, host subnets.

Nothing here runs anything; smolvm.py runs what this builds. Flag spellings follow smolvm's clap
definitions (src/cli/machine.rs, src/cli/pack.rs): `machine create NAME`, `--name` on start/stop/exec,
`machine delete NAME -f`, `machine ls --json`, `pack create --image IMG -o PATH`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass

from claude_bottle.manifest import Resources

SMOLVM = "smolvm"
ARTIFACT_SUFFIX = ".smolmachine"  # `pack create -o P` writes P (launcher) and P.smolmachine (the artifact)
UNSAFE_FLAG = "--unsafe-allow-smolvm-egress-defects"
_VERSION_RE = re.compile(r"\b(\d+)\.(\d+)\.(\d+)\b")
# plan.build names the VM f"claude-bottle-{name}-{session}-vm"; session ids are 8 hex digits.
_VM_RE = re.compile(r"^claude-bottle-(?P<bottle>[a-z0-9][a-z0-9-]*)-(?P<session>[0-9a-f]{8})-vm$")


@dataclass(frozen=True)
class Defect:
    fixed_in: tuple[int, int, int]
    what: str


# From smolvm's own history (see README): a version below `fixed_in` has the defect.
EGRESS_DEFECTS = (
    Defect((1, 1, 3), "the TSI network allowlist (allow_cidrs) is not enforced, so the agent could reach "
                      "any address, not only the bundle (fixed by smolvm PR #427)"),
    Defect((1, 3, 3), "the guest can reach the host's loopback and private addresses through TSI "
                      "(default blocks added by smolvm PR #510)"),
)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`smolvm 1.4.0` (clap's --version line) -> (1, 4, 0); None when no X.Y.Z is present."""
    match = _VERSION_RE.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def defects(version: tuple[int, int, int]) -> list[str]:
    return [d.what for d in EGRESS_DEFECTS if version < d.fixed_in]


def version_str(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def version() -> list[str]:
    return [SMOLVM, "--version"]


def pack_create(image: str, output: str) -> list[str]:
    """Writes `output` and `output.smolmachine`; never pass the suffix yourself."""
    return [SMOLVM, "pack", "create", "--image", image, "-o", output]


def memory_mib(memory: str) -> int:
    """A manifest memory string ("4g", "512m", "1048576k", bytes) in MiB, at least 1."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    scale = units.get(memory[-1].lower(), 1)
    number = int(memory[:-1] if memory[-1].lower() in units else memory)
    return max(1, number * scale >> 20)


def machine_create(
    name: str, artifact: str, smolfile: str, volumes: list[str], resources: Resources
) -> list[str]:
    argv = [SMOLVM, "machine", "create", name, "--from", artifact, "--smolfile", smolfile]
    argv += ["--mem", str(memory_mib(resources.memory))]
    if resources.cpus:
        argv += ["--cpus", str(max(1, math.ceil(resources.cpus)))]
    for volume in volumes:
        argv += ["-v", volume]
    return argv


def machine_start(name: str) -> list[str]:
    return [SMOLVM, "machine", "start", "--name", name]


def machine_exec(name: str, command: tuple[str, ...], *, tty: bool, workdir: str | None) -> list[str]:
    argv = [SMOLVM, "machine", "exec", "--name", name, "-i"]
    if tty:
        argv.append("-t")
    if workdir:
        argv += ["-w", workdir]
    return argv + ["--", *command]


def machine_stop(name: str) -> list[str]:
    return [SMOLVM, "machine", "stop", "--name", name]


def machine_delete(name: str) -> list[str]:
    return [SMOLVM, "machine", "delete", name, "-f"]


def machine_ls() -> list[str]:
    return [SMOLVM, "machine", "ls", "--json"]


@dataclass(frozen=True)
class Vm:
    name: str
    bottle: str
    session: str
    state: str


def parse_machine_ls(text: str) -> list[Vm]:
    """Our VMs in `machine ls --json` output (a JSON list of {"name", "state", ...}); others are ignored."""
    vms = []
    for entry in json.loads(text or "[]"):
        match = _VM_RE.match(str(entry.get("name", ""))) if isinstance(entry, dict) else None
        if match:
            vms.append(Vm(match[0], match["bottle"], match["session"], str(entry.get("state", ""))))
    return vms


# ---- subnets already in use on the host (docker networks and routes), for plan.build(taken_subnets=)


def ip_routes() -> list[str]:
    return ["ip", "-j", "route", "show", "table", "all"]


def _cidr(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def parse_subnet_words(text: str) -> list[str]:
    return [c for c in (_cidr(w) for w in text.split()) if c]


def parse_ip_json_routes(text: str) -> list[str]:
    """`ip -j route` output: destinations other than `default` (host routes have no /len)."""
    out = []
    for route in json.loads(text or "[]"):
        dst = route.get("dst", "") if isinstance(route, dict) else ""
        cidr = _cidr(dst) if dst and dst != "default" else None
        if cidr and cidr != "0.0.0.0/0":
            out.append(cidr)
    return out


def parse_proc_net_route(text: str) -> list[str]:
    """/proc/net/route: little-endian hex Destination and Mask columns; skips the default route."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
            mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
        except ValueError:
            continue
        if int(mask) == 0:
            continue
        out.append(str(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)))
    return out


def parse_netstat_routes(text: str) -> list[str]:
    """macOS `netstat -rn -f inet`: destinations like 192.168.64/24, 10/8, 192.168.1.5."""
    out = []
    for line in text.splitlines():
        dest = line.split()[0] if line.split() else ""
        if not dest[:1].isdigit():
            continue
        addr, _, bits = dest.partition("/")
        octets = addr.split(".")
        if not all(o.isdigit() for o in octets) or len(octets) > 4:
            continue
        prefix = bits if bits.isdigit() else str(8 * len(octets))
        cidr = _cidr(".".join(octets + ["0"] * (4 - len(octets))) + "/" + prefix)
        if cidr and cidr != "0.0.0.0/0":
            out.append(cidr)
    return out
