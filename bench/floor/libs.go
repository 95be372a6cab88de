//go:build libs

package main

import (
	"os"
	"os/signal"

	// Every library of tini-hot with work at start-up (package
	// initialisers, protobuf registrations), blank-imported for it.
	_ "github.com/VictoriaMetrics/metrics"
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/containerd/cgroups/v3/cgroup1"
	_ "github.com/containerd/cgroups/v3/cgroup2"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/prometheus/procfs"
	_ "github.com/spf13/pflag"
	_ "golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"github.com/tini-hot/tini-hot/reaper"
)

func init() {
	subscribe = func() {
		sigs := []os.Signal{unix.SIGCHLD, unix.SIGPIPE}
		for _, s := range reaper.Forwardable() {
			sigs = append(sigs, s)
		}
		signal.Notify(make(chan os.Signal, 1), sigs...)
	}
}
