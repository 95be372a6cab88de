#!/bin/sh
# down.sh: stops the one-node cluster of up.sh and restores the machine:
# its pods (through the CRI, so that CNI releases their addresses), its
# processes, the mounts under /var/lib/kubelet and containerd's, the pod
# network namespaces, the cni0 bridge, kube-proxy's iptables chains, the
# kubepods cgroups and the sysctls the kubelet changed. It keeps the
# built programs, the certificates and the images in
# /var/lib/tini-hot-node, so that the next up.sh is quick; --purge
# removes them too. Safe to run again, or when up.sh failed half-way.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root"
purge=false
case "${1:-}" in
--purge) purge=true ;;
"") ;;
*) echo "usage: down.sh [--purge]" >&2; exit 2 ;;
esac

if running containerd && [ -x "$BIN/crictl" ]; then
	crictl() { "$BIN/crictl" -r "unix://$CONTAINERD_SOCK" -t 30s "$@"; }
	# The kubelet would restart them: it stops first.
	for c in kube-proxy kubelet; do
		running "$c" && kill "$(cat "$RUN/$c.pid")"
	done
	pods=$(crictl pods -q 2>/dev/null)
	[ -n "$pods" ] && log "removing $(echo "$pods" | wc -l) pods"
	for p in $pods; do crictl stopp "$p" >/dev/null 2>&1; crictl rmp -f "$p" >/dev/null 2>&1; done
fi

# stop NAME: SIGTERM, then SIGKILL after 15 s.
stop() {
	f=$RUN/$1.pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill "$pid" 2>/dev/null; then
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 75 ]; do sleep 0.2; i=$((i + 1)); done
		kill -9 "$pid" 2>/dev/null
	fi
	rm -f "$f"
}
for c in $(echo "$COMPONENTS" | tr ' ' '\n' | tac); do stop "$c"; done
# Shims of containers that the CRI could not remove.
pkill -9 -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null

[ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1
# What --cleanup leaves (KUBE-FIREWALL, the kubelet's canaries): the
# rules that jump to a KUBE- chain, then the chains.
for ipt in iptables ip6tables; do
	command -v $ipt >/dev/null || continue
	for t in filter nat mangle; do
		$ipt-save -t $t 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | grep -v '^-A KUBE-' | sed 's/^-A /-D /' |
			while IFS= read -r rule; do eval "$ipt -t $t $rule"; done
		chains=$($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')
		for c in $chains; do $ipt -t $t -F "$c"; done
		for c in $chains; do $ipt -t $t -X "$c"; done
	done
done

# Mounts, deepest first.
for m in $(findmnt -rn -o TARGET | grep -E "^(/var/lib/kubelet|$STATE/containerd|$RUN)" | sort -r); do
	umount "$m" 2>/dev/null || umount -l "$m"
done
for n in /run/netns/cni-*; do
	[ -e "$n" ] && ip netns delete "$(basename "$n")"
done
ip link show cni0 >/dev/null 2>&1 && ip link delete cni0
rm -rf /var/lib/cni/networks/tini-hot-node /var/lib/cni/results
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice; do
	[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done
if [ -f "$STATE/sysctl.saved" ]; then
	while IFS= read -r kv; do sysctl -qw "$kv"; done <"$STATE/sysctl.saved"
	rm -f "$STATE/sysctl.saved"
fi
rm -rf /var/lib/kubelet "$RUN" "$STATE/etcd"
if $purge; then
	rm -rf "$STATE"
fi
left=$(pgrep -f "$BIN/|containerd --config $STATE|etcd --name tini-hot-node" || true)
[ -z "$left" ] || die "processes left: $left"
log "down"
