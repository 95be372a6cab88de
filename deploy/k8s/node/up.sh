#!/bin/sh
# up.sh: a one-node Kubernetes cluster on this machine, offline, for
# deploy/k8s and e2e/k8s. Run as root from anywhere:
#
#   deploy/k8s/node/up.sh            # prints the KUBECONFIG to use
#   deploy/k8s/node/down.sh          # stops it and restores the machine
#
# It installs Debian's containerd, runc, CNI plugins, etcd, conntrack and
# iptables; builds Kubernetes (kubelet, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy, kubectl) and crictl
# from the Go module proxy (cold: 11 minutes on an idle 2-core machine,
# about 20 loaded; with Go's build cache warm, seconds); makes a CA and a certificate per component;
# and starts every component on loopback, the node named localhost,
# kube-proxy in iptables mode so that Service ClusterIPs work. The pause
# image is built here (deploy/k8s/node/pause). Images are loaded with
#
#   ctr -a /run/tini-hot-node/containerd.sock -n k8s.io images import FILE
#
# (load.sh does it for a podman image). Logs are in
# /var/lib/tini-hot-node/log. Running it again while the node is up does
# nothing but wait for the node to be Ready.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root: the node needs containerd, iptables and cgroups"
mkdir -p "$STATE" "$RUN" "$BIN" "$PKI" "$LOG"

# --- packages ---------------------------------------------------------
need=""
for pair in containerd:containerd runc:runc etcd:etcd-server conntrack:conntrack iptables:iptables \
	/usr/lib/cni/bridge:containernetworking-plugins ctr:containerd podman:podman openssl:openssl; do
	cmd=${pair%%:*} pkg=${pair#*:}
	case " $need " in *" $pkg "*) continue ;; esac
	if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] || need="$need $pkg"; else command -v "$cmd" >/dev/null || need="$need $pkg"; fi
done
if [ -n "$need" ]; then
	log "installing$need"
	apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# --- Kubernetes, built from the module proxy ----------------------------
if [ ! -x "$BIN/kubelet" ] || [ "$(cat "$BIN/version" 2>/dev/null)" != "$KUBE_VERSION" ]; then
	log "building Kubernetes $KUBE_VERSION (cold: 11 to 20 minutes; warm: seconds)"
	v=${KUBE_VERSION#v}
	x="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=${v%%.*}"
	x="$x -X k8s.io/component-base/version.gitMinor=$(echo "$v" | cut -d. -f2)"
	x="$x -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
	(cd "$here/kube" && CGO_ENABLED=0 go build -trimpath -tags providerless -ldflags "-s -w $x" -o "$BIN/" \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
	GOBIN=$BIN CGO_ENABLED=0 go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	echo "$KUBE_VERSION" >"$BIN/version"
fi

# --- certificates -------------------------------------------------------
# cert NAME CN [O]: a client and server certificate signed by the CA.
cert() {
	[ -f "$PKI/$1.crt" ] && return 0
	subj="/CN=$2"
	[ -n "${3:-}" ] && subj="/O=$3$subj"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -subj "$subj" -out "$PKI/$1.csr" 2>/dev/null
	printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1\n' >"$PKI/$1.ext"
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -sha256 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
	rm -f "$PKI/$1.csr" "$PKI/$1.ext"
}
if [ ! -f "$PKI/ca.crt" ]; then
	log "making the certificates"
	openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=tini-hot-node-ca" \
		-days 365 -sha256 -out "$PKI/ca.crt" 2>/dev/null
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
cert apiserver kube-apiserver
cert apiserver-kubelet kube-apiserver-kubelet-client system:masters
cert admin admin system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kubelet system:node:localhost system:nodes
cert kube-proxy system:kube-proxy

# kubeconfig NAME: the kubeconfig of the component whose certificate is NAME.
kubeconfig() {
	cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: tini-hot-node
    cluster:
      server: https://127.0.0.1:6443
      certificate-authority: $PKI/ca.crt
users:
  - name: $1
    user:
      client-certificate: $PKI/$1.crt
      client-key: $PKI/$1.key
contexts:
  - name: tini-hot-node
    context: {cluster: tini-hot-node, user: $1}
current-context: tini-hot-node
EOF
}
for c in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig $c; done

# --- configuration --------------------------------------------------------
mkdir -p "$STATE/cni"
cat >"$STATE/cni/10-tini-hot-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tini-hot-node",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The machine's root may lack CAP_SYS_RESOURCE: the sandbox's
  # oom_score_adj of -998 is refused, and runc fails without this.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni"
EOF
cgroup_v1=true
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && cgroup_v1=false
cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: $( $cgroup_v1 && echo false || echo true )
failSwapOn: false
# down.sh removes what the kubelet made; these chains it need not make.
makeIPTablesUtilChains: false
# A ConfigMap update reaches the pods within this (1 m by default).
syncFrequency: 10s
# A test machine's disk is often fuller than a node's.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
EOF
cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: localhost
clusterCIDR: $POD_CIDR
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

# --- start ------------------------------------------------------------
# start NAME ARGV...: runs ARGV in a session of its own, logging to
# LOG/NAME.log, its pid in RUN/NAME.pid; nothing when it runs already.
start() {
	name=$1
	shift
	running "$name" && return 0
	setsid "$@" </dev/null >>"$LOG/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}
# until_ok WHAT SECONDS CMD...: waits for CMD to succeed.
until_ok() {
	what=$1 secs=$2
	shift 2
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -le $((secs * 5)) ] || die "$what not up after ${secs}s; see $LOG"
		sleep 0.2
	done
}
# The sysctls the kubelet changes, saved once for down.sh.
if [ ! -f "$STATE/sysctl.saved" ]; then
	for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctl.saved"
fi

# A pod's connection to a ClusterIP that kube-proxy sends to a pod on the
# same bridge must pass iptables both ways (br_netfilter).
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null ||
	die "no /proc/sys/net/bridge: load br_netfilter (modprobe br_netfilter)"
sysctl -qw net.bridge.bridge-nf-call-iptables=1

start containerd containerd --config "$STATE/containerd.toml"
until_ok containerd 30 ctr -a "$CONTAINERD_SOCK" version
if ! ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -qx "$PAUSE_IMAGE"; then
	log "building the pause image"
	tmp=$(mktemp -d)
	(cd "$here/../../.." && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./deploy/k8s/node/pause)
	printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$tmp/Containerfile"
	podman build -q -t "$PAUSE_IMAGE" "$tmp" >/dev/null
	podman save -q --format docker-archive -o "$tmp/pause.tar" "$PAUSE_IMAGE"
	ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$tmp/pause.tar" >/dev/null
	rm -rf "$tmp"
fi

start etcd etcd --name tini-hot-node --data-dir "$STATE/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster tini-hot-node=http://127.0.0.1:2380
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port 6443 \
	--service-cluster-ip-range "$SERVICE_CIDR" --endpoint-reconciler-type none \
	--client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
	--kubelet-client-certificate "$PKI/apiserver-kubelet.crt" --kubelet-client-key "$PKI/apiserver-kubelet.key" \
	--kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types Hostname \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged
until_ok kube-apiserver 60 kubectl_admin get --raw /readyz
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
	--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
	--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
	--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key"
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
	--authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false
start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
	--hostname-override localhost
start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

log "waiting for the node to be Ready"
until_ok "node Ready" 120 sh -c "'$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' get node localhost -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
until_ok "the default service account" 60 kubectl_admin get serviceaccount default
log "up: export KUBECONFIG=$STATE/admin.kubeconfig (kubectl: $BIN/kubectl)"
echo "$STATE/admin.kubeconfig"
