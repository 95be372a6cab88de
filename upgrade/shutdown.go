package upgrade

import (
	"errors"
	"fmt"
	"time"

	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// pollInterval bounds how long a missed SIGCHLD could delay reaping while
// the last processes are being terminated, and how soon a process forked
// after a SIGKILL round gets its own.
const pollInterval = time.Second

// signal starts the shutdown (SIGTERM) or a reload (the reload signal),
// or forwards sig to the serving generation. Once the shutdown has
// begun, SIGTERM and SIGINT change nothing: the drain runs to its end or
// to the grace period's.
func (s *Supervisor) signal(sig unix.Signal) {
	switch {
	case sig == unix.SIGTERM:
		s.shutdown()
	case s.stopping && sig == unix.SIGINT:
		s.log.Info("already shutting down: signal ignored", "signal", reaper.SignalName(sig), "deadline", s.deadline.Sub(s.sys.now()).Round(time.Millisecond))
	case s.finishing:
		s.log.Debug("signal ignored: the application has ended", "signal", reaper.SignalName(sig))
	case sig == s.opts.ReloadSignal:
		s.log.Info("reload requested by signal", "signal", reaper.SignalName(sig))
		s.reload(nil)
	default:
		s.send(s.current, sig)
	}
}

// ending reports whether the container is ending: after SIGTERM, or once
// the serving generation has ended. No generation becomes ready then.
func (s *Supervisor) ending() bool { return s.stopping || s.finishing }

// closing reports whether termination has been announced or begun:
// reloads are refused and probe fails.
func (s *Supervisor) closing() bool { return !s.announced.IsZero() || s.finishing }

// closedReason says why reloads are refused and probe fails.
func (s *Supervisor) closedReason() string {
	switch {
	case s.stopping:
		return "shutting down (SIGTERM received)"
	case s.finishing && s.gaveUp != "":
		return "shutting down (" + s.gaveUp + ")"
	case s.finishing:
		return "shutting down (the application has exited)"
	}
	return "termination announced by " + s.announcedBy
}

// announce records the first notice that termination is coming: from
// then on probe fails and reloads are refused; the reloads queued are
// answered. An upgrade in progress goes on (SIGTERM aborts it).
func (s *Supervisor) announce(by string) {
	if !s.announced.IsZero() {
		return
	}
	s.announced, s.announcedBy = s.sys.now(), by
	s.log.Info("termination announced", "by", by)
	refuse(s.pending, s.closedReason())
	s.pending, s.pendingOn, s.waitReason, s.requestedAt = nil, false, "", time.Time{}
}

// prestop is the preStop hook's notice, or with cancel its withdrawal.
// The kubelet sends SIGTERM once the hook has run, within the grace
// period: a prestop that no SIGTERM follows within it (run by hand, by a
// hook of a pod that is not terminating) is withdrawn then, so that the
// pod does not stay unready and refuse reloads for good.
func (s *Supervisor) prestop(cancel bool) (int, error) {
	switch {
	case s.finishing || s.stopping:
		return 0, errors.New(s.closedReason())
	case cancel && s.announcedBy != "prestop":
		return 0, errors.New("no prestop to cancel")
	case cancel:
		s.withdraw("prestop --cancel")
		return s.current.number, nil
	}
	if s.announced.IsZero() {
		s.announce("prestop")
		s.withdrawDue = s.after(s.opts.GracePeriod, func() {
			s.withdrawDue = nil
			if !s.stopping && s.announcedBy == "prestop" {
				s.withdraw(fmt.Sprintf("no SIGTERM within --grace-period %v of prestop", s.opts.GracePeriod))
			}
		})
	}
	return s.current.number, nil
}

// withdraw undoes a prestop's announcement: probe passes again and
// reloads are taken.
func (s *Supervisor) withdraw(why string) {
	s.withdrawDue.Stop()
	s.withdrawDue = nil
	s.announced, s.announcedBy = time.Time{}, ""
	s.log.Warn("termination announcement withdrawn: ready and reloading again", "why", why)
}

// shutdown is SIGTERM: keep serving until ShutdownDelay has passed since
// the first notice, then drain every generation; whatever is left
// KillMargin before the grace period ends is killed.
func (s *Supervisor) shutdown() {
	now := s.sys.now()
	if s.stopping {
		s.log.Info("already shutting down: signal ignored", "signal", "SIGTERM", "deadline", s.deadline.Sub(now).Round(time.Millisecond))
		return
	}
	if !s.announced.IsZero() && now.Sub(s.announced) >= s.opts.GracePeriod {
		// A prestop that long ago was no kubelet's: count from now.
		s.announced = time.Time{}
	}
	s.stopping = true
	s.withdrawDue.Stop()
	s.withdrawDue = nil
	s.announce("SIGTERM")
	if r := s.replace; r != nil {
		s.log.Warn("restart abandoned: shutting down", "reason", r.why)
		refuse(r.waiters, "restart abandoned: shutting down")
		s.replace = nil
	}
	s.deadline = s.announced.Add(s.opts.GracePeriod - KillMargin(s.opts.GracePeriod))
	s.after(s.deadline.Sub(now), s.killAtDeadline)
	if g := s.upgrading; g != nil {
		s.log.Warn("upgrade aborted: shutting down", "generation", g.number)
		g.reason = "upgrade aborted by shutdown"
		refuse(g.waiters, fmt.Sprintf("generation %d: upgrade aborted: shutting down", g.number))
		g.waiters = nil
		s.upgrading = nil
	}
	delay := s.announced.Add(s.opts.ShutdownDelay).Sub(now)
	s.log.Info("shutting down", "drain_in", max(delay, 0).Round(time.Millisecond), "kill_in", s.deadline.Sub(now).Round(time.Millisecond))
	if s.allExited() {
		// Between a crash and its restart: nothing to drain, and no exit
		// to wait for; end now.
		s.reap()
		return
	}
	if delay > 0 {
		s.after(delay, s.drainAll)
		return
	}
	s.drainAll()
}

// drainAll sends the drain signal to every generation not draining yet.
// Generations draining from an upgrade keep their own deadline.
func (s *Supervisor) drainAll() {
	if s.finishing {
		return
	}
	for _, g := range s.gens {
		if !g.exited && (g.state == stateStarting || g.state == stateServing) {
			s.beginDrain(g) // no deadline of its own: the grace period rules now
		}
	}
}

// killAtDeadline kills every process left when the grace period is about
// to end.
func (s *Supervisor) killAtDeadline() {
	s.log.Warn("grace period ending: killing every process left", "grace_period", s.opts.GracePeriod)
	s.killing = true
	s.sweep(unix.SIGKILL) // everything: the deadline spares no generation
	s.pollKill()
}

// reap collects exits and decides whether the container ends: when the
// serving generation has ended outside a shutdown, or every generation
// after SIGTERM. Run returns once no process is left.
func (s *Supervisor) reap() {
	exits, children := s.r.Reap()
	s.handleExits(exits)
	s.replaceNow()
	switch {
	case s.finishing:
		s.over = !children
	case s.current.exited && !s.stopping && s.replace == nil, s.stopping && s.allExited():
		s.finish(children)
	}
}

// allExited reports whether every generation's main process has ended.
func (s *Supervisor) allExited() bool {
	for _, g := range s.gens {
		if !g.exited {
			return false
		}
	}
	return true
}

// finish begins the end: the serving generation has exited (outside a
// shutdown) or every generation has (after SIGTERM). Every reload still
// waiting is answered, an upgrade in progress is abandoned, and the
// processes left get SIGTERM, then SIGKILL at KillTimeout (or the grace
// period's deadline). Generations still draining from an upgrade keep
// their own drain deadline. Run returns when no process is left, with
// the serving generation's exit.
func (s *Supervisor) finish(children bool) {
	s.finishing = true
	s.exit = s.current.exit
	if g := s.upgrading; g != nil {
		g.reason = "upgrade aborted: the serving generation exited"
		s.upgrading = nil
	}
	for _, g := range s.gens {
		refuse(append(g.waiters, g.drainWaiters...), s.closedReason())
		g.waiters, g.drainWaiters = nil, nil
		if g.state != stateDraining || g.exited {
			g.stopTimers() // a drain deadline still counts
		}
		if g.state == stateStarting {
			// Abandoned: terminated with the processes left.
			g.state = stateFailed
		}
	}
	refuse(s.pending, s.closedReason())
	s.pending, s.pendingOn, s.waitReason = nil, false, ""
	if !children {
		s.over = true
		return
	}
	wait := s.opts.KillTimeout
	if s.stopping {
		wait = max(min(wait, s.deadline.Sub(s.sys.now())), 0)
	}
	if n := s.sweep(unix.SIGTERM); n > 0 {
		s.log.Info("terminating remaining processes", "signal", "SIGTERM", "kill_in", wait)
	}
	s.after(wait, func() {
		s.log.Warn("processes left: sending SIGKILL", "after", wait)
		s.killing = true
		s.sweep(unix.SIGKILL)
	})
	s.pollKill()
}

// pollKill reaps every pollInterval while the end goes on, in case a
// SIGCHLD was missed, and once killing has begun sends SIGKILL to
// whatever was forked since the last round.
func (s *Supervisor) pollKill() {
	if s.polling {
		return
	}
	s.polling = true
	s.after(pollInterval, func() {
		s.polling = false
		if s.over {
			return
		}
		if s.killing {
			s.sweep(unix.SIGKILL)
		}
		if s.finishing {
			s.reap()
		}
		s.pollKill()
	})
}

// sweep sends sig to every process left but the trees of the generations
// still draining (all of them once the grace period's deadline has come)
// and returns how many it signalled (1 for "some", as PID 1).
func (s *Supervisor) sweep(sig unix.Signal) int {
	keep := s.draining()
	if len(keep) == 0 || (s.stopping && s.killing) {
		n, err := s.r.SignalAll(sig)
		if err != nil {
			s.log.Warn("signal remaining processes", "signal", reaper.SignalName(sig), "err", err)
		}
		return n
	}
	ps := s.sys.procs()
	spared := map[int]bool{}
	for _, g := range keep {
		for _, p := range s.tree(ps, g) {
			spared[p.Pid] = true
		}
	}
	var left []proctree.Process
	for _, p := range ps.others() {
		if !spared[p.Pid] && !p.Zombie {
			left = append(left, p)
		}
	}
	return s.sys.signal(left, sig)
}
