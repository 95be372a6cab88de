package upgrade

import (
	"fmt"
	"time"

	"github.com/tini-hot/tini-hot/internal/usage"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// fit is whether another generation fits in the container's memory.
type fit int

const (
	fitsNow   fit = iota
	fitsLater     // once the generations still draining are gone
	fitsNever
)

// headroom decides whether a new generation fits next to the serving one:
// it needs what the serving generation's processes hold of anonymous and
// shared memory, each page once (usage.Figures.MemoryBytes: shmem an app
// maps counts, copy-on-write pages its workers share count once), and
// has the limit minus the working set. Figures are read now:
// an in-place resize changes the limit at run time. With no limit, no
// cgroup, figures that cannot be read, or OnLowMemory ignore, it fits.
func (s *Supervisor) headroom() (fit, string) {
	if s.opts.OnLowMemory == LowMemoryIgnore {
		return fitsNow, ""
	}
	m, err := s.sys.memory()
	if err != nil {
		s.log.Warn("container memory unknown: upgrading anyway", "err", err)
		return fitsNow, ""
	}
	if m.Limit == 0 {
		return fitsNow, ""
	}
	ps := s.sys.procs() // one snapshot for every generation
	need := s.anon(ps, s.current)
	free := m.Free()
	if need <= free {
		return fitsNow, ""
	}
	msg := fmt.Sprintf("not enough memory for a second generation: limit %s, working set %s, need %s (the anonymous and shared memory of generation %d)",
		usage.MiB(m.Limit), usage.MiB(m.WorkingSet), usage.MiB(need), s.current.number)
	draining := s.draining()
	var freed uint64
	for _, g := range draining {
		freed += s.anon(ps, g)
	}
	if len(draining) > 0 && need <= free+freed {
		return fitsLater, fmt.Sprintf("%s; waiting for %d draining generations to exit", msg, len(draining))
	}
	return fitsNever, msg
}

// refuseMemory is the advice for a reload refused for memory.
func refuseMemory(msg string) string {
	return msg + "; raise the container's memory limit or set --on-low-memory restart"
}

// anon is the memory a copy of g's processes would need (anonymous and
// shared, each page once), in the snapshot ps.
func (s *Supervisor) anon(ps procs, g *generation) uint64 {
	return s.sys.figures(s.tree(ps, g)).MemoryBytes
}

// oomKilled reports whether e, the exit of g's main process, was the OOM
// killer's: a SIGKILL while the container's OOM-kill count went up since
// the last kill named (or since the start). It names it in the log and in
// g's reason. The count is compared only here: a baseline read at any
// other moment (a reload's memory check) could fall between the kill and
// the reaping of its exit, and hide it. The cost: when the OOM killer took
// a process tini-hot does not reap (a worker of the application's) and a
// SIGKILL from elsewhere then ends a main process, that one is named too;
// the container did run out of memory.
func (s *Supervisor) oomKilled(g *generation, e reaper.Exit) {
	if !e.Status.Signaled() || e.Status.Signal() != unix.SIGKILL {
		return
	}
	m, err := s.sys.memory()
	if err != nil || m.OOMKills <= s.oomSeen {
		return
	}
	s.oomSeen = m.OOMKills
	g.oom = true
	g.reason = fmt.Sprintf("generation %d (pid %d) killed by the OOM killer (%s)", g.number, e.Pid, usage.LimitMiB(m.Limit))
	s.log.Error(g.reason)
}

// releaseEvery bounds how often tini-hot gives memory back. A release is
// a full collection, about 2 ms of CPU: once per reload, 1,000
// back-to-back reloads took 2.9 s of tini-hot's CPU instead of 1.1 s;
// once per 100 ms, 1.0 s.
const releaseEvery = 100 * time.Millisecond

// releaseMemory gives the memory a reload took (the process table, the
// cgroup's figures, the fork) back to the system instead of letting the
// Go runtime keep it. Measured over 1,000 back-to-back reloads, tini-hot's
// RssAnon settles at 2.8-2.9 MB instead of 3.4. At most one release
// runs per releaseEvery; one asked for sooner waits for the end of that
// time, so the last reload of a burst is always followed by one.
func (s *Supervisor) releaseMemory() {
	if s.releaseDue != nil {
		return // one is due
	}
	release := func() {
		s.releaseDue = nil
		s.settleDue.Stop() // this release counts for what it asked
		s.settleDue = nil
		s.releaseAt = s.sys.now().Add(releaseEvery)
		s.sys.release()
	}
	if wait := s.releaseAt.Sub(s.sys.now()); wait > 0 {
		s.releaseDue = s.after(wait, release)
		return
	}
	release()
}

// SettleAfter is how long after the first activity since the last
// release tini-hot gives memory back again (see settle): under probes
// every 2 s, a release every 6 s.
const SettleAfter = 5 * time.Second

// settle notes activity other than a reload's: a control request (probe,
// status, prestop, reload), a scrape, a notice, a reaped process, a
// signal. Each leaves garbage (a status or a scrape reads the process
// table and the cgroup, and renders every figure), which the Go runtime
// collects only once the heap has grown to its goal, and whose pages it
// then keeps. Measured as PID 1 serving the demo under deploy/k8s's
// probes (readiness every 2 s, liveness every 10 s) and a scrape every
// 16 s, RssAnon sampled every 10 s from the first minute to the fifth:
// 2,920-3,860 KiB (median 3,420) before; with this, 2,560-2,728 (median
// 2,564), for 40 ms more of tini-hot's CPU over the 5 minutes.
//
// The release runs SettleAfter after the first activity since the last
// release, whatever comes meanwhile; a reload's end releases too, and
// counts. While a reload is in progress or draining, the timer does
// nothing: its end releases. During the shutdown, nothing is released.
// Nor unless tini-hot's RssAnon has grown by firstCollectionAfter since
// Run began: the first release is the Go runtime's first collection,
// which costs the collector's lists for each size class in use, kept for
// good (docs/INTERNALS.md, "Footprint"), more than a little garbage is worth. An
// application's READY=1 with nothing after it would have taken an idle
// tini-hot from 1.4 MiB to 1.7; probes and scrapes pass the mark within a
// minute, and collecting then, while the heap is small, keeps tini-hot
// lower than waiting for the runtime's own first collection would (median
// 2,564 KiB against 2,748 under the probes above). The tini-hot command
// pays for those first collections once its first generation runs
// (internal/footprint.Trim), which passes the mark: there, activity
// releases from the start.
func (s *Supervisor) settle() {
	if s.settleDue != nil || s.ending() {
		return
	}
	s.settleDue = s.after(SettleAfter, func() {
		s.settleDue = nil
		if s.quiet() && s.worthReleasing() {
			s.releaseMemory()
		}
	})
}

// quiet reports whether nothing is in progress that will release memory
// at its end: no reload, no drain, no shutdown.
func (s *Supervisor) quiet() bool {
	return !s.ending() && !s.busy() && len(s.draining()) == 0
}

// firstCollectionAfter is how much tini-hot's RssAnon must have grown
// since Run began before activity asks for a release (see settle): about
// what the Go runtime's first collection costs.
const firstCollectionAfter = 512 << 10

// worthReleasing reports whether a release after activity gives more than
// it costs: tini-hot's RssAnon has grown by firstCollectionAfter since Run
// began (after the first collection it stays above that), or cannot be
// read.
func (s *Supervisor) worthReleasing() bool {
	anon, err := s.sys.anon()
	return err != nil || s.anonAtStart == 0 || anon >= s.anonAtStart+firstCollectionAfter
}
