// Package usage reads what the container and each generation of the
// application use: the container's memory cgroup (limit, working set, OOM
// kills) through github.com/containerd/cgroups/v3, and a process tree's
// memory (what another copy of it would need: its share of anonymous and
// shared memory, from smaps_rollup), threads, fds and CPU time through
// github.com/prometheus/procfs.
//
// It owns no state of the supervisor's: it only reads, and every read is
// fresh (an in-place pod resize changes the limit at run time). Its
// functions are safe from any goroutine.
package usage
