package upgrade

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
)

// replacement is a generation to start on the held sockets once the
// serving one is gone: after it crashed (--restart), for the upgrade that
// did not fit in memory (--on-low-memory restart), or the command started
// again after that upgrade's generation failed.
type replacement struct {
	why     string
	waiters []*waiter
	// notBefore: the crash back-off; waitDrained: start only once no
	// generation drains (the memory they hold).
	notBefore   time.Time
	waitDrained bool
	// reload: it is an upgrade (counted, answered); retry: if its
	// generation fails before ready, the command is started once more,
	// so that the container is not left with nothing.
	reload bool
	retry  bool
	// requested is when the reload it serves was asked for.
	requested time.Time
}

// restart is the upgrade that does not fit next to the serving
// generation: drain that one (and wait for every generation still
// draining), then start the new one. New connections wait in the
// kernel's backlog meanwhile.
func (s *Supervisor) restart(waiters []*waiter, why string) {
	old := s.current
	s.log.Warn("upgrading by restart: draining the serving generation first", "generation", old.number, "reason", why)
	s.replace = &replacement{why: why, waiters: waiters, reload: true, retry: true, waitDrained: true, requested: s.requestedAt}
	s.requestedAt = time.Time{}
	s.drain(old)
}

// replaceNow starts the replacement once the serving generation and every
// draining one have exited; it runs after every reap.
func (s *Supervisor) replaceNow() {
	r := s.replace
	if r == nil || s.ending() || !s.current.exited || (r.waitDrained && len(s.draining()) > 0) || s.sys.now().Before(r.notBefore) {
		return
	}
	s.replace = nil
	// The reloads queued until now are served by this start of the
	// command, which comes after them: its readiness answers them, and
	// its failure, at once rather than at the end of a crash loop.
	if s.pendingOn {
		if r.reload {
			s.counters.Coalesced++ // the upgrade they queued is this one
		}
		r.waiters, r.reload = append(r.waiters, s.pending...), true
		s.pending, s.pendingOn, s.waitReason = nil, false, ""
	}
	g, err := s.start()
	if err != nil {
		// Nothing serves, nothing can: the container ends with the last
		// serving generation's exit (see reap).
		s.log.Error("restart failed", "err", err)
		if r.reload {
			s.counters.Failed++
		}
		refuse(r.waiters, err.Error())
		return
	}
	g.waiters, g.reload, g.retry, g.replacing, g.requested = r.waiters, r.reload, r.retry, true, r.requested
	s.current = g
	s.forget() // the one it replaces may go now
	s.watch(g)
}

// replacementFailed handles g, a replacement that failed before ready:
// its waiters get the reason, and, once it has exited, the command is
// started again, once.
func (s *Supervisor) replacementFailed(g *generation, reason string) {
	g.stopTimers()
	g.state, g.reason = stateFailed, reason
	s.killTree(g)
	s.log.Warn("restart failed: starting the command again", "reason", reason)
	if g.reload {
		s.counters.Failed++
	}
	refuse(g.waiters, reason+"; starting the command again")
	g.waiters = nil
	s.replace = &replacement{why: fmt.Sprintf("generation %d failed", g.number), waitDrained: true}
}

// restartDelay is the back-off before the restart after the nth crash
// within the window: none after the first, then RestartBackoff, doubling
// up to RestartBackoffMax.
func restartDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	if n-2 >= 16 {
		return RestartBackoffMax // no shift beyond the bound
	}
	return min(RestartBackoff<<(n-2), RestartBackoffMax)
}

// restartBackoffs is the back-off before limit restarts in a row: the
// shortest time in which limit+1 crashes can happen.
func restartBackoffs(limit int) time.Duration {
	var d time.Duration
	for n := 1; n <= limit; n++ {
		delay := restartDelay(n)
		if delay == RestartBackoffMax {
			// Every one after is the bound too (saturated, not overflowed).
			rest := time.Duration(limit - n + 1)
			if rest > (math.MaxInt64-d)/RestartBackoffMax {
				return math.MaxInt64
			}
			return d + rest*RestartBackoffMax
		}
		d += delay
	}
	return d
}

// crashed applies the restart policy to g, the serving generation, which
// exited on its own with e: unless the policy says no, or it crashed too
// often, a new generation starts on the held sockets (at once the first
// time, then after a back-off), and an upgrade in progress simply takes
// over. What g left gets the drain signal, and SIGKILL at the drain
// deadline. Otherwise the container ends (see reap).
func (s *Supervisor) crashed(g *generation, e reaper.Exit) {
	switch p := s.opts.Restart; {
	case s.replace != nil, p == RestartNever, p == RestartOnFailure && (e.Code() == 0 || s.opts.Expected[e.Code()]):
		return
	}
	now := s.sys.now()
	s.crashes = slices.DeleteFunc(s.crashes, func(t time.Time) bool { return now.Sub(t) >= s.opts.RestartWindow })
	s.crashes = append(s.crashes, now)
	if len(s.crashes) > s.opts.RestartLimit {
		s.gaveUp = fmt.Sprintf("the application crashed %d times within %v; generation %d %s", len(s.crashes), s.opts.RestartWindow, g.number, e)
		s.log.Error("giving up: the application crashed too often", "crashes", len(s.crashes), "within", s.opts.RestartWindow, "last", e.String())
		return
	}
	s.restarts++
	g.deadline = now.Add(s.opts.DrainTimeout)
	s.leftovers(g)
	if up := s.upgrading; up != nil {
		s.log.Warn("serving generation ended: the upgrade in progress takes over", "generation", g.number, "how", e.String(), "next", up.number)
		s.current, s.upgrading = up, nil
		up.replacing = true
		return
	}
	delay := restartDelay(len(s.crashes))
	why := fmt.Sprintf("generation %d %s", g.number, e)
	s.log.Warn("serving generation ended: restarting", "generation", g.number, "how", e.String(), "restart", s.restarts, "in", delay, "policy", string(s.opts.Restart))
	s.replace = &replacement{why: why, notBefore: now.Add(delay)}
	if delay > 0 {
		s.after(delay, s.replaceNow)
	}
}
