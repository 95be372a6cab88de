package upgrade

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
)

// waiter is a reload request that wants an answer.
type waiter struct {
	waitDrained bool
	reply       chan result // buffered: the owner never blocks
	done        bool        // answered, or its caller left
}

// result is the answer to a reload: the generation now serving, or why
// the reload failed.
type result struct {
	gen int
	err error
}

// answer replies to w once; nil (a reload by signal) and a waiter whose
// caller left are skipped.
func (w *waiter) answer(gen int, err error) {
	if w == nil || w.done {
		return
	}
	w.done = true
	w.reply <- result{gen, err}
}

// refuse answers every waiter in ws with the error msg.
func refuse(ws []*waiter, msg string) {
	for _, w := range ws {
		w.answer(0, errors.New(msg))
	}
}

// dropWaiter forgets w, whose caller stopped waiting.
func (s *Supervisor) dropWaiter(w *waiter) {
	w.done = true
	gone := func(x *waiter) bool { return x == w }
	s.pending = slices.DeleteFunc(s.pending, gone)
	for _, g := range s.gens {
		g.waiters = slices.DeleteFunc(g.waiters, gone)
		g.drainWaiters = slices.DeleteFunc(g.drainWaiters, gone)
	}
}

// reload starts an upgrade, or queues w for the one after the upgrade in
// progress: requests that arrive during an upgrade, or while the first
// generation is starting, are coalesced into at most one more. w is nil
// for a reload by signal.
func (s *Supervisor) reload(w *waiter) {
	s.counters.Requested++
	if s.requestedAt.IsZero() {
		s.requestedAt = s.sys.now()
	}
	if s.closing() {
		s.requestedAt = time.Time{}
		s.counters.Refused++
		w.answer(0, errors.New(s.closedReason()))
		return
	}
	if s.busy() || s.pendingOn {
		if s.pendingOn {
			s.counters.Coalesced++
		}
		s.queue([]*waiter{w}, s.waitReason)
		return
	}
	s.upgrade([]*waiter{w})
}

// firstStarting reports whether the serving generation is a first one (or
// a restart's) starting and still within its ready timeout: reloads wait
// for it.
func (s *Supervisor) firstStarting() bool {
	return s.current.state == stateStarting && !s.current.overdue
}

// busy reports whether an upgrade cannot start now: one is in progress,
// the first generation is starting, or a restart is under way.
func (s *Supervisor) busy() bool {
	return s.upgrading != nil || s.firstStarting() || s.replace != nil
}

// queue makes waiters wait for the next upgrade; reason says why it
// waits for generations to drain ("" while something else is in the way).
func (s *Supervisor) queue(waiters []*waiter, reason string) {
	s.pendingOn, s.waitReason = true, reason
	for _, w := range waiters {
		if w != nil && !w.done {
			s.pending = append(s.pending, w)
		}
	}
}

// upgrade starts a new generation for waiters, or queues them until
// enough generations have drained: below the --max-draining bound, and
// with the memory for a second generation. An upgrade that cannot fit in
// memory even then is refused, or done by restart, as OnLowMemory says.
func (s *Supervisor) upgrade(waiters []*waiter) {
	if n := len(s.draining()); n >= s.opts.MaxDraining {
		reason := fmt.Sprintf("waiting for one of %d draining generations to exit (--max-draining %d)", n, s.opts.MaxDraining)
		s.log.Info("reload queued", "reason", reason)
		s.queue(waiters, reason)
		return
	}
	switch f, msg := s.headroom(); {
	case f == fitsLater:
		s.log.Info("reload queued", "reason", msg)
		s.queue(waiters, msg)
		return
	case f == fitsNever && s.opts.OnLowMemory == LowMemoryRestart:
		s.waitReason = ""
		s.restart(waiters, msg)
		return
	case f == fitsNever:
		s.waitReason, s.requestedAt = "", time.Time{}
		s.counters.Refused++
		s.log.Warn("reload refused", "reason", msg)
		refuse(waiters, refuseMemory(msg))
		return
	}
	s.waitReason = ""
	g, err := s.start()
	if err != nil {
		s.requestedAt = time.Time{}
		s.counters.Failed++
		s.log.Error("reload failed", "err", err)
		refuse(waiters, err.Error())
		return
	}
	g.waiters, g.reload = waiters, true
	g.requested, s.requestedAt = s.requestedAt, time.Time{}
	s.upgrading = g
	s.watch(g)
}

// startPending starts the upgrade that reloads queued during the last one
// asked for, once nothing is in the way.
func (s *Supervisor) startPending() {
	if !s.pendingOn || s.busy() || s.closing() {
		return
	}
	waiters := s.pending
	s.pending, s.pendingOn = nil, false
	if len(waiters) == 0 {
		waiters = []*waiter{nil}
	}
	s.upgrade(waiters)
}

// draining lists the generations whose main process still drains. At
// the end, they keep their drain deadline rather than the leftovers' kill
// timeout (see sweep).
func (s *Supervisor) draining() []*generation {
	var out []*generation
	for _, g := range s.gens {
		if g.state == stateDraining && !g.exited {
			out = append(out, g)
		}
	}
	return out
}

// ready hands over to g, the first generation or the upgrading one.
func (s *Supervisor) ready(g *generation) { s.readyAt(g, s.sys.now()) }

// readyAt is ready for a generation that said so at a known moment (the
// READY=1 datagram's arrival), for the timings status reports. Nothing is
// handed over from a serving generation that has exited: with no restart
// to replace it, the container ends (see reap), even when the new
// generation's readiness check passed in the same batch of exits.
func (s *Supervisor) readyAt(g *generation, at time.Time) {
	if g.state != stateStarting || g.exited || s.ending() || (g != s.current && (g != s.upgrading || s.current.exited)) {
		return
	}
	g.stopTimers()
	if at.IsZero() || at.Before(g.started) {
		at = s.sys.now()
	}
	g.ready = at
	g.state = stateServing
	s.readyTimes.observe(g.ready.Sub(g.started))
	s.log.Info("generation ready", "generation", g.number, "pid", g.pid, "after", g.ready.Sub(g.started).Round(time.Millisecond))
	if g == s.current {
		// The first generation, or a restart's: nothing to hand over.
		g.overdue, g.reason = false, ""
		if g.reload {
			s.counters.Succeeded++
		}
		for _, w := range g.waiters {
			w.answer(g.number, nil)
		}
		g.waiters = nil
		s.startPending()
		return
	}
	old := s.current
	s.current, s.upgrading = g, nil
	s.steer() // new connections go to g from now on
	s.counters.Succeeded++
	// Each generation is its own process group: the terminal's
	// foreground goes with the service.
	if _, err := s.sys.foreground(old.pid, g.pid); err != nil {
		s.log.Warn("terminal foreground not passed on", "generation", g.number, "err", err)
	}
	s.handOff(old)
	for _, w := range g.waiters {
		if w != nil && w.waitDrained && !old.exited {
			old.drainWaiters = append(old.drainWaiters, w)
			continue
		}
		w.answer(g.number, nil)
	}
	g.waiters = nil
	s.startPending()
}

// beginDrain asks g to finish: its timers stop (a ready timeout, a
// readiness delay) and it gets the drain signal. logArgs add to the log
// line.
func (s *Supervisor) beginDrain(g *generation, logArgs ...any) {
	g.stopTimers()
	g.state, g.drainStart = stateDraining, s.sys.now()
	s.log.Info("draining generation", append([]any{"generation", g.number, "pid", g.pid, "signal", reaper.SignalName(s.opts.DrainSignal)}, logArgs...)...)
	s.send(g, s.opts.DrainSignal)
}

// drain asks g to finish and arms its deadline, when its whole tree is
// killed.
func (s *Supervisor) drain(g *generation) {
	s.beginDrain(g, "timeout", s.opts.DrainTimeout)
	s.armDrainDeadline(g)
}

// armDrainDeadline arms g's drain deadline: SIGKILL to its whole tree then,
// unless its main process has ended by itself (then what it left is
// leftovers' to end, by the same deadline).
func (s *Supervisor) armDrainDeadline(g *generation) {
	g.deadline = s.sys.now().Add(s.opts.DrainTimeout)
	g.arm(s.after(s.opts.DrainTimeout, func() {
		if g.exited {
			return
		}
		if n := s.killTree(g); n > 0 {
			s.log.Warn("drain timeout: killed generation", "generation", g.number, "state", g.state.String(), "processes", n)
		}
	}))
}

// retire ends g, a generation that failed before it was ready. Its main
// process may be serving already: an application accepts on the sockets
// it inherits before it says READY=1 (or before a readiness check
// passes), and SIGKILL would drop, unanswered, the connections it took
// from the shared queue. So a live one gets the drain signal, like an old
// generation, and SIGKILL to its whole tree only at the drain deadline.
// Once its main process has ended, what it left is killed at once.
func (s *Supervisor) retire(g *generation) {
	if g.exited {
		s.killTree(g)
		return
	}
	s.log.Info("stopping failed generation", "generation", g.number, "pid", g.pid, "signal", reaper.SignalName(s.opts.DrainSignal), "timeout", s.opts.DrainTimeout)
	s.send(g, s.opts.DrainSignal)
	s.armDrainDeadline(g)
}

// failed ends the upgrading generation g, which did not become ready;
// the serving one never notices.
func (s *Supervisor) failed(g *generation, reason string) {
	if g.state != stateStarting || g != s.upgrading || s.ending() {
		return
	}
	g.stopTimers()
	g.state, g.reason = stateFailed, reason
	s.retire(g)
	s.log.Warn("reload failed", "reason", reason)
	s.counters.Failed++
	s.upgrading = nil
	refuse(g.waiters, reason)
	g.waiters = nil
	s.forget()
	s.startPending()
}
