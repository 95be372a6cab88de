# Shared by up.sh and down.sh: where the one-node cluster keeps its state.
# Everything it writes is under STATE and RUN, except what the kubelet
# and CNI write themselves (/var/lib/kubelet, /var/lib/cni, /run/netns,
# the cni0 bridge, the kubepods cgroups, kube-proxy's iptables chains),
# which down.sh removes.
STATE=${TINI_HOT_NODE_STATE:-/var/lib/tini-hot-node}
RUN=/run/tini-hot-node
BIN=$STATE/bin
PKI=$STATE/pki
LOG=$STATE/log
KUBE_VERSION=v1.34.4
CRICTL_VERSION=v1.34.0
CONTAINERD_SOCK=$RUN/containerd.sock
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
PAUSE_IMAGE=localhost/tini-hot-node/pause:1
# The components, in the order up.sh starts them; down.sh stops them in
# reverse.
COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
# Sysctls the kubelet, kube-proxy and up.sh set, restored by down.sh.
SYSCTLS="net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet"

log() { printf 'node: %s\n' "$*" >&2; }
die() { printf 'node: %s\n' "$*" >&2; exit 1; }

# running NAME: its pid file names a live process.
running() {
	[ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
