#!/usr/bin/env bash
# Build (cached) the real Kubernetes control plane the integration tests apply to:
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd, all
# from the Go module proxy. Prints the directory holding the three binaries on
# stdout; progress goes to stderr. A second run with the binaries present is instant.
#
# Why a module of our own: k8s.io/kubernetes points its k8s.io/* requirements at
# ./staging through replace directives, which Go ignores in a dependency; we
# replace each with the published k8s.io/<module> v0.X.Y release instead. etcd's
# server module does the same with ../api and friends.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
GO="${GO:-/usr/local/go/bin/go}"
CACHE="${CLAUDE_BOTTLE_CACHE:-$HOME/.cache/claude-bottle}"
OUT="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
log() { printf 'tests/k8s/build: %s\n' "$*" >&2; }

if ! command -v "$GO" >/dev/null 2>&1; then
    log "Go not found at $GO"
    exit 3
fi
if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && -x "$OUT/kubectl" ]]; then
    log "cached: $OUT"
    echo "$OUT"
    exit 0
fi
mkdir -p "$OUT"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
export CGO_ENABLED=0

# ---- kube-apiserver and kubectl -------------------------------------------
src="$OUT/src-kubernetes"
mkdir -p "$src"
log "resolving k8s.io/kubernetes@$K8S_VERSION"
modfile=$(cd "$src" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging_version="v0.${K8S_VERSION#v1.}"
{
    echo "module claude-bottle.test/k8s"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$modfile" \
        | while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
} >"$src/go.mod"
cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

// Pins the packages built below, so the module graph keeps them.
import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitTreeState=clean"

(
    cd "$src"
    log "go mod tidy (kubernetes)"
    "$GO" mod tidy -e >&2
    log "building kube-apiserver (cold: ~5 min on 2 cores)"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
    mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
    log "building kubectl"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$OUT/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl >&2
    mv "$OUT/kubectl.tmp" "$OUT/kubectl"
)

# ---- etcd -------------------------------------------------------------------
esrc="$OUT/src-etcd"
mkdir -p "$esrc"
cat >"$esrc/go.mod" <<GOMOD
module claude-bottle.test/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
GOMOD
cat >"$esrc/main.go" <<'GO'
// etcd's own main, as a package of ours: etcdmain is the server's entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
(
    cd "$esrc"
    log "go mod tidy (etcd)"
    "$GO" mod tidy >&2
    log "building etcd"
    "$GO" build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" . >&2
    mv "$OUT/etcd.tmp" "$OUT/etcd"
)
log "built: $OUT"
echo "$OUT"
