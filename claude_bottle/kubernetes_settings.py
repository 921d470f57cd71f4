"""The manifest's `kubernetes` section (runtime "kubernetes"): where on which cluster a bottle runs.

Parsed here, with the manifest's reader, so manifest.py only gains a key; nothing here talks to a
cluster. The defaults are the safe ones: the "default" namespace, used and never created; no
workspace from anywhere (a scratch volume); the bundle kept away from every private range.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_bottle import egress as egress_mod

KEYS = ("namespace", "create_namespace", "context", "runtime_class_name", "agent", "workspace", "storage",
        "cluster_cidrs", "sidecars_image")
WORKSPACE_KEYS = ("claim", "git", "ref")
AGENT_KINDS = ("auto", "pod", "sandbox")  # auto: a Sandbox when the cluster serves the CRD, else a Pod
# RFC 1123 label (namespaces) and subdomain (claims, runtime classes): what the API server accepts.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
QUANTITY_RE = re.compile(r"^[1-9][0-9]{0,9}(Ki|Mi|Gi|Ti)?$")  # binary suffixes only: no "1e3" surprises
CONTEXT_RE = re.compile(r"^[^\s\x00-\x1f]{1,253}$")
GIT_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")  # a branch or tag, never an option
IMAGE_RE = re.compile(r"^[a-z0-9][A-Za-z0-9._/:@-]{0,254}$")
DEFAULT_STORAGE = "10Gi"
# What the bundle must not reach unless a rule names an address: a cluster's pod and service ranges
# live in these (we cannot read them portably), and so does every node and the metadata service.
DEFAULT_CLUSTER_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                         "fc00::/7", "fe80::/10")


@dataclass(frozen=True)
class Settings:
    namespace: str = "default"
    create_namespace: bool = False  # a Namespace object of the session's own, removed with it
    context: str | None = None  # a kubeconfig context; None: kubectl's current one
    runtime_class_name: str | None = None  # gVisor, Kata: a stronger boundary for the agent
    agent: str = "auto"
    workspace_claim: str | None = None  # an existing PVC mounted at /workspace: used, never created
    workspace_git: str | None = None  # an https:// URL cloned into a scratch volume, through the bundle
    workspace_ref: str | None = None
    storage: str = DEFAULT_STORAGE  # size limit of the scratch (or cloned) workspace
    cluster_cidrs: tuple[str, ...] = DEFAULT_CLUSTER_CIDRS
    sidecars_image: str | None = None  # the bundle image as the cluster pulls it; None: the local tag

    def to_json(self) -> dict[str, Any]:
        workspace: dict[str, Any] | None = None
        if self.workspace_claim:
            workspace = {"claim": self.workspace_claim}
        elif self.workspace_git:
            workspace = {"git": self.workspace_git, **({"ref": self.workspace_ref} if self.workspace_ref else {})}
        return {"namespace": self.namespace, "create_namespace": self.create_namespace, "context": self.context,
                "runtime_class_name": self.runtime_class_name, "agent": self.agent, "workspace": workspace,
                "storage": self.storage, "cluster_cidrs": list(self.cluster_cidrs),
                "sidecars_image": self.sidecars_image}


def parse(r: Any, value: Any, egress: egress_mod.Egress) -> Settings:
    """The section, checked field by field; `r` is the manifest's reader (errors name file and field)."""
    section = r.obj(value, "kubernetes", KEYS)
    out: dict[str, Any] = {}
    if "namespace" in section:
        out["namespace"] = _match(r, section["namespace"], "kubernetes.namespace", DNS_LABEL_RE,
                                  "must be a namespace name (1-63 of a-z, 0-9 and inner hyphens)")
    if "create_namespace" in section:
        if not isinstance(section["create_namespace"], bool):
            raise r.fail("kubernetes.create_namespace", "must be true or false")
        out["create_namespace"] = section["create_namespace"]
    if "context" in section:
        out["context"] = _match(r, section["context"], "kubernetes.context", CONTEXT_RE,
                                "must be a kubeconfig context name (no spaces or control characters)")
    if "runtime_class_name" in section:
        out["runtime_class_name"] = _match(r, section["runtime_class_name"], "kubernetes.runtime_class_name",
                                           DNS_SUBDOMAIN_RE, "must be a RuntimeClass name such as \"gvisor\"")
    if "agent" in section:
        kind = r.string(section["agent"], "kubernetes.agent")
        if kind not in AGENT_KINDS:
            raise r.fail("kubernetes.agent", f"must be one of {', '.join(AGENT_KINDS)}, not {kind!r}")
        out["agent"] = kind
    if "workspace" in section:
        out.update(_workspace(r, section["workspace"], egress))
    if "storage" in section:
        out["storage"] = _match(r, section["storage"], "kubernetes.storage", QUANTITY_RE,
                                "must be a size such as \"10Gi\" (Ki, Mi, Gi or Ti)")
    if "cluster_cidrs" in section:
        out["cluster_cidrs"] = _cidrs(r, section["cluster_cidrs"])
    if "sidecars_image" in section:
        out["sidecars_image"] = _match(r, section["sidecars_image"], "kubernetes.sidecars_image", IMAGE_RE,
                                       "must be an image reference such as \"registry.example/sidecars:1\"")
    made = Settings(**out)
    if made.create_namespace and (made.namespace == "default" or made.namespace.startswith("kube-")):
        # A session's own namespace is deleted with it: never one the cluster itself depends on.
        raise r.fail("kubernetes.create_namespace", f"needs a namespace of the session's own, not {made.namespace!r}")
    return made


def _match(r: Any, value: Any, field: str, pattern: re.Pattern[str], message: str) -> str:
    text = r.string(value, field)
    if not pattern.fullmatch(text):
        raise r.fail(field, f"{text!r} {message}")
    return text


def _workspace(r: Any, value: Any, egress: egress_mod.Egress) -> dict[str, Any]:
    """A claim (the team's volume, mounted as it is) or a git URL cloned per session; never both."""
    section = r.obj(value, "kubernetes.workspace", WORKSPACE_KEYS)
    if ("claim" in section) == ("git" in section):
        raise r.fail("kubernetes.workspace", "must name exactly one of \"claim\" (a PVC) or \"git\" (a URL)")
    if "claim" in section:
        if "ref" in section:
            raise r.fail("kubernetes.workspace.ref", "only goes with \"git\"")
        return {"workspace_claim": _match(r, section["claim"], "kubernetes.workspace.claim", DNS_SUBDOMAIN_RE,
                                          "must be a PersistentVolumeClaim name")}
    url = r.nonempty(section["git"], "kubernetes.workspace.git")
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password or parts.query \
            or parts.fragment or any(c.isspace() for c in url):
        raise r.fail("kubernetes.workspace.git", f"{url!r} must be an https:// URL with no user, query or fragment")
    from claude_bottle import secrets as secrets_mod  # lazy: only manifests with a git workspace need it

    # The clone goes out through the bundle like everything else, so a rule must allow its host.
    if parts.port not in (None, 443) or not secrets_mod.covered(egress, parts.hostname.lower()):
        raise r.fail("kubernetes.workspace.git", f"{parts.hostname} is not allowed by egress.allow on port 443, "
                                                 "and the clone goes through the bundle")
    out = {"workspace_git": url}
    if "ref" in section:
        out["workspace_ref"] = _match(r, section["ref"], "kubernetes.workspace.ref", GIT_REF_RE,
                                      "must be a branch or tag name")
    return out


def _cidrs(r: Any, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise r.fail("kubernetes.cluster_cidrs", "must be a list of CIDRs such as \"10.0.0.0/8\"")
    found: list[str] = []
    for i, item in enumerate(value):
        field = f"kubernetes.cluster_cidrs[{i}]"
        text = r.string(item, field)
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise r.fail(field, f"{text!r} is not a CIDR with its host bits zero") from None
        if net.prefixlen == 0:
            raise r.fail(field, f"{text!r} would keep the bundle from reaching anything")
        found.append(net.compressed)
    return tuple(dict.fromkeys(found))


def from_top(r: Any, top: dict[str, Any], runtime: str, egress: egress_mod.Egress) -> Settings | None:
    """The section for a manifest's top level: defaults for runtime "kubernetes", None for the others.
    A host directory means nothing to a cluster, so the top-level `workspace` is refused with it."""
    if runtime != "kubernetes":
        if "kubernetes" in top:
            raise r.fail("kubernetes", f"only goes with runtime \"kubernetes\", not {runtime!r}")
        return None
    if "workspace" in top:
        raise r.fail("workspace", "is a host directory, which a cluster cannot mount; use kubernetes.workspace "
                                  "(a PVC claim or a git URL)")
    return parse(r, top.get("kubernetes", {}), egress)
