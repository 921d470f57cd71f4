#!/usr/bin/env bash
# Opt-in: turn up.sh's control plane in DIR into a one-node cluster that runs pods and enforces
# NetworkPolicy: containerd (Debian's, a private instance with its own socket and root), runc, the
# CNI ptp plugin (every pod a /32 routed through this host, so policy hooks see pod-to-pod traffic;
# no default route, so no pod can send anywhere but the pod range; the CNI firewall plugin accepts
# each pod's traffic past a FORWARD policy of DROP, which Docker sets), the kubelet and
# kube-network-policies (build-node.sh). Images come from the local Docker engine (`docker save`).
# The node has no address (its only one would be loopback, which a Node may not report), so the API
# server never calls the kubelet: no exec, attach or logs through it; pod logs are files in DIR/podlogs.
#   tests/k8s/node.sh DIR IMAGE...   -> prints the node's name once it is Ready
# Stopped by down.sh DIR with the rest. Needs root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(cd "${1:?usage: node.sh DIR IMAGE...}" && pwd)"; shift
log() { printf 'tests/k8s/node: %s\n' "$*" >&2; }
bin="$(bash "$here/build-node.sh")"
kc="$dir/kubeconfig"
k() { "$bin/kubectl" --kubeconfig "$kc" "$@"; }
node=cb-test-node
pod_cidr=10.244.0.0/24
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for tool in containerd containerd-shim-runc-v2 runc /usr/lib/cni/ptp /usr/lib/cni/host-local; do
    command -v "$tool" >/dev/null || { log "missing $tool (Debian: containerd runc containernetworking-plugins)"; exit 3; }
done

# kube-network-policies queues each new connection to itself with nftables' `queue` expression; a
# kernel without CONFIG_NFT_QUEUE (this project's CI machines, Firecracker 6.18) cannot run it: say so.
probe_table="cb-probe-$$"
nft add table inet "$probe_table"
nft add chain inet "$probe_table" post '{ type filter hook postrouting priority 0 ; policy accept ; }'
if ! nft add rule inet "$probe_table" post ip daddr 192.0.2.1 queue num 100 bypass 2>/dev/null; then
    nft delete table inet "$probe_table"
    log "this kernel has no nftables queue expression (CONFIG_NFT_QUEUE): kube-network-policies cannot enforce here"
    exit 4
fi
nft delete table inet "$probe_table"

mkdir -p "$dir/cni" "$dir/containerd" "$dir/kubelet"
cat >"$dir/cni/10-ptp.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "cb-test", "plugins": [
  {"type": "ptp", "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [],
            "dataDir": "$dir/cni/ipam"}},
  {"type": "firewall", "backend": "iptables"},
  {"type": "loopback"}]}
CNI
cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "claude-bottle-test/pause:1"
  # Root here may not lower oom_score_adj (the kubelet asks -998 for sandboxes): keep containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
TOML
log "containerd (private instance)"
containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 &
echo $! >"$dir/containerd.pid"
for _ in $(seq 1 50); do [ -S "$dir/containerd.sock" ] && break; sleep 0.2; done
ctr() { command ctr --address "$dir/containerd.sock" --namespace k8s.io "$@"; }

# The pod sandbox ("pause") image: a static binary of our own that waits for a signal.
if ! ctr images ls -q | grep -qx 'docker.io/claude-bottle-test/pause:1'; then
    log "pause image"
    p="$dir/pause"; mkdir -p "$p"
    printf 'package main\n\nimport (\n\t"os"\n\t"os/signal"\n\t"syscall"\n)\n\nfunc main() {\n\tc := make(chan os.Signal, 1)\n\tsignal.Notify(c, syscall.SIGINT, syscall.SIGTERM)\n\t<-c\n}\n' >"$p/main.go"
    (cd "$p" && printf 'module pause\n\ngo 1.26\n' >go.mod && CGO_ENABLED=0 "${GO:-/usr/local/go/bin/go}" build -o pause . >&2)
    printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$p/Dockerfile"
    docker build -q -t claude-bottle-test/pause:1 "$p" >&2
    docker save claude-bottle-test/pause:1 | ctr images import --snapshotter native - >&2
fi
for image in "$@"; do
    log "importing $image from Docker"
    docker save "$image" | ctr images import --snapshotter native - >&2
done

log "kubelet"
cat >"$dir/kubelet/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $(free_port)
readOnlyPort: 0
healthzPort: 0
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$dir/pki/ca.crt"}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: "unix://$dir/containerd.sock"
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podCIDR: "$pod_cidr"
resolvConf: ""
podLogsDir: "$dir/podlogs"
KCFG
"$bin/kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$kc" --root-dir "$dir/kubelet/root" \
    --cert-dir "$dir/kubelet/pki" --hostname-override "$node" --node-ip 127.0.0.1 \
    >"$dir/kubelet.log" 2>&1 &
echo $! >"$dir/kubelet.pid"

log "kube-network-policies"
# It reads only an in-cluster config: give it one, in a mount namespace of its own.
sa="$dir/sa"; mkdir -p "$sa"
cut -d, -f1 "$dir/pki/tokens.csv" | tr -d '\n' >"$sa/token"; cp "$dir/pki/ca.crt" "$sa/ca.crt"; echo -n default >"$sa/namespace"
if [ ! -d /var/run/secrets/kubernetes.io/serviceaccount ]; then  # a mount point only; down.sh removes it
    mkdir -p /var/run/secrets/kubernetes.io/serviceaccount && touch "$dir/made-sa-mountpoint"
fi
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$dir/api.port")" \
    unshare --mount --propagation private sh -c \
    "mount --bind '$sa' /var/run/secrets/kubernetes.io/serviceaccount && exec '$bin/kube-network-policies' \
     --hostname-override $node --disable-nri --metrics-bind-address 127.0.0.1:0 -v 2" \
    >"$dir/knp.log" 2>&1 &
echo $! >"$dir/knp.pid"

for _ in $(seq 1 120); do
    if [ "$(k get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
        log "node $node ready"
        echo "$node"
        exit 0
    fi
    for p in containerd kubelet knp; do
        kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null || { log "$p exited:"; tail -20 "$dir/$p.log" >&2; exit 1; }
    done
    sleep 1
done
log "node not ready after 120 s; kubelet log:"; tail -30 "$dir/kubelet.log" >&2
exit 1
