package upgrade

import (
	"slices"
	"strconv"

	"github.com/prometheus/procfs"
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
	procs, err := procfs.AllProcs()
	if err != nil {
		return []int{pid}
	}
	type info struct{ ppid, pgrp int }
	table := make(map[int]info, len(procs))
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && st.State != "Z" {
			table[p.PID] = info{st.PPID, st.PGRP}
		}
	}
	below := func(p, root int) bool {
		for i := 0; i < 4096 && p > 1; i++ {
			in, ok := table[p]
			if !ok {
				return false
			}
			if in.ppid == root {
				return true
			}
			p = in.ppid
		}
		return false
	}
	marker := generationEnv + "=" + strconv.Itoa(gen)
	var out []int
	for p, in := range table {
		switch {
		case p == self:
		case p == pid, in.pgrp == pid, below(p, pid):
			out = append(out, p)
		case self == 1 || below(p, self):
			if hasEnv(p, marker) {
				out = append(out, p)
			}
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
