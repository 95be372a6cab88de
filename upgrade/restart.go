package upgrade

import (
	"fmt"
)

// replacement is a generation to start on the held sockets once the
// serving one is gone: the upgrade that did not fit in memory
// (--on-low-memory restart), or the command started again after that
// upgrade's generation failed.
type replacement struct {
	why     string
	waiters []*waiter
	// reload: it is an upgrade (counted, answered); retry: if its
	// generation fails before ready, the command is started once more,
	// so that the container is not left with nothing.
	reload bool
	retry  bool
}

// restart is the upgrade that does not fit next to the serving
// generation: drain that one (and wait for every generation still
// draining), then start the new one. New connections wait in the
// kernel's backlog meanwhile.
func (s *Supervisor) restart(waiters []*waiter, why string) {
	old := s.current
	s.log.Warn("upgrading by restart: draining the serving generation first", "generation", old.number, "reason", why)
	s.replace = &replacement{why: why, waiters: waiters, reload: true, retry: true}
	s.drain(old)
}

// replaceNow starts the replacement once the serving generation and every
// draining one have exited; it runs after every reap.
func (s *Supervisor) replaceNow() {
	r := s.replace
	if r == nil || s.ending() || !s.current.exited || len(s.draining()) > 0 {
		return
	}
	s.replace = nil
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
	g.waiters, g.reload, g.retry, g.replacing = r.waiters, r.reload, r.retry, true
	s.current = g
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
	s.replace = &replacement{why: fmt.Sprintf("generation %d failed", g.number)}
}
