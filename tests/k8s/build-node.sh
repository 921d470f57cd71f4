#!/usr/bin/env bash
# Build (cached) what a single test node needs beyond build.sh's control plane: the kubelet (from the
# same k8s.io/kubernetes module) and sigs.k8s.io/kube-network-policies (the NetworkPolicy enforcer).
# containerd, runc and the CNI plugins come from Debian. Prints the binaries' directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KNP_VERSION="${KNP_VERSION:-v0.8.0}"
GO="${GO:-/usr/local/go/bin/go}"
log() { printf 'tests/k8s/build-node: %s\n' "$*" >&2; }
out="$(bash "$here/build.sh")"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod" CGO_ENABLED=0
if [[ ! -x "$out/kubelet" ]]; then
    log "building kubelet"
    (cd "$out/src-kubernetes" && "$GO" build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION:-v1.37.2}" \
        -o "$out/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet >&2)
    mv "$out/kubelet.tmp" "$out/kubelet"
fi
if [[ ! -x "$out/kube-network-policies" ]]; then
    log "building kube-network-policies $KNP_VERSION"
    src="$out/src-knp"; mkdir -p "$src"
    printf 'module claude-bottle.test/knp\n\ngo 1.26\n\nrequire sigs.k8s.io/kube-network-policies %s\n' "$KNP_VERSION" >"$src/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/kube-network-policies/pkg/networkpolicy"\n' >"$src/tools.go"
    (cd "$src" && "$GO" mod tidy >&2 && "$GO" build -trimpath -ldflags "-s -w" -o "$out/kube-network-policies.tmp" \
        sigs.k8s.io/kube-network-policies/cmd >&2)
    mv "$out/kube-network-policies.tmp" "$out/kube-network-policies"
fi
echo "$out"
