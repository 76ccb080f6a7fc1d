#!/usr/bin/env bash
# A real one-node cluster on this machine, and the operator image run on it as a cluster runs it:
# etcd, the kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet with containerd and
# runc, kube-proxy (iptables) and a bridge CNI network, all from Debian (containerd, the CNI
# plugins) or built from the same Debian source tree as the API server (e2e/kube/build-apiserver.sh
# --node). The images of scripts/build-images.sh are imported into containerd as
# `kind load image-archive` imports them; config/operator (the chart's default objects, which
# scripts/check-packaging.sh proves equal to the chart's rendering) is applied with the image set to
# siren-operator:VERSION-fashion-mnist; the Deployment's pod must start, pass its probes (its
# readiness says it leads, through in-cluster configuration: the ServiceAccount token the kubelet
# mounts, and the `kubernetes` Service through kube-proxy), and run config/samples/quickstart.yaml
# to Succeeded.
#
# Needs root (a kubelet, iptables, a bridge), the images (scripts/build-images.sh) and the ports
# 10248-10259 free. It changes the machine while it runs (iptables rules, the bridge siren0, pods'
# logs under /var/log/pods, net.ipv4.ip_forward) and undoes that when it ends; on a failure it keeps
# the components' logs in its directory under /tmp.
#
# What this kind of machine needed (a container itself: cgroups v1, no CAP_SYS_RESOURCE):
#  - containerd's `restrict_oom_score_adj = true`: the kubelet gives sandboxes oom_score_adj -998,
#    which runc cannot set here ("can't get final child's PID from pipe: EOF");
#  - the kubelet with cgroupfs, no QoS cgroups, no node allocatable enforcement, swap allowed;
#  - a pause image of its own (a static C program), since registry.k8s.io is out of reach;
#  - the API server advertising the machine's own address: it refuses a loopback address as the
#    `kubernetes` Service's endpoint, and kube-proxy leads pods there;
#  - a default route in the CNI network's IPAM, without which pods reach nothing off their subnet.
#
# Usage: scripts/check-node.sh [--keep]   (--keep: leave the cluster running, print its kubeconfig)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

keep=false
[ "${1:-}" != "--keep" ] || keep=true

log() { echo "check-node: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "a kubelet needs root"

siren_container_tools
siren_kube_tools
apiserver_binary="$(bash e2e/kube/build-apiserver.sh --node)"
bin_dir="$(dirname "$apiserver_binary")"
siren_node_tools

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
images="${CARGO_TARGET_DIR:-$HOME/.cache/siren/target}/images"
operator_archive="$images/siren-operator-$version-fashion-mnist.oci.tar"
[ -f "$operator_archive" ] || fail "no $operator_archive (scripts/build-images.sh)"

for port in 10248 10249 10250 10256 10257 10259; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is taken"; fi
done

# The cleanup removes every KUBE- and CNI- iptables chain, so it must be the only one making them.
# (The rules are read whole first: `grep -q` on a pipe could end iptables-save early.)
kubernetes_rules() { iptables-save 2>/dev/null | grep -e 'KUBE-' -e 'CNI-' || true; }
if [ -n "$(kubernetes_rules)" ]; then
  fail "this machine already has Kubernetes or CNI iptables rules: it is a node, or an earlier run's leftovers are there"
fi

node_ip="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' || true)"
[ -n "$node_ip" ] || fail "the machine has no IPv4 address with a route (ip -4 route get)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"
etcd_port="$(free_port)"
peer_port="$(free_port)"

work="$(mktemp -d /tmp/siren-node-XXXXXX)"
ip_forward="$(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo 0)"
pids=()
kubectl=("$bin_dir/kubectl" --kubeconfig "$work/kubeconfig")
containerd_sock="$work/containerd.sock"
ctr=(ctr --address "$containerd_sock" -n k8s.io)

cleanup() {
  local status=$?
  if $keep && [ $status -eq 0 ]; then
    log "left running; KUBECONFIG=$work/kubeconfig (stop: kill ${pids[*]})"
    return
  fi
  if [ $status -ne 0 ]; then
    log "logs in $work"
    "${kubectl[@]}" -n siren-system get pods -o wide 2>/dev/null || true
    tail -n 20 /var/log/pods/siren-system_*/operator/*.log 2>/dev/null || true
  fi
  "${kubectl[@]}" delete trainingjob quickstart --wait=true --timeout=60s >/dev/null 2>&1 || true
  "${kubectl[@]}" delete namespace siren-system --wait=true --timeout=60s >/dev/null 2>&1 || true
  "${kubectl[@]}" delete pods --all -A --wait=true --timeout=30s >/dev/null 2>&1 || true
  # The containers outlive containerd and the kubelet: stop them through containerd first.
  for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
    "${ctr[@]}" tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 1
  for (( i=${#pids[@]}-1; i>=0; i-- )); do kill "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -address $containerd_sock" 2>/dev/null || true
  # Every KUBE- and CNI- chain is this run's: the machine had none when it began.
  if [ -n "$(kubernetes_rules)" ]; then
    local rules
    rules="$(iptables-save 2>/dev/null || true)"
    grep -v -e 'KUBE-' -e 'CNI-' <<<"$rules" | iptables-restore 2>/dev/null || true
  fi
  sysctl -qw "net.ipv4.ip_forward=$ip_forward" 2>/dev/null || true
  ip link delete siren0 2>/dev/null || true
  rm -rf /var/lib/cni/networks/siren-node
  buildah rmi localhost/pause:siren >/dev/null 2>&1 || true
  { grep -o " $work/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r -n1 umount 2>/dev/null || true
  if [ $status -eq 0 ]; then
    rm -rf "$work" 2>/dev/null || true
  else
    rm -rf "$work/containerd" "$work/kubelet" 2>/dev/null || true
  fi
}
trap cleanup EXIT

start() { # name command...
  local name="$1"
  shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

wait_for() { # seconds description command...
  local seconds="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what (after ${seconds}s; logs in $work)"
    sleep 1
  done
}

log "control plane: etcd, kube-apiserver on $node_ip:$api_port"
# A token of this run's: the API server listens on the machine's own address.
admin_token="$(openssl rand -hex 24)"
echo "$admin_token,admin,admin,system:masters" >"$work/tokens.csv"
openssl genrsa -out "$work/service-accounts.key" 2048 2>/dev/null
start etcd etcd --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port"
start kube-apiserver "$bin_dir/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address="$node_ip" --advertise-address="$node_ip" --secure-port="$api_port" --insecure-port=0 \
  --cert-dir="$work/certs" --token-auth-file="$work/tokens.csv" --authorization-mode=Node,RBAC \
  --service-account-key-file="$work/service-accounts.key" \
  --service-account-signing-key-file="$work/service-accounts.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/16 --enable-priority-and-fairness=false
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://$node_ip:$api_port", certificate-authority: $work/certs/apiserver.crt}
users:
- name: admin
  user: {token: $admin_token}
contexts:
- name: node
  context: {cluster: node, user: admin}
current-context: node
EOF
wait_for 90 "the API server never became ready" "${kubectl[@]}" get --raw /readyz

log "containerd with runc, a bridge network"
mkdir -p "$work/cni"
cat >"$work/cni/10-siren-node.conflist" <<'EOF'
{"cniVersion": "0.4.0", "name": "siren-node", "plugins": [
  {"type": "bridge", "bridge": "siren0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd"
state = "$work/containerd-state"
[grpc]
  address = "$containerd_sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/pause:siren"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc || echo /usr/sbin/runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
EOF
sysctl -qw net.ipv4.ip_forward=1
start containerd containerd --config "$work/containerd.toml"
wait_for 30 "containerd never answered" "${ctr[@]}" version

log "images: a pause image of our own, and $(basename "$operator_archive")"
mkdir -p "$work/pause"
cat >"$work/pause/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
static void quit(int signal_number) { (void)signal_number; _exit(0); }
int main(void) { signal(SIGINT, quit); signal(SIGTERM, quit); for (;;) pause(); }
EOF
gcc -static -O2 -o "$work/pause/pause" "$work/pause/pause.c"
pause_container="$(buildah from scratch)"
trap 'buildah rm "$pause_container" >/dev/null 2>&1 || true; cleanup' EXIT
pause_root="$(buildah mount "$pause_container")"
cp "$work/pause/pause" "$pause_root/pause"
buildah umount "$pause_container" >/dev/null
buildah config --entrypoint '["/pause"]' "$pause_container"
buildah commit --quiet --rm "$pause_container" localhost/pause:siren >/dev/null
trap cleanup EXIT
buildah push --quiet localhost/pause:siren "oci-archive:$work/pause.oci.tar:pause:siren"
python3 scripts/add-docker-manifest.py "$work/pause.oci.tar" pause:siren
"${ctr[@]}" images import "$work/pause.oci.tar" >/dev/null
"${ctr[@]}" images import "$operator_archive" >/dev/null
"${ctr[@]}" images ls -q | grep -qx "docker.io/library/siren-operator:$version-fashion-mnist" \
  || fail "containerd does not list docker.io/library/siren-operator:$version-fashion-mnist after the import"

log "kube-controller-manager, kube-scheduler, kubelet, kube-proxy"
control=(--kubeconfig="$work/kubeconfig" --authentication-kubeconfig="$work/kubeconfig"
  --authorization-kubeconfig="$work/kubeconfig" --leader-elect=false --bind-address=127.0.0.1)
start kube-controller-manager "$bin_dir/kube-controller-manager" "${control[@]}" \
  --service-account-private-key-file="$work/service-accounts.key" \
  --root-ca-file="$work/certs/apiserver.crt" --controllers='*'
start kube-scheduler "$bin_dir/kube-scheduler" "${control[@]}"
cat >"$work/kubelet.yaml" <<'EOF'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {}
EOF
start kubelet "$bin_dir/kubelet" --kubeconfig="$work/kubeconfig" --config="$work/kubelet.yaml" \
  --container-runtime=remote --container-runtime-endpoint="unix://$containerd_sock" \
  --root-dir="$work/kubelet" --cert-dir="$work/kubelet-pki" --hostname-override=siren-node
start kube-proxy "$bin_dir/kube-proxy" --kubeconfig="$work/kubeconfig" --hostname-override=siren-node \
  --proxy-mode=iptables --cluster-cidr=10.88.0.0/16 --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
node_ready() {
  [ "$("${kubectl[@]}" get node siren-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 120 "the node never became Ready" node_ready
log "node siren-node is Ready ($("${kubectl[@]}" get node siren-node -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}'))"

log "the operator: config/operator with image siren-operator:$version-fashion-mnist"
"${kubectl[@]}" apply -k config/operator >/dev/null
"${kubectl[@]}" -n siren-system set image deployment/siren "operator=siren-operator:$version-fashion-mnist" >/dev/null
started=$SECONDS
"${kubectl[@]}" -n siren-system rollout status deployment/siren --timeout=180s \
  || fail "the operator's Deployment never became available"
log "the operator's pod passed its readiness probe (it leads) $((SECONDS - started)) s after the rollout began"
pod="$("${kubectl[@]}" -n siren-system get pods -l app.kubernetes.io/name=siren -o jsonpath='{.items[0].metadata.name}')"
pod_ip="$("${kubectl[@]}" -n siren-system get pod "$pod" -o jsonpath='{.status.podIP}')"
holder="$("${kubectl[@]}" -n siren-system get lease siren-operator -o jsonpath='{.spec.holderIdentity}')"
[ "$holder" = "$pod" ] || fail "the Lease is held by '$holder', not the pod $pod"
log "pod $pod ($pod_ip) holds the Lease siren-operator"

log "the quickstart"
"${kubectl[@]}" apply -f config/samples/quickstart.yaml >/dev/null
started=$SECONDS
phase=""
while [ $((SECONDS - started)) -lt 600 ]; do
  phase="$("${kubectl[@]}" get trainingjob quickstart -o jsonpath='{.status.phase}' || true)"
  case "$phase" in Succeeded | Failed) break ;; esac
  sleep 2
done
"${kubectl[@]}" get trainingjob quickstart
[ "$phase" = Succeeded ] || fail "the quickstart ended '$phase': $("${kubectl[@]}" get trainingjob quickstart -o jsonpath='{.status.conditions}')"
restarts="$("${kubectl[@]}" -n siren-system get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
[ "$restarts" = 0 ] || fail "the operator's container restarted $restarts times"
log "ok: the quickstart Succeeded in $((SECONDS - started)) s on the operator's pod, accuracy $("${kubectl[@]}" get trainingjob quickstart -o jsonpath='{.status.accuracy}'), no restarts"
