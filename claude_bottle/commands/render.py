"""`claude-bottle render --target kubernetes MANIFEST`: the session's objects as one kubectl-appliable
document (a v1 List, in JSON, which is YAML), for review, GitOps or `kubectl apply -f -`.

The plan is built as `start` builds it (launch.prepare); the two things only a running session has
are said on stderr: the bundle's CA (made inside the bundle when it starts) and, unless asked for,
the secret values (never printed by default).
"""

from __future__ import annotations

import argparse
import sys

from claude_bottle import kubernetes, kubernetes_argv, launch, manifest as manifest_mod, secrets
from claude_bottle.errors import ManifestError
from claude_bottle.plan import LABEL
from claude_bottle.runner import SubprocessRunner


def run(args: argparse.Namespace) -> int:
    manifest = manifest_mod.load(args.manifest)
    if manifest.runtime != "kubernetes":
        raise ManifestError(manifest.path, "runtime", f"is {manifest.runtime!r}; render --target kubernetes "
                                                      "needs \"kubernetes\"")
    plan, values, _facts = launch.prepare(manifest, tuple(args.agent_command), SubprocessRunner(), dry_run=True)
    assert isinstance(plan, kubernetes.KubePlan)
    kind = args.agent or kubernetes.static_agent_kind(plan.settings())
    secrets_json = secrets.values_file(values) if args.with_secret_values and plan.secrets else None
    sys.stdout.write(kubernetes.dump(kubernetes.render(plan, agent_kind=kind, secrets_json=secrets_json)))
    for line in next_steps(plan, bool(plan.secrets) and secrets_json is None):
        print(f"claude-bottle: render: {line}", file=sys.stderr)
    return 0


def next_steps(plan: kubernetes.KubePlan, empty_secret: bool) -> list[str]:
    s = plan.settings()
    k = " ".join(kubernetes_argv.base(s.context)) + f" --namespace {s.namespace}"
    p = kubernetes.prefix(plan.name, plan.session)
    label = f"{LABEL}.session={plan.session}"
    steps = [f"the agent waits for its CA ConfigMap {p}-ca, which only the running bundle can fill:",
             f"  {k} wait --for=condition=Ready pod/{p}-bundle && {k} exec {p}-bundle -c bundle -- "
             f"{' '.join(kubernetes.SUPERVISE)} --ca > ca.pem && {k} create configmap {p}-ca --from-file=ca.pem "
             f"&& {k} label configmap {p}-ca {label} {LABEL}.bottle={plan.name} {LABEL}.role=ca",
             f"remove everything: {k} delete {','.join(kubernetes_argv.KINDS)} --selector {label}"]
    if empty_secret:
        steps.insert(0, f"the Secret {p}-secrets has no values (the bundle refuses to start without them): "
                        "render with --with-secret-values, or fill its secrets.json yourself")
    return steps
