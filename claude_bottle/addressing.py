"""Pinned bundle addresses for the smolmachines runtime.

Under TSI the microVM's sockets are opened by the host process, so the guest reaches the bundle at
its Docker IP; the VM's only allowed CIDR is that one address, so it must be known before start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from claude_bottle.digest import sha256

# 192.168.17.x is skipped: it is a common collision with home routers and VPNs.
SKIPPED_THIRD_OCTETS = frozenset({17})


def _candidates(slug: str) -> Iterable[int]:
    start = int.from_bytes(sha256(slug.encode()).digest()[:4], "big") % 256
    for offset in range(256):
        n = (start + offset) % 256
        if n not in SKIPPED_THIRD_OCTETS:
            yield n


def _triple(n: int) -> tuple[str, str, str]:
    return f"192.168.{n}.0/24", f"192.168.{n}.1", f"192.168.{n}.2"


def smolmachines_bundle_subnet(slug: str) -> tuple[str, str, str]:
    """(subnet, gateway, bundle_ip) for a slug: stable, spread by a hash, never 192.168.17.0/24."""
    return _triple(next(iter(_candidates(slug))))


def first_free_subnet(slug: str, taken: Iterable[str]) -> tuple[str, str, str]:
    """The slug's subnet, or the next one that overlaps nothing in `taken` (CIDRs of networks/routes)."""
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    for n in _candidates(slug):
        subnet, gateway, ip = _triple(n)
        net = ipaddress.ip_network(subnet)
        if not any(net.version == u.version and net.overlaps(u) for u in used):
            return subnet, gateway, ip
    raise ValueError("every 192.168.N.0/24 is taken on this host")
