"""A plan rendered for a cluster: the Kubernetes objects of one session, as plain dicts. Pure.

The same plan as the Docker runtime's (one bundle, one agent, the same sidecars image, pipelock
config and bundle policy), said in the cluster's terms:

  ConfigMap  <p>-config   pipelock.yaml + policy.json, mounted read-only at /etc/claude-bottle
  Secret     <p>-secrets  secrets.json (values), mounted only into the bundle, mode 0400
  Pod        <p>-bundle   the sidecars image as uid 10001; ready when its supervisor says so
  Service    <p>-bundle   ClusterIP, port 8080 only: the agent's proxy
  ConfigMap  <p>-ca       the bundle's public CA certificate (created once the bundle made it)
  Pod or Sandbox <p>-agent  the agent, with HTTP(S)_PROXY at the Service's ClusterIP
  NetworkPolicy x2        kubernetes_policy.py: the agent reaches only the bundle's proxy port

How the agent names the bundle without DNS: by the Service's ClusterIP. `start` creates the Service,
reads .spec.clusterIP and renders the agent with that literal address. A static rendering (`render`,
the dry run) cannot know it, so there the proxy is `http://$(<SERVICE>_SERVICE_HOST):8080`: the
kubelet expands that from the service-link variables it gives every pod created after the Service,
which is why the agent keeps enableServiceLinks on only in that form.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_bottle.manifest import Manifest

from claude_bottle import kubernetes_policy, plan as plan_mod
from claude_bottle.kubernetes_settings import Settings
from claude_bottle.plan import LABEL, PROXY_PORT, Container, Plan

UID = 10001  # the bundle image's `bottle` user, and the agent's: a cluster has no launching user to match
BUNDLE_CONFIG_DIR = "/etc/claude-bottle"
SECRETS_DIR = "/etc/claude-bottle-secrets"  # apart from the ConfigMap: a Secret volume of its own
BUNDLE_STATE_DIR = "/var/lib/claude-bottle"  # the CA's private key lives here and nowhere else
SUPERVISE = ["python3", "/opt/claude-bottle/supervise.py"]
BUNDLE_LIMITS = {"memory": "1Gi", "cpu": "1"}  # the Docker runtime's bundle gets --memory 1g
SANDBOX_GROUP = "agents.x-k8s.io"
SANDBOX_VERSIONS = ("v1beta1", "v1alpha1")  # newest first: v1beta1 is upstream's storage version
AGENT_KINDS = ("pod", "sandbox")
FIELD_MANAGER = "claude-bottle"


@dataclass(frozen=True)
class KubePlan(Plan):
    """A Plan whose agent and bundle run on a cluster; to_json adds the settings and the objects."""

    kube: Settings | None = None

    def settings(self) -> Settings:
        return self.kube or Settings()

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["kubernetes"] = {"settings": self.settings().to_json(),
                             "objects": render(self, agent_kind=static_agent_kind(self.settings()))}
        return out


def prefix(name: str, session: str) -> str:
    """Every object's name: at most 52 characters ("cb-" + a 40-character slug + "-" + 8 hex), so
    "<prefix>-bundle" is a valid Service name (a DNS-1035 label: 63 at most, starting with a letter)."""
    return f"cb-{name}-{session}"


def service_env(plan: Plan) -> str:
    """The prefix of the service-link variables the kubelet sets for the bundle's Service."""
    return f"{prefix(plan.name, plan.session)}-bundle".upper().replace("-", "_")


def static_proxy(plan: Plan) -> str:
    return f"http://$({service_env(plan)}_SERVICE_HOST):{PROXY_PORT}"


def adapt(plan: Plan, manifest: Manifest) -> KubePlan:
    """The host's plan, turned into a cluster's: names that fit Kubernetes, the agent as uid 10001,
    the proxy at the bundle's Service, no Docker networks, no SSH setup (the `ssh` section is
    Docker-only; ssh:// rules still pass through the bundle), no per-bottle home volume."""
    settings = manifest.kubernetes or Settings()
    p = prefix(plan.name, plan.session)
    proxy = static_proxy(plan)
    env = dict(plan.agent_env)
    env.update({var: proxy for var in plan_mod.PROXY_VARS})
    image = settings.sidecars_image or plan.sidecars_image
    base = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    base.update(
        agent_env=tuple(sorted(env.items())), proxy_url=proxy, agent_user=f"{UID}:{UID}", networks=(), ssh=None,
        sidecars_image=image,
        containers=(Container(f"{p}-bundle", "bundle", image, (), _tagged(plan, "bundle")),
                    Container(f"{p}-agent", "agent", plan.agent_image, (), _tagged(plan, "agent"))),
    )
    if "state_volume" in base:  # the Docker runtime's per-bottle home; on a cluster the home is per session
        base["state_volume"] = None
    return KubePlan(**base, kube=settings)


def static_agent_kind(settings: Settings) -> str:
    """What a rendering made without asking the cluster uses: "auto" means a Pod unless told."""
    return "sandbox" if settings.agent == "sandbox" else "pod"


def _tagged(plan: Plan, role: str) -> tuple[tuple[str, str], ...]:
    return (*plan_mod.session_labels(plan.name, plan.session), (f"{LABEL}.role", role))


def labels(plan: Plan, role: str) -> dict[str, str]:
    """Bottle, session and role. The launcher ("host:pid") is no valid label value: it is an annotation."""
    return dict(_tagged(plan, role))


def selector(plan: Plan, role: str) -> dict[str, str]:
    return {f"{LABEL}.session": plan.session, f"{LABEL}.role": role}


def meta(plan: Plan, name: str, role: str, namespaced: bool = True) -> dict[str, Any]:
    launcher = dict(plan.labels).get(f"{LABEL}.launcher", "")
    out: dict[str, Any] = {"name": name, "labels": labels(plan, role),
                           "annotations": {f"{LABEL}.launcher": launcher}}
    if namespaced:
        out["namespace"] = _settings(plan).namespace
    return out


def _settings(plan: Plan) -> Settings:
    return plan.settings() if isinstance(plan, KubePlan) else Settings()


def render(plan: Plan, *, agent_kind: str = "pod", sandbox_version: str = SANDBOX_VERSIONS[0],
           bundle_ip: str | None = None, ca_pem: str | None = None, secrets_json: bytes | None = None,
           tty: bool = False) -> list[dict[str, Any]]:
    """Every object of the session, in the order they must be created."""
    out = bundle_objects(plan, secrets_json)
    if ca_pem is not None:
        out.append(ca_config_map(plan, ca_pem))
    out.append(agent_object(plan, agent_kind, sandbox_version=sandbox_version, bundle_ip=bundle_ip, tty=tty))
    return out


def as_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """One document `kubectl apply -f -` takes (JSON is YAML): a v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def bundle_objects(plan: Plan, secrets_json: bytes | None = None) -> list[dict[str, Any]]:
    """What exists before the agent: [Namespace], config, [Secret], bundle Pod, Service, policies."""
    s = _settings(plan)
    p = prefix(plan.name, plan.session)
    out: list[dict[str, Any]] = []
    if s.create_namespace:
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(plan, s.namespace, "namespace", False)})
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(plan, f"{p}-config", "config"),
                "immutable": True,
                "data": {"pipelock.yaml": plan.pipelock_yaml, "policy.json": plan.bundle_policy}})
    if plan.secrets:
        secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                  "metadata": meta(plan, f"{p}-secrets", "secrets")}
        if secrets_json is not None:  # a dry run and `render` read no values: empty there, and fillable
            secret.update(immutable=True, data={"secrets.json": base64.b64encode(secrets_json).decode("ascii")})
        out.append(secret)
    out.append(bundle_pod(plan))
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(plan, f"{p}-bundle", "bundle"),
                "spec": {"type": "ClusterIP", "selector": selector(plan, "bundle"),
                         "ports": [{"name": "proxy", "protocol": "TCP", "port": PROXY_PORT,
                                    "targetPort": PROXY_PORT}]}})
    out += kubernetes_policy.policies(plan, s, p, lambda name, role: meta(plan, name, role), selector)
    return out


def ca_config_map(plan: Plan, ca_pem: str) -> dict[str, Any]:
    if "BEGIN CERTIFICATE" not in ca_pem or "PRIVATE" in ca_pem:
        raise ValueError("the CA ConfigMap takes a public certificate, and nothing else")
    return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
            "metadata": meta(plan, f"{prefix(plan.name, plan.session)}-ca", "ca"), "data": {"ca.pem": ca_pem}}


def container_security() -> dict[str, Any]:
    """What --cap-drop ALL and no-new-privileges say in Docker, for every container of a bottle."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security() -> dict[str, Any]:
    # fsGroup: the kubelet hands mounted Secret, ConfigMap and emptyDir files to this group, which is
    # how uid 10001 reads a 0400 Secret file the kubelet writes as root (it is made 0440 root:10001).
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_common() -> dict[str, Any]:
    # Neither pod talks to the API server: no service-account token in either.
    return {"restartPolicy": "Never", "automountServiceAccountToken": False, "securityContext": pod_security(),
            "hostNetwork": False, "hostPID": False, "hostIPC": False, "terminationGracePeriodSeconds": 10}


def bundle_pod(plan: Plan) -> dict[str, Any]:
    """A Pod, not a Deployment: a replacement bundle would mint a new CA the agent does not trust, so a
    dead bundle ends the session instead (the supervisor inside already restarts crashed children)."""
    p = prefix(plan.name, plan.session)
    mounts = [{"name": "config", "mountPath": BUNDLE_CONFIG_DIR, "readOnly": True},
              {"name": "state", "mountPath": BUNDLE_STATE_DIR}]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{p}-config", "defaultMode": 0o444}},
        {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    env: list[dict[str, str]] = []
    if plan.secrets:
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        volumes.append({"name": "secrets", "secret": {"secretName": f"{p}-secrets", "defaultMode": 0o400}})
        env.append({"name": "CLAUDE_BOTTLE_SECRETS", "value": f"{SECRETS_DIR}/secrets.json"})  # read by the addon
    container: dict[str, Any] = {
        "name": "bundle", "image": plan.sidecars_image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "proxy", "containerPort": PROXY_PORT, "protocol": "TCP"}],
        "readinessProbe": {"exec": {"command": [*SUPERVISE, "--check"]}, "periodSeconds": 2, "timeoutSeconds": 5},
        "securityContext": container_security(), "volumeMounts": mounts,
        "resources": {"limits": dict(BUNDLE_LIMITS), "requests": {"memory": "256Mi", "cpu": "100m"}},
    }
    if env:
        container["env"] = env
    spec = {**_pod_common(), "enableServiceLinks": False, "containers": [container], "volumes": volumes}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(plan, f"{p}-bundle", "bundle"), "spec": spec}


def quantity(memory: str) -> str:
    """The manifest's "4g" as Kubernetes says it ("4Gi"); a bare number is bytes either way."""
    suffix = {"k": "Ki", "m": "Mi", "g": "Gi"}.get(memory[-1:].lower())
    return memory[:-1] + suffix if suffix else memory


def agent_env(plan: Plan, bundle_ip: str | None) -> list[dict[str, str]]:
    proxy = f"http://{bundle_ip}:{PROXY_PORT}" if bundle_ip else None
    return [{"name": k, "value": proxy if proxy and k in plan_mod.PROXY_VARS else v} for k, v in plan.agent_env]


def agent_pod_spec(plan: Plan, bundle_ip: str | None = None, tty: bool = False) -> dict[str, Any]:
    s = _settings(plan)
    p = prefix(plan.name, plan.session)
    env = agent_env(plan, bundle_ip)
    ca_dir = plan_mod.CA_PATH.rsplit("/", 1)[0]
    mounts = [{"name": "home", "mountPath": plan_mod.AGENT_HOME}, {"name": "workspace", "mountPath": "/workspace"},
              {"name": "ca", "mountPath": ca_dir, "readOnly": True}]
    workspace: dict[str, Any]
    if s.workspace_claim:
        workspace = {"persistentVolumeClaim": {"claimName": s.workspace_claim}}
    else:
        workspace = {"emptyDir": {"sizeLimit": s.storage}}
    volumes = [
        {"name": "home", "emptyDir": {"medium": "Memory"}},  # Docker's tmpfs home: counts against the memory limit
        {"name": "workspace", **workspace},
        {"name": "ca", "configMap": {"name": f"{p}-ca", "defaultMode": 0o444,
                                     "items": [{"key": "ca.pem", "path": plan_mod.CA_PATH.rsplit("/", 1)[1]}]}},
    ]
    limits = {"memory": quantity(plan.resources.memory)}
    if plan.resources.cpus:
        limits["cpu"] = f"{plan.resources.cpus:g}"
    container: dict[str, Any] = {
        "name": "agent", "image": plan.agent_image, "imagePullPolicy": "IfNotPresent",
        "args": list(plan.agent_command),  # args, not command: like `docker run IMAGE CMD`, the entrypoint stays
        "workingDir": "/workspace", "env": env, "stdin": True, "stdinOnce": True, "tty": tty,
        "securityContext": container_security(), "volumeMounts": mounts, "resources": {"limits": limits},
    }
    spec: dict[str, Any] = {
        **_pod_common(),
        # Only the static form needs the kubelet's service-link variables (see the module's docstring).
        "enableServiceLinks": bundle_ip is None,
        # No resolver at all: a name lookup fails at once inside the pod, and no query leaves it
        # (the NetworkPolicy blocks port 53 too). Proxied requests carry names the bundle resolves.
        "dnsPolicy": "None", "dnsConfig": {"nameservers": ["127.0.0.1"]},
        "containers": [container], "volumes": volumes,
    }
    if s.runtime_class_name:  # the agent's boundary; the bundle runs our own code and stays on runc
        spec["runtimeClassName"] = s.runtime_class_name
    if s.workspace_git:
        spec["initContainers"] = [clone_container(plan, env, mounts)]
    return spec


def clone_container(plan: Plan, env: list[dict[str, str]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The git workspace: cloned by the agent's own image, through the bundle like any request, before
    the agent starts; the clone step never holds more than the agent will."""
    s = _settings(plan)
    assert s.workspace_git is not None
    argv = ["git", "clone", "--depth=1", *(["--branch", s.workspace_ref] if s.workspace_ref else []),
            "--", s.workspace_git, "/workspace"]
    return {"name": "clone", "image": plan.agent_image, "imagePullPolicy": "IfNotPresent", "command": argv,
            "workingDir": "/workspace", "env": env, "securityContext": container_security(), "volumeMounts": mounts,
            "resources": {"limits": {"memory": quantity(plan.resources.memory)}}}


def agent_object(plan: Plan, kind: str = "pod", *, sandbox_version: str = SANDBOX_VERSIONS[0],
                 bundle_ip: str | None = None, tty: bool = False) -> dict[str, Any]:
    """The agent as a Pod, or as an agent-sandbox Sandbox (same pod spec, in spec.podTemplate; the
    Sandbox's labels go on the pod too, which is what the NetworkPolicies select)."""
    name = f"{prefix(plan.name, plan.session)}-agent"
    spec = agent_pod_spec(plan, bundle_ip, tty)
    if kind == "pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(plan, name, "agent"), "spec": spec}
    if kind != "sandbox" or sandbox_version not in SANDBOX_VERSIONS:
        raise ValueError(f"no agent kind {kind!r} ({sandbox_version})")
    template = {"metadata": {"labels": labels(plan, "agent")}, "spec": spec}
    return {"apiVersion": f"{SANDBOX_GROUP}/{sandbox_version}", "kind": "Sandbox", "metadata": meta(plan, name, "agent"),
            "spec": {"podTemplate": template}}


def dump(objects: list[dict[str, Any]]) -> str:
    """The stream `render` prints: one List document, stable key order."""
    return json.dumps(as_list(objects), indent=2, sort_keys=True) + "\n"
