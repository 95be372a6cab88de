#!/bin/sh
# Demo: tini-hot as PID 1 of a new PID namespace reaps 1,000 orphans, then
# forwards SIGTERM to its child and exits with the child's status.
# Run as root from the repository root: sh examples/reap-demo.sh
set -eu
go build -o /tmp/tini-hot ./cmd/tini-hot
exec unshare -p -f --kill-child --mount-proc /tmp/tini-hot -v -v -- sh -c '
	echo "I am pid $$ in my namespace; making 1,000 orphans"
	i=0; while [ $i -lt 1000 ]; do ( : & ); i=$((i+1)); done
	sleep 1
	echo "zombies left: $(grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l)"
	trap "echo got SIGTERM, exiting 143; exit 143" TERM
	echo "sending SIGTERM to PID 1, which forwards it to me"
	kill -TERM 1
	sleep 5 & wait
'
