"""The session's NetworkPolicies: what the Docker runtime's networks say, in a cluster. Pure.

  agent   ingress: nothing (no rule at all, so no pod, node or Service reaches it)
          egress:  the bundle pod's port 8080, and nothing else: no DNS, no API server, no node
  bundle  ingress: the agent, on 8080 only
          egress:  DNS to the cluster's resolver; the rules' ports anywhere except the cluster's own
                   ranges; a private address only where a rule names it (its /32 or /128, its ports)

A NetworkPolicy is only as real as the CNI plugin that enforces it (Calico, Cilium, Antrea,
kube-router, kube-network-policies; flannel alone enforces nothing): the README says which.
Selectors match the pods by session and role, so two sessions never open anything to each other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_bottle.kubernetes_settings import Settings
    from claude_bottle.plan import Plan

from claude_bottle.plan import PROXY_PORT

API = "networking.k8s.io/v1"
# CoreDNS keeps kube-dns's label, so this selector finds the resolver on kubeadm, EKS, GKE, AKS and kind.
DNS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def _ports(ports: set[int] | tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in sorted(ports)]


def _egress_gates(plan: Plan) -> list[dict[str, Any]]:
    """The classified egress, as port_gates of {host, wildcard, ports}."""
    import json

    return list(json.loads(plan.egress_json)["port_gates"])


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def bundle_egress(plan: Plan, settings: Settings) -> list[dict[str, Any]]:
    """The bundle's egress rules. pipelock and the addon check hosts and ports again; this layer keeps
    the bundle itself (whatever runs in it) off the cluster's pods, Services, nodes and metadata."""
    inside = [ipaddress.ip_network(c) for c in settings.cluster_cidrs]
    rules: list[dict[str, Any]] = [{"to": [DNS_PEER], "ports": DNS_PORTS}]
    public: set[int] = set()
    named: dict[str, set[int]] = {}
    for gate in _egress_gates(plan):
        ip = None if gate["wildcard"] else _literal(gate["host"])
        if ip is not None and any(ip.version == n.version and ip in n for n in inside):
            # A rule names an address in a cluster range: open that address alone, on its ports.
            named.setdefault(f"{ip.compressed}/{ip.max_prefixlen}", set()).update(gate["ports"])
        else:
            public.update(gate["ports"])
    if public:
        peers = []
        for version, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
            excepted = sorted(n.compressed for n in inside if n.version == version)
            peers.append({"ipBlock": {"cidr": everything, **({"except": excepted} if excepted else {})}})
        rules.append({"to": peers, "ports": _ports(public)})
    for cidr in sorted(named):
        rules.append({"to": [{"ipBlock": {"cidr": cidr}}], "ports": _ports(named[cidr])})
    return rules


def policies(plan: Plan, settings: Settings, p: str, meta: Callable[[str, str], dict[str, Any]],
             selector: Callable[[Plan, str], dict[str, str]]) -> list[dict[str, Any]]:
    """Both policies, named after the session's prefix `p`; `meta(name, role)` and `selector(plan,
    role)` are kubernetes.py's, passed in so this module needs nothing back from it."""
    proxy = _ports((PROXY_PORT,))
    agent = {
        "apiVersion": API, "kind": "NetworkPolicy", "metadata": meta(f"{p}-agent", "policy"),
        "spec": {"podSelector": {"matchLabels": selector(plan, "agent")}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [],
                 "egress": [{"to": [{"podSelector": {"matchLabels": selector(plan, "bundle")}}], "ports": proxy}]},
    }
    bundle = {
        "apiVersion": API, "kind": "NetworkPolicy", "metadata": meta(f"{p}-bundle", "policy"),
        "spec": {"podSelector": {"matchLabels": selector(plan, "bundle")}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": selector(plan, "agent")}}], "ports": proxy}],
                 "egress": bundle_egress(plan, settings)},
    }
    return [agent, bundle]
