"""The Kubernetes executor: carry out a KubePlan through kubectl, and remove everything of the session
by label on every exit path. Rendering is kubernetes.py's; the argv is kubernetes_argv.py's.

Order: preflight (kubectl found and new enough, the cluster answering, the namespace as the manifest
says) -> the bundle's objects -> the bundle ready (its CA read from it) -> the Service's ClusterIP ->
the CA ConfigMap and the agent, its proxy at that literal address -> attach -> the exit status.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from claude_bottle import audit, kubernetes, kubernetes_argv as kargv, paths, secrets, session, sidecars
from claude_bottle.errors import BottleError, ManifestError, RuntimeFailure
from claude_bottle.kubernetes import KubePlan
from claude_bottle.plan import LABEL
from claude_bottle.runner import Runner

MIN_VERSION = (1, 26)  # server-side apply, `kubectl wait`, NetworkPolicy with endPort-free rules
BUNDLE_TIMEOUT = 180.0  # image pull and readiness; a first pull of the sidecars image takes a while
AGENT_TIMEOUT = 300.0  # scheduling, the agent image's pull, a git workspace's clone
EXIT_TIMEOUT = 30.0  # from the end of the attach to the container's terminated state
# Waiting reasons that no amount of waiting fixes: fail with the reason instead of at the timeout.
HOPELESS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
            "CreateContainerError", "RunContainerError")


def _version(text: str) -> tuple[int, int] | None:
    found = re.match(r"v?(\d+)\.(\d+)", text or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def preflight(runner: Runner, context: str | None) -> tuple[str, str]:
    """kubectl's and the server's versions, or a RuntimeFailure (exit 125) that says what to fix."""
    result = runner.run(kargv.version(context), timeout=45)
    if result.returncode == 127:
        raise RuntimeFailure("kubectl: command not found; install kubectl (1.26 or newer) and put it on PATH")
    try:
        doc = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        doc = {}
    client = str((doc.get("clientVersion") or {}).get("gitVersion", "")) if isinstance(doc, dict) else ""
    want = ".".join(map(str, MIN_VERSION))
    parsed = _version(client)
    if parsed is None:
        raise RuntimeFailure(f"kubectl did not say its version ({_last_line(result.stderr)}); is it kubectl?")
    if parsed < MIN_VERSION:
        raise RuntimeFailure(f"kubectl {client} is too old; claude-bottle needs {want} or newer")
    server = str((doc.get("serverVersion") or {}).get("gitVersion", ""))
    where = f"context {context!r}" if context else "kubectl's current context"
    if not server:
        raise RuntimeFailure(f"the cluster of {where} is not reachable ({_last_line(result.stderr)})")
    if (_version(server) or (0, 0)) < MIN_VERSION:
        raise RuntimeFailure(f"the cluster runs Kubernetes {server}; claude-bottle needs {want} or newer")
    return client, server


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no answer"


def agent_kind(runner: Runner, plan: KubePlan) -> tuple[str, str]:
    """("pod", "") or ("sandbox", VERSION): a Sandbox when asked for, or with "auto" when served."""
    s = plan.settings()
    if s.agent == "pod":
        return "pod", ""
    result = runner.run(kargv.sandbox_versions(s.context), timeout=30)
    served = result.stdout.split() if result.returncode == 0 else []
    for version in kubernetes.SANDBOX_VERSIONS:
        if version in served:
            return "sandbox", version
    if s.agent == "sandbox":
        raise RuntimeFailure(f"kubernetes.agent is \"sandbox\", but the cluster serves no Sandbox API "
                             f"({kargv.SANDBOXES} {', '.join(kubernetes.SANDBOX_VERSIONS)}); install "
                             "agent-sandbox or use \"pod\"")
    return "pod", ""


def check_namespace(runner: Runner, plan: KubePlan) -> None:
    s = plan.settings()
    exists = runner.run(kargv.namespace_exists(s.context, s.namespace), timeout=30).returncode == 0
    if s.create_namespace and exists:
        raise ManifestError(plan.manifest_path, "kubernetes.namespace", f"{s.namespace!r} already exists, and "
                            "create_namespace makes a new one per session (removed with it)")
    if not s.create_namespace and not exists:
        raise ManifestError(plan.manifest_path, "kubernetes.namespace", f"{s.namespace!r} does not exist in the "
                            "cluster (or cannot be read); create it, or set create_namespace")


def start(plan: KubePlan, secret_values: dict[str, str], runner: Runner, state_dir: str | None = None) -> int:
    """Check everything a run needs (nothing is created before all of it holds), then run the plan."""
    preflight(runner, plan.settings().context)
    check_namespace(runner, plan)
    kind, version = agent_kind(runner, plan)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    return execute(plan, runner, secret_values, state_dir or paths.state_dir(), kind, version, tty)


def must(runner: Runner, argv: list[str], what: str, input: bytes | None = None, timeout: float = 120) -> str:
    result = runner.run(argv, input=input, timeout=timeout)
    if result.returncode != 0:
        raise BottleError(f"{what} failed: {_last_line(result.stderr or result.stdout)}")
    return result.stdout


def execute(plan: KubePlan, runner: Runner, secret_values: dict[str, str], state_dir: str, kind: str = "pod",
            version: str = "", tty: bool = False) -> int:
    s = plan.settings()
    ctx, ns = s.context, s.namespace

    def body() -> int:
        objects = kubernetes.bundle_objects(plan, secrets.values_file(secret_values) if plan.secrets else None)
        if s.create_namespace:
            must(runner, kargv.create(ctx), "creating the namespace", _doc([objects.pop(0)]))
        must(runner, kargv.apply(ctx, ns), "creating the bundle", _doc(objects))
        ca = wait_bundle(runner, plan)
        ip = cluster_ip(runner, plan)
        agent = kubernetes.agent_object(plan, kind, sandbox_version=version or kubernetes.SANDBOX_VERSIONS[0],
                                        bundle_ip=ip, tty=tty)
        must(runner, kargv.apply(ctx, ns), "creating the agent", _doc([kubernetes.ca_config_map(plan, ca), agent]))
        return run_agent(runner, plan, tty)

    def cleanup() -> list[str]:
        return session.save_then(lambda: finish(runner, plan, secret_values, state_dir),
                                 lambda: teardown(runner, ctx, ns, plan.session, kind == "sandbox",
                                                  s.create_namespace))

    return session.guarded(body, cleanup)


def _doc(objects: list[dict[str, Any]]) -> bytes:
    return json.dumps(kubernetes.as_list(objects)).encode()


def wait_bundle(runner: Runner, plan: KubePlan) -> str:
    """The bundle Ready (its readiness probe is the supervisor's check), then its public CA."""
    s = plan.settings()
    pod = plan.container("bundle").name
    result = runner.run(kargv.wait_ready(s.context, s.namespace, pod, BUNDLE_TIMEOUT), timeout=BUNDLE_TIMEOUT + 30)
    if result.returncode != 0:
        why = pod_problem(runner, plan, "bundle") or _last_line(result.stderr)
        tail = runner.run(kargv.logs(s.context, s.namespace, pod, "bundle", 40), timeout=60)
        if tail.returncode == 0 and tail.stdout.strip():
            print(f"claude-bottle: bundle log (last lines):\n{tail.stdout.strip()}", file=sys.stderr)
        raise BottleError(f"the bundle did not become ready within {BUNDLE_TIMEOUT:g} s: {why}")
    said = runner.run(kargv.exec_in(s.context, s.namespace, pod, "bundle", [*kubernetes.SUPERVISE, "--wait", "30"]),
                      timeout=90)
    try:
        ready = json.loads(said.stdout) if said.returncode == 0 else None
    except ValueError:
        ready = None
    if not isinstance(ready, dict):
        raise BottleError(f"the bundle did not say it was ready: {_last_line(said.stderr or said.stdout)}")
    sidecars.check_pipelock(bool(ready.get("pipelock")), plan.sidecars_image)
    ca = str(ready.get("ca", ""))
    if "BEGIN CERTIFICATE" not in ca or "PRIVATE" in ca:
        raise BottleError("the bundle returned something other than a public CA certificate")
    return ca


def cluster_ip(runner: Runner, plan: KubePlan) -> str:
    s = plan.settings()
    out = must(runner, kargv.get_json(s.context, s.namespace, "service", plan.container("bundle").name),
               "reading the bundle's Service")
    try:
        ip = str(json.loads(out)["spec"]["clusterIP"])
        ipaddress.ip_address(ip)
    except (ValueError, KeyError, TypeError):
        raise BottleError("the bundle's Service has no ClusterIP; the agent would have no proxy") from None
    return ip


def _pods(runner: Runner, plan: KubePlan, role: str) -> list[dict[str, Any]]:
    s = plan.settings()
    result = runner.run(kargv.pods_of(s.context, s.namespace, plan.session, role), timeout=60)
    try:
        items = json.loads(result.stdout).get("items", []) if result.returncode == 0 else []
    except (ValueError, AttributeError):
        items = []
    return [i for i in items if isinstance(i, dict)]


def _status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for st in (pod.get("status") or {}).get("containerStatuses") or []:
        if st.get("name") == container:
            return dict(st.get("state") or {})
    return {}


def pod_problem(runner: Runner, plan: KubePlan, role: str) -> str | None:
    """Why a pod of the session cannot start, when its status says so; None when it may yet."""
    for pod in _pods(runner, plan, role):
        status = pod.get("status") or {}
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for st in statuses:
            waiting = (st.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in HOPELESS:
                return f"{st.get('name')}: {waiting.get('reason')}: {waiting.get('message', '')}".strip(": ")
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"not scheduled: {cond.get('message') or cond.get('reason')}"
    return None


def run_agent(runner: Runner, plan: KubePlan, tty: bool) -> int:
    """Wait for the agent to start, attach to it, and return its own exit status."""
    s = plan.settings()
    deadline = time.monotonic() + AGENT_TIMEOUT
    pod: dict[str, Any] | None = None
    while True:
        pods = _pods(runner, plan, "agent")
        pod = pods[0] if pods else None
        phase = (pod or {}).get("status", {}).get("phase")
        if phase in ("Running", "Succeeded", "Failed"):
            break
        problem = pod_problem(runner, plan, "agent") if pod else None
        if problem and "not scheduled" not in problem:
            raise BottleError(f"the agent cannot start: {problem}")
        if time.monotonic() >= deadline:
            raise BottleError(f"the agent did not start within {AGENT_TIMEOUT:g} s: {problem or phase or 'no pod'}")
        time.sleep(1.0)
    name = str(pod["metadata"]["name"])
    attached = runner.attach(kargv.attach(s.context, s.namespace, name, tty)) if phase == "Running" else None
    return exit_status(runner, plan, name, attached)


def exit_status(runner: Runner, plan: KubePlan, name: str, attached: int | None) -> int:
    """The agent container's own exit code, from its terminated state (kubectl attach's status is
    kubectl's). When the attach missed the output (the agent was done first), its log is shown."""
    s = plan.settings()
    deadline = time.monotonic() + EXIT_TIMEOUT
    while True:
        pods = [p for p in _pods(runner, plan, "agent") if p.get("metadata", {}).get("name") == name]
        done = _status(pods[0], "agent").get("terminated") if pods else None
        if done is not None:
            if attached is None or attached != 0:
                log = runner.run(kargv.logs(s.context, s.namespace, name, "agent"), timeout=120)
                sys.stdout.write(log.stdout)
                sys.stdout.flush()
            return int(done.get("exitCode", 1))
        if time.monotonic() >= deadline:
            session.warn(f"the agent's container has not exited {EXIT_TIMEOUT:g} s after the attach ended")
            return attached or 1
        time.sleep(0.5)


def finish(runner: Runner, plan: KubePlan, values: dict[str, str] | None, state_dir: str) -> None:
    """The bundle's decisions, saved and summed up as the Docker runtime does (audit.py)."""
    s = plan.settings()
    result = runner.run(kargv.logs(s.context, s.namespace, plan.container("bundle").name, "bundle"), timeout=120)
    if result.returncode != 0:
        return  # no bundle, or no log yet: nothing was decided
    recs = audit.records(result.stdout.splitlines(), values)
    path = paths.session_log(state_dir, plan.name, plan.session)
    audit.save(path, recs)
    lines = audit.summary(recs)
    print(f"claude-bottle: session {plan.session}: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line, file=sys.stderr)


def teardown(runner: Runner, context: str | None, namespace: str, sid: str, sandboxes: bool,
             namespaces: bool) -> list[str]:
    """Delete every object carrying the session's label, until a listing comes back empty (a create
    cut short by a signal may still land). Sandboxes go first: their controller would remake a pod."""
    label = session.session_label(sid)
    problems: list[str] = []
    kinds = ((kargv.SANDBOXES,) if sandboxes else ()) + kargv.KINDS
    for attempt in range(12):  # about a minute in all: a pod's grace period is 10 s
        deleted = runner.run(kargv.delete_by_label(context, namespace, label, kinds), timeout=90)
        listed = runner.run(kargv.list_by_label(context, namespace, label, kinds), timeout=60)
        if listed.returncode != 0:
            problems.append(f"listing the session's objects failed: {_last_line(listed.stderr)}")
            break
        left = _names(listed.stdout)
        if not left:
            break
        if attempt == 11:
            detail = _last_line(deleted.stderr) if deleted.returncode != 0 else "still there"
            problems.append(f"objects still present after removal ({detail}): {' '.join(left)}")
        time.sleep(min(8.0, 0.25 * 2 ** attempt))
    if namespaces:
        gone = runner.run(kargv.delete_namespaces(context, label), timeout=90)
        if gone.returncode != 0:
            problems.append(f"removing the session's namespace failed: {_last_line(gone.stderr)}")
    return problems


def _names(listing: str) -> list[str]:
    try:
        items = json.loads(listing).get("items", []) if listing.strip() else []
    except (ValueError, AttributeError):
        return ["(unreadable listing)"]
    return [f"{i.get('kind', '?').lower()}/{i.get('metadata', {}).get('name', '?')}" for i in items]


@dataclass(frozen=True)
class ClusterSession:
    """One session found on the current context's cluster, for `ps` and `cleanup`."""

    name: str
    session: str
    namespace: str
    launcher: str
    objects: tuple[tuple[str, str, str], ...]  # (kind, name, phase or "")
    own_namespace: bool = False


def configured() -> bool:
    """Whether this host points kubectl at a cluster at all: `ps` asks no cluster otherwise."""
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return shutil.which("kubectl") is not None and any(os.path.exists(p) for p in kubeconfig.split(os.pathsep))


def list_sessions(runner: Runner, context: str | None = None) -> list[ClusterSession]:
    """Every session with a labelled object in any namespace; [] when no cluster is configured.
    A cluster that cannot be read is an error (exit 125), never an empty answer."""
    if not configured():
        return []
    listed = runner.run(kargv.list_by_label(context, None, f"{LABEL}.session"), timeout=60)
    spaces = runner.run(kargv.list_namespaces(context, f"{LABEL}.session"), timeout=60)
    if listed.returncode != 0:
        raise RuntimeFailure(f"listing bottles on the cluster failed: {_last_line(listed.stderr)}")
    found: dict[str, dict[str, Any]] = {}
    items = (json.loads(listed.stdout or "{}").get("items") or [])
    owned = {i["metadata"]["labels"].get(f"{LABEL}.session") for i in
             (json.loads(spaces.stdout or "{}").get("items") or [] if spaces.returncode == 0 else [])}
    for item in items:
        md = item.get("metadata", {})
        sid = (md.get("labels") or {}).get(f"{LABEL}.session", "")
        entry = found.setdefault(sid, {"name": (md.get("labels") or {}).get(f"{LABEL}.bottle", ""),
                                       "namespace": md.get("namespace", ""), "launcher": "", "objects": []})
        entry["launcher"] = entry["launcher"] or (md.get("annotations") or {}).get(f"{LABEL}.launcher", "")
        entry["objects"].append((str(item.get("kind", "")), str(md.get("name", "")),
                                 str((item.get("status") or {}).get("phase", ""))))
    return [ClusterSession(e["name"], sid, e["namespace"], e["launcher"], tuple(e["objects"]), sid in owned)
            for sid, e in sorted(found.items())]


def remove_session(runner: Runner, found: ClusterSession, context: str | None = None) -> list[str]:
    served = runner.run(kargv.sandbox_versions(context), timeout=30)
    return teardown(runner, context, found.namespace, found.session, served.returncode == 0 and bool(served.stdout),
                    found.own_namespace)
