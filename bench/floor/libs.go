//go:build libs

package main

import (
	"os"

	// Every library of tini-hot with work at start-up (package
	// initialisers, protobuf registrations), blank-imported for it.
	_ "github.com/VictoriaMetrics/metrics"
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/containerd/cgroups/v3/cgroup1"
	_ "github.com/containerd/cgroups/v3/cgroup2"
	_ "github.com/prometheus/procfs"
	_ "github.com/spf13/pflag"

	"github.com/tini-hot/tini-hot/reaper"
)

func init() {
	// tini-hot's own subscriptions, as it makes them before it starts
	// the command.
	subscribe = func() {
		if _, err := reaper.New(); err != nil {
			os.Stderr.WriteString("floor: " + err.Error() + "\n")
			os.Exit(1)
		}
	}
}
