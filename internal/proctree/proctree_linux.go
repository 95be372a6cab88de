package proctree

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Process is one process of a [Table].
type Process struct {
	Pid, PPID, PGRP int
	Zombie          bool
	// Start is the process's start time in clock ticks after boot: with
	// Pid, it names one process for good.
	Start uint64
}

// Table is a snapshot of every process in /proc, by pid.
type Table map[int]Process

// Snapshot reads every process's parent, group, state and start time from
// /proc. Processes that end while it reads are left out.
func Snapshot() (Table, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	t := make(Table, len(procs))
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			// The process ended while we read /proc.
			continue
		}
		t[p.PID] = process(st)
	}
	return t, nil
}

// Read reads one process's entry, as [Snapshot] does for each.
func Read(pid int) (Process, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Process{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return Process{}, err
	}
	return process(st), nil
}

func process(st procfs.ProcStat) Process {
	return Process{Pid: st.PID, PPID: st.PPID, PGRP: st.PGRP, Zombie: st.State == "Z", Start: st.Starttime}
}

// Descendants lists the processes below root, children first. A process
// that called setsid or whose parent ended is still found, as long as it
// was reparented to root or to another descendant (which is what a
// subreaper or PID 1 ensures).
func (t Table) Descendants(root int) []Process {
	children := make(map[int][]int)
	for pid, p := range t {
		children[p.PPID] = append(children[p.PPID], pid)
	}
	var out []Process
	seen := map[int]bool{root: true}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			// A table read while processes end and pids are reused may
			// show a loop (root's parent reused by its descendant):
			// each process is listed once.
			if !seen[c] {
				seen[c] = true
				out = append(out, t[c])
				queue = append(queue, c)
			}
		}
	}
	return out
}

// Others lists every process of the table but self: as PID 1 of a
// namespace, that includes processes entered from outside it (kubectl
// exec), whose parent is not in the namespace.
func (t Table) Others(self int) []Process {
	out := make([]Process, 0, len(t))
	for pid, p := range t {
		if pid != self {
			out = append(out, p)
		}
	}
	return out
}

// Generation lists the live (not zombie) processes of one generation
// whose main process has pid, found three ways, since each alone misses
// some:
//
//   - the main process and its descendants through parent pids;
//   - members of the process group pid (every generation starts one);
//   - processes below self whose environment holds marker
//     (TINI_HOT_GENERATION=N): this finds double-forked and setsid
//     processes that were reparented to tini-hot.
//
// The first two hold only while the main process has not been reaped
// (mainAlive): after that its pid, and so the group id, may belong to a
// new process, and only the marker counts. A process that rewrote its
// environment and escaped both pid and group is not found.
func (t Table) Generation(self, pid int, mainAlive bool, marker string) []Process {
	return t.generation(self, pid, mainAlive, func(pid int) bool { return hasEnv(pid, marker) })
}

// generation is Generation with marked telling whether a process's
// environment holds the marker.
func (t Table) generation(self, pid int, mainAlive bool, marked func(pid int) bool) []Process {
	found := map[int]bool{}
	if mainAlive {
		found[pid] = true
		for _, p := range t.Descendants(pid) {
			found[p.Pid] = true
		}
		for p, proc := range t {
			if proc.PGRP == pid {
				found[p] = true
			}
		}
	}
	// Reparented processes are below self (all are, for PID 1).
	for _, p := range t.Descendants(self) {
		if !found[p.Pid] && marked(p.Pid) {
			found[p.Pid] = true
		}
	}
	var out []Process
	for p := range found {
		if proc, ok := t[p]; ok && !proc.Zombie && p != self {
			out = append(out, proc)
		}
	}
	return out
}

// Member reports whether p belongs to the generation whose main process
// has pid and is not reaped yet, by the three ways of [Table.Generation],
// asking about p alone: its ancestors are read one by one, and its
// environment only if it is below self. It costs a read of /proc per
// level of p below self (or below PID 1), not a read of every process.
// Unlike Generation, a zombie still counts: it tells whose process it
// was until it is reaped.
//
// An ancestor that ended meanwhile (its read fails, or its pid now names
// a process younger than its supposed child) has left p to another
// parent: p is read again and its new line of parents followed, a few
// times at most.
func Member(p Process, self, pid int, marker string) bool {
	return member(p, self, pid, Read, func(pid int) bool { return hasEnv(pid, marker) })
}

// Bounds of Member's walk: the times it starts again after an ancestor
// ended, and the levels it climbs (a backstop against a loop of reused
// pids whose start times agree: the same tick).
const (
	memberTries  = 3
	memberLevels = 4096
)

// member is Member with read reading a process and marked telling
// whether its environment holds the marker.
func member(p Process, self, pid int, read func(int) (Process, error), marked func(int) bool) bool {
	if p.Pid == self {
		return false
	}
	if p.Pid == pid || p.PGRP == pid {
		return true
	}
	for range memberTries {
		below, ended := false, false
		for q, level := p, 0; ; level++ {
			if q.PPID == pid {
				return true
			}
			if q.PPID == self {
				below = true // and on: the main process may be above
			}
			if q.PPID <= 0 || level == memberLevels {
				break
			}
			up, err := read(q.PPID)
			if err != nil || up.Start > q.Start {
				// Above self, it changes nothing of p's being below.
				ended = !below
				break
			}
			q = up
		}
		if !ended {
			return below && marked(p.Pid)
		}
		again, err := read(p.Pid)
		if err != nil || again.Start != p.Start {
			return false // p itself is gone
		}
		p = again
	}
	return false
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

// Adopted lists the children of process pid's main thread: the orphans
// it adopted as PID 1 or as a subreaper (the kernel gives them to the
// first live thread of the process, the main one while it lives, as a Go
// program's always does), and the children that thread forked. An error
// means the kernel has no such file (CONFIG_PROC_CHILDREN). The kernel
// documents the list as unreliable while children are reaped meanwhile
// (one may then hide another), so only the process that reaps them may
// trust it, and only between two reaps: tini-hot's supervisor. It costs
// one small read, not a read per process of the table.
func Adopted(pid int) ([]int, error) {
	p := strconv.Itoa(pid)
	b, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// Signal sends sig to p if the process with p's pid is still p: it opens
// a pidfd, compares the start time, and signals through the pidfd.
// ESRCH means p is gone (or its pid now names another process, which is
// left alone).
func Signal(p Process, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		// ESRCH: no process with this pid any more.
		return fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	defer unix.Close(fd)
	// The pidfd now pins the process that had the pid when it was opened;
	// if that is not the snapshot's process, the pid was reused.
	if now, err := Read(p.Pid); err != nil || now.Start != p.Start {
		return fmt.Errorf("signal %d: %w (the pid was reused)", p.Pid, unix.ESRCH)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		return fmt.Errorf("pidfd_send_signal %d: %w", p.Pid, err)
	}
	return nil
}

// SignalAll sends sig to every process of ps that is still the same
// process and returns how many were signalled.
func SignalAll(ps []Process, sig unix.Signal) int {
	n := 0
	for _, p := range ps {
		// ESRCH: it ended since the snapshot; EPERM: not ours to signal
		// (entered from outside as another user). Nothing to do for
		// either.
		if Signal(p, sig) == nil {
			n++
		}
	}
	return n
}
