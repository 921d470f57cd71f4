#!/usr/bin/env bash
# Start a real control plane on loopback for the integration tests: etcd and kube-apiserver (built,
# cached, by build.sh), with a CA, serving and client certificates and service-account keys made here
# with openssl. No kubelet, scheduler or controller-manager: objects are validated, admitted (Pod
# Security "restricted" included), stored and deleted for real, but no container runs.
#   tests/k8s/up.sh DIR     -> prints DIR/kubeconfig once /readyz answers; pids in DIR/*.pid
#   tests/k8s/down.sh DIR   -> stops both
# Nothing listens anywhere but 127.0.0.1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: up.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
log() { printf 'tests/k8s/up: %s\n' "$*" >&2; }

bin="$(bash "$here/build.sh")"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

log "certificates (openssl)"
pki="$dir/pki"; mkdir -p "$pki"
(
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=claude-bottle-test-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext 2>/dev/null
    # system:masters: the admin group RBAC lets do anything, as a cluster's installer would hand out.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=claude-bottle-test" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 2 -extfile admin.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    # A bearer token for what can only read an in-cluster config (node.sh's kube-network-policies).
    printf '%s,claude-bottle-test,claude-bottle-test,system:masters\n' "$(openssl rand -hex 16)" > tokens.csv
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

log "etcd on 127.0.0.1:$etcd_port"
"$bin/etcd" --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --listen-metrics-urls "" \
    >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

log "kube-apiserver on 127.0.0.1:$api_port"
"$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none \
    --service-cluster-ip-range 10.96.0.0/16 \
    --tls-cert-file "$pki/server.crt" --tls-private-key-file "$pki/server.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --enable-priority-and-fairness=false \
    >"$dir/apiserver.log" 2>&1 &
echo $! >"$dir/apiserver.pid"

kubeconfig="$dir/kubeconfig"
cat >"$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$pki/admin.crt", client-key: "$pki/admin.key"}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
KC
echo "$bin/kubectl" >"$dir/kubectl.path"
echo "$api_port" >"$dir/api.port"

for _ in $(seq 1 120); do
    if [ "$("$bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz 2>/dev/null)" = ok ]; then
        log "ready: $kubeconfig"
        echo "$kubeconfig"
        exit 0
    fi
    for p in etcd apiserver; do
        if ! kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null; then
            log "$p exited; its log:"; tail -20 "$dir/$p.log" >&2; exit 1
        fi
    done
    sleep 0.5
done
log "not ready after 60 s; apiserver log:"; tail -20 "$dir/apiserver.log" >&2
exit 1
