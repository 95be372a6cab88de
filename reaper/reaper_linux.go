package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Reaper reaps zombies and receives signals. It owns no goroutine: its
// owner selects on [Reaper.Reapable] and [Reaper.Signals] and calls
// [Reaper.Reap], so starting a process, recording its pid and matching its
// exit all happen in one goroutine and no exit can arrive before its pid is
// known.
type Reaper struct {
	pid     int
	chld    chan os.Signal
	signals chan os.Signal
}

// signalBuffer is how many signals may wait for the owner. os/signal drops
// a signal when the channel is full; 256 covers any burst a person or a
// script sends (a storm of the same signal is coalesced later anyway).
const signalBuffer = 256

// New subscribes to SIGCHLD and to every [Forwardable] signal and, unless
// the process is PID 1, makes it a child subreaper. Call it before starting
// any child, so that no exit and no signal is missed.
func New() (*Reaper, error) {
	r := &Reaper{
		pid:     os.Getpid(),
		chld:    make(chan os.Signal, 1),
		signals: make(chan os.Signal, signalBuffer),
	}
	if r.pid != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	signal.Notify(r.chld, unix.SIGCHLD)
	fwd := Forwardable()
	sigs := make([]os.Signal, len(fwd))
	for i, s := range fwd {
		sigs[i] = s
	}
	signal.Notify(r.signals, sigs...)
	return r, nil
}

// IsInit reports whether the process is PID 1 of its PID namespace.
func (r *Reaper) IsInit() bool { return r.pid == 1 }

// Reapable receives a value when a child may have ended: call Reap.
func (r *Reaper) Reapable() <-chan os.Signal { return r.chld }

// Signals receives every forwardable signal the process gets.
func (r *Reaper) Signals() <-chan os.Signal { return r.signals }

// Stop unsubscribes from all signals. Signals then get the Go runtime's
// default handling.
func (r *Reaper) Stop() {
	signal.Stop(r.chld)
	signal.Stop(r.signals)
}

// Reap collects every child that has ended, without blocking. children is
// false once the process has no child left at all (wait4 said ECHILD): no
// descendant remains either, since orphans are reparented to a subreaper or
// PID 1.
func (r *Reaper) Reap() (exits []Exit, children bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case err == nil && pid > 0:
			exits = append(exits, Exit{Pid: pid, Status: ws})
		case err == nil:
			// pid 0: children exist but none has ended. We never block
			// here, so that the owner stays responsive to signals.
			return exits, true
		case errors.Is(err, unix.EINTR):
			// Interrupted by a signal before anything was reaped: retry.
		case errors.Is(err, unix.ECHILD):
			// No child at all.
			return exits, false
		default:
			// wait4 fails otherwise only for a bad argument (EINVAL),
			// which these constant arguments rule out. Report no more
			// exits for now; the next SIGCHLD retries.
			return exits, true
		}
	}
}

// SignalAll sends sig to every process left below this one: as PID 1 that
// is every other process of the namespace (kill(-1)); as a subreaper, every
// descendant found in /proc. It returns how many processes were signalled
// (as a subreaper) or 1 when kill(-1) found any (as PID 1).
func (r *Reaper) SignalAll(sig unix.Signal) (int, error) {
	if r.IsInit() {
		// kill(-1) from PID 1 reaches every process of the namespace
		// except the caller. It is never used when not PID 1, where it
		// would reach every process of the host the user may signal.
		err := unix.Kill(-1, sig)
		switch {
		case err == nil:
			return 1, nil
		case errors.Is(err, unix.ESRCH):
			// No other process.
			return 0, nil
		default:
			return 0, fmt.Errorf("kill -%s -1: %w", SignalName(sig), err)
		}
	}
	pids, err := Descendants(r.pid)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range pids {
		// ESRCH: it ended since the scan; nothing to do.
		if err := unix.Kill(pid, sig); err == nil {
			n++
		}
	}
	return n, nil
}

// Process is one process of a [Table].
type Process struct {
	Pid, PPID, PGRP int
	Zombie          bool
}

// Table is a snapshot of every process in /proc, by pid.
type Table map[int]Process

// Snapshot reads every process's parent, group and state from /proc.
// Processes that end while it reads are left out.
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
		t[p.PID] = Process{Pid: p.PID, PPID: st.PPID, PGRP: st.PGRP, Zombie: st.State == "Z"}
	}
	return t, nil
}

// Descendants lists the pids of the processes below root, children first.
// A process that called setsid or whose parent ended is still found, as
// long as it was reparented to root or to another descendant (which is
// what a subreaper or PID 1 ensures).
func (t Table) Descendants(root int) []int {
	children := make(map[int][]int)
	for pid, p := range t {
		children[p.PPID] = append(children[p.PPID], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Descendants lists the pids of the processes below root, children first,
// from a fresh [Snapshot].
func Descendants(root int) ([]int, error) {
	t, err := Snapshot()
	if err != nil {
		return nil, err
	}
	return t.Descendants(root), nil
}
