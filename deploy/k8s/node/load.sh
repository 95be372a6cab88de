#!/bin/sh
# load.sh IMAGE...: copies podman images into the node's containerd, under
# the full name that the kubelet looks for: tini-hot-demo:latest, which
# podman calls localhost/tini-hot-demo:latest, becomes
# docker.io/library/tini-hot-demo:latest, what a manifest's
# "image: tini-hot-demo:latest" means.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ $# -gt 0 ] || { echo "usage: load.sh IMAGE..." >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for img; do
	name=${img#localhost/}
	case "$name" in
	*/*)
		case "${name%%/*}" in
		*.* | *:*) full=$name ;; # names its registry
		*) full=docker.io/$name ;;
		esac
		;;
	*) full=docker.io/library/$name ;;
	esac
	podman tag "$img" "$full"
	rm -f "$tmp/image.tar"
	podman save -q --format docker-archive -o "$tmp/image.tar" "$full"
	ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$tmp/image.tar" >/dev/null
	log "loaded $full"
done
