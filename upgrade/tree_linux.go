package upgrade

import (
	"slices"
	"strconv"

	"github.com/prometheus/procfs"
	"github.com/tini-hot/tini-hot/reaper"
)

// generationEnv marks every process of generation N: TINI_HOT_GENERATION=N
// is in the application's environment and inherited by whatever it
// starts.
const generationEnv = "TINI_HOT_GENERATION"

// treeOf lists the live processes of generation gen whose main process is
// (or was) pid, found three ways, since each alone misses some:
//
//   - descendants of pid through parent pids (while pid lives);
//   - members of the process group pid (every generation starts one);
//   - processes below self whose environment holds
//     TINI_HOT_GENERATION=gen: this finds double-forked and setsid
//     processes that were reparented to tini-hot. A process that rewrote
//     its environment and escaped both pid and group is not found.
func treeOf(self, pid, gen int) []int {
	t, err := reaper.Snapshot()
	if err != nil {
		return []int{pid}
	}
	found := map[int]bool{pid: true}
	for _, p := range t.Descendants(pid) {
		found[p] = true
	}
	for p, proc := range t {
		if proc.PGRP == pid {
			found[p] = true
		}
	}
	// Reparented processes are below self (all are, for PID 1).
	marker := generationEnv + "=" + strconv.Itoa(gen)
	for _, p := range t.Descendants(self) {
		if !found[p] && hasEnv(p, marker) {
			found[p] = true
		}
	}
	var out []int
	for p := range found {
		if proc, ok := t[p]; ok && !proc.Zombie && p != self {
			out = append(out, p)
		}
	}
	return out
}

// hasEnv reports whether process pid's environment holds kv.
func hasEnv(pid int, kv string) bool {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return false
	}
	env, err := p.Environ()
	return err == nil && slices.Contains(env, kv)
}
