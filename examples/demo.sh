#!/bin/sh
# The hot-upgrade demo of the old article, end to end: build tini-hot and
# the demo server, run the server under tini-hot on a free port, start a
# slow request, reload, send a new request, and print the pid that answered
# each: the slow request finishes on the old pid, the new one gets the new
# pid. Everything is removed afterwards.
#
# Run from the repository root (root not needed): sh examples/demo.sh
# Needs: go, curl. SLOW=N sets the slow request's seconds (default 5).
set -eu
command -v curl >/dev/null || { echo "demo: curl is needed (apt-get install curl)" >&2; exit 1; }
slow=${SLOW:-5}
dir=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then wait "$pid" || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building tini-hot and the demo server"
go build -o "$dir/tini-hot" ./cmd/tini-hot
go build -o "$dir/demo" ./examples/demo
th() { "$dir/tini-hot" --control "$dir/control.sock" "$@"; }

echo "== starting: tini-hot -l http=tcp://127.0.0.1:0 --ready notify -- demo"
"$dir/tini-hot" -v -v --control "$dir/control.sock" -l http=tcp://127.0.0.1:0 --ready notify -- "$dir/demo" >"$dir/log" 2>&1 &
pid=$!
i=0
until th probe >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "demo: tini-hot did not become ready:" >&2; cat "$dir/log" >&2; exit 1; }
	sleep 0.05
done
addr=$(th status | sed -n 's|^listener http tcp://||p')
echo "   serving on $addr"

echo "== GET /?sleep=$slow (in the background), then a reload while it runs"
curl -sS "http://$addr/?sleep=$slow" >"$dir/slow" &
curl_pid=$!
i=0
until grep -q "sleep=$slow started" "$dir/log"; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "demo: the slow request never reached the server:" >&2; cat "$dir/log" >&2; exit 1; }
	sleep 0.05
done
echo "   tini-hot reload: $(th reload)"
# The old generation closes its listener when it gets the drain signal; a
# connection it accepted in the instant before is served by it, not lost.
i=0
new=$(curl -sS "http://$addr/")
while case "$new" in *gen:2) false ;; *) [ $i -lt 50 ] ;; esac do
	i=$((i + 1)); sleep 0.02; new=$(curl -sS "http://$addr/")
done
wait "$curl_pid"
old=$(cat "$dir/slow")

echo "== result"
echo "   slow request, began before the reload: $old"
echo "   new request, after the reload:         $new"
th status | sed 's/^/   /'
case "$old" in *gen:1) ;; *) echo "demo: the slow request was not answered by generation 1" >&2; exit 1 ;; esac
case "$new" in *gen:2) ;; *) echo "demo: the new request was not answered by generation 2" >&2; exit 1 ;; esac
echo "== stopping tini-hot (SIGTERM)"
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
pid=
echo "   tini-hot exited with status $status"
if [ "$status" != 0 ]; then
	echo "== log of tini-hot and the demo server" >&2
	cat "$dir/log" >&2
	exit 1
fi
