#!/usr/bin/env bash
# Stop what up.sh (and node.sh) started in DIR, by the pids they wrote (never by name). With a node:
# its pods are deleted first so the kubelet tears their sandboxes and network namespaces down, and
# kube-network-policies' nftables table goes with it.
set -uo pipefail
dir="${1:?usage: down.sh DIR}"
if [ -f "$dir/kubelet.pid" ] && kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null; then
    kubectl="$(cat "$dir/kubectl.path")"
    timeout 60 "$kubectl" --kubeconfig "$dir/kubeconfig" delete pods --all --all-namespaces --grace-period=1 \
        --timeout=45s >/dev/null 2>&1
fi
if [ -S "$dir/containerd.sock" ]; then
    for task in $(ctr --address "$dir/containerd.sock" --namespace k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$dir/containerd.sock" --namespace k8s.io tasks kill --signal SIGKILL "$task" >/dev/null 2>&1
    done
fi
for p in knp kubelet containerd apiserver etcd; do
    pid="$(cat "$dir/$p.pid" 2>/dev/null)" || continue
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
done
if [ -f "$dir/knp.pid" ]; then
    nft delete table inet kube-network-policies 2>/dev/null
    # The CNI firewall plugin removes each pod's rules; its (then empty) chains are left to us.
    iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null
    for chain in CNI-FORWARD CNI-ADMIN; do iptables -F "$chain" 2>/dev/null; iptables -X "$chain" 2>/dev/null; done
fi
if [ -f "$dir/made-sa-mountpoint" ]; then
    rmdir /var/run/secrets/kubernetes.io/serviceaccount /var/run/secrets/kubernetes.io /var/run/secrets 2>/dev/null
fi
# The kubelet bind-mounts its root onto itself (and pods' volumes under it): only mounts inside DIR.
for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null
done
exit 0
