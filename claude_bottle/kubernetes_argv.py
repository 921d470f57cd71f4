"""Pure argv builders for every kubectl command the launcher runs. Nothing here runs anything.

Every command names the kubeconfig context when the manifest does (else kubectl's current one) and
the namespace explicitly, so nothing depends on what `kubectl config` happens to say at the time.
"""

from __future__ import annotations

from claude_bottle.kubernetes import FIELD_MANAGER, SANDBOX_GROUP
from claude_bottle.plan import LABEL

# What a session can own, by resource name; Sandboxes only where the CRD is served.
KINDS = ("pods", "services", "configmaps", "secrets", "networkpolicies.networking.k8s.io")
SANDBOXES = f"sandboxes.{SANDBOX_GROUP}"
SANDBOX_CRD = f"customresourcedefinitions/{SANDBOXES}"


def base(context: str | None) -> list[str]:
    return ["kubectl", *(["--context", context] if context else [])]


def version(context: str | None, timeout_s: int = 15) -> list[str]:
    """Client and server versions as JSON; the server's part is missing when it is unreachable."""
    return [*base(context), "version", "--output=json", f"--request-timeout={timeout_s}s"]


def apply(context: str | None, namespace: str, *, dry_run: bool = False) -> list[str]:
    """Server-side apply of a List on stdin: the API server validates every field (and a dry run
    runs admission too) before anything is stored."""
    argv = [*base(context), "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--namespace", namespace,
            "--filename", "-", "--output=name"]
    return argv + (["--dry-run=server"] if dry_run else [])


def create(context: str | None) -> list[str]:
    """`create`, not apply: for the Namespace, which must not already exist (an existing one is
    someone else's, and teardown by label would otherwise delete it)."""
    return [*base(context), "create", "--filename", "-", "--output=name"]


def namespace_exists(context: str | None, namespace: str) -> list[str]:
    return [*base(context), "get", "namespace", namespace, "--output=name", "--request-timeout=15s"]


def sandbox_versions(context: str | None) -> list[str]:
    """The served versions of agent-sandbox's Sandbox CRD; a non-zero exit when it is not installed."""
    return [*base(context), "get", SANDBOX_CRD, "--request-timeout=15s",
            "--output=jsonpath={.spec.versions[?(@.served==true)].name}"]


def wait_ready(context: str | None, namespace: str, pod: str, timeout_s: float) -> list[str]:
    return [*base(context), "wait", "--namespace", namespace, f"pod/{pod}", "--for=condition=Ready",
            f"--timeout={int(timeout_s)}s"]


def get_json(context: str | None, namespace: str, kind: str, name: str) -> list[str]:
    return [*base(context), "get", kind, name, "--namespace", namespace, "--output=json", "--request-timeout=30s"]


def pods_of(context: str | None, namespace: str, session: str, role: str) -> list[str]:
    """The session's pods of one role, as JSON: a Sandbox's pod is named by its controller."""
    return [*base(context), "get", "pods", "--namespace", namespace, "--output=json", "--request-timeout=30s",
            "--selector", f"{LABEL}.session={session},{LABEL}.role={role}"]


def exec_in(context: str | None, namespace: str, pod: str, container: str, argv: list[str]) -> list[str]:
    return [*base(context), "exec", "--namespace", namespace, pod, "--container", container, "--", *argv]


def attach(context: str | None, namespace: str, pod: str, tty: bool) -> list[str]:
    return [*base(context), "attach", "--namespace", namespace, pod, "--container", "agent", "--stdin",
            *(["--tty"] if tty else []), "--quiet"]


def logs(context: str | None, namespace: str, pod: str, container: str, tail: int | None = None) -> list[str]:
    return [*base(context), "logs", "--namespace", namespace, pod, "--container", container,
            *([f"--tail={tail}"] if tail is not None else []), "--request-timeout=60s"]


def list_by_label(context: str | None, namespace: str | None, label: str, kinds: tuple[str, ...] = KINDS
                  ) -> list[str]:
    """name of every object of `kinds` carrying `label` (k or k=v); all namespaces when None."""
    where = ["--all-namespaces"] if namespace is None else ["--namespace", namespace]
    return [*base(context), "get", ",".join(kinds), *where, "--selector", label, "--output=json",
            "--ignore-not-found", "--request-timeout=30s"]


def delete_by_label(context: str | None, namespace: str, label: str, kinds: tuple[str, ...] = KINDS) -> list[str]:
    # --wait=false: the listing afterwards is what tells us it is gone; a pod's grace period is ours (10 s).
    return [*base(context), "delete", ",".join(kinds), "--namespace", namespace, "--selector", label,
            "--ignore-not-found", "--wait=false", "--request-timeout=60s"]


def delete_namespaces(context: str | None, label: str) -> list[str]:
    return [*base(context), "delete", "namespaces", "--selector", label, "--ignore-not-found", "--wait=false",
            "--request-timeout=60s"]


def list_namespaces(context: str | None, label: str) -> list[str]:
    return [*base(context), "get", "namespaces", "--selector", label, "--output=json", "--request-timeout=30s"]


def current_context() -> list[str]:
    return ["kubectl", "config", "current-context"]
