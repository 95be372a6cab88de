package upgrade

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// ErrStopped is returned by the methods of a Supervisor whose Run has
// returned.
var ErrStopped = errors.New("shutting down")

// Supervisor runs the application's generations. Create it with New, then
// call Run once; the other methods may be called from any goroutine.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	sys  sys
	r    reaperAPI
	self int
	// do carries work to the owner goroutine: requests, timers. It is
	// unbuffered, so a send that succeeds is a function that runs.
	do      chan func()
	notices chan notifyEvent
	done    chan struct{}
	// reading lets one Status at a time read /proc and the cgroup: each
	// read is many system calls, and callers reading at once (a burst of
	// `status`, scrapes) would each hold a thread of their own, which a
	// container at its pids limit cannot give (see Status).
	reading sync.Mutex

	// Everything below is owned by the Run goroutine.
	gens      []*generation // every generation still of interest, oldest first
	current   *generation   // the serving generation (or the first, starting)
	upgrading *generation   // a new generation not yet ready
	pending   []*waiter     // reloads waiting for the next upgrade
	pendingOn bool          // a reload asked for the next upgrade
	next      int
	counters  ReloadCounters
	// waitReason says why the queued upgrade waits for draining
	// generations to exit; replace is the generation to start once the
	// serving one is gone (see restart.go).
	waitReason string
	replace    *replacement
	// requestedAt is when the first reload the next upgrade serves was
	// asked for.
	requestedAt time.Time
	// Figures for status and metrics.
	reaped     uint64
	readyTimes Histogram
	drainTimes Histogram
	// oomSeen is the container's OOM-kill count at the start or at the
	// last OOM kill named.
	oomSeen uint64
	// releaseAt is the earliest time tini-hot gives memory back again;
	// releaseDue is the release waiting for it (see releaseMemory);
	// settleDue is the release activity asked for (see settle).
	releaseAt  time.Time
	releaseDue *timer
	settleDue  *timer
	// anonAtStart is tini-hot's RssAnon when the first generation had
	// started, 0 if unknown
	// (see worthReleasing).
	anonAtStart uint64
	// restarts counts the generations started after the serving one
	// crashed (--restart); crashes are the times of the crashes within
	// the last RestartWindow.
	restarts int
	crashes  []time.Time
	// gaveUp says why the restarts stopped (too many crashes).
	gaveUp string
	// announced is when termination was first announced (prestop or
	// SIGTERM) and by what; stopping is set by SIGTERM, deadline is when
	// every process left gets SIGKILL.
	announced   time.Time
	announcedBy string
	withdrawDue *timer // a prestop's announcement withdrawn without SIGTERM
	stopping    bool
	deadline    time.Time
	// finishing is set once the serving generation has ended (or, after
	// SIGTERM, every generation): only processes left are terminated.
	// killing once they get SIGKILL; over ends Run with exit.
	finishing bool
	killing   bool
	polling   bool
	over      bool
	exit      reaper.Exit
}

// New checks opts, fills in defaults and returns a Supervisor for them.
func New(opts Options) (*Supervisor, error) {
	if opts.Reaper == nil {
		return nil, errors.New("no reaper")
	}
	self := os.Getpid()
	return newSupervisor(opts, opts.Reaper, osSys(self, opts.Reaper.IsInit(), opts.Container), self)
}

// newSupervisor is New with the seam and the reaper given: the unit tests'
// way in.
func newSupervisor(opts Options, r reaperAPI, sys sys, self int) (*Supervisor, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	opts.Env = withoutActivation(opts.Env)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{
		opts:       opts,
		log:        log,
		sys:        sys,
		r:          r,
		self:       self,
		do:         make(chan func()),
		notices:    make(chan notifyEvent, 16),
		done:       make(chan struct{}),
		next:       1,
		readyTimes: newHistogram(),
		drainTimes: newHistogram(),
	}, nil
}

// Run starts the application and supervises it until its serving
// generation has exited and no other process is left. It returns that
// generation's exit. An error means the application could not be started.
func (s *Supervisor) Run() (reaper.Exit, error) {
	defer func() {
		close(s.done)
		// Barriers read but not handled: their senders may go on.
		for {
			select {
			case ev := <-s.notices:
				ev.release()
			default:
				return
			}
		}
	}()
	g, err := s.start()
	if err != nil {
		return reaper.Exit{}, err
	}
	s.current = g
	s.watch(g)
	if s.opts.Started != nil {
		s.opts.Started()
	}
	// Once the application is on its way, which these reads would
	// delay: tini-hot's own memory, and the OOM kills so far, read when
	// the cgroup was found rather than read again.
	s.anonAtStart, _ = s.sys.anon()
	if m, err := s.sys.opened(); err == nil {
		s.oomSeen = m.OOMKills
	}
	for !s.over {
		// Notices first: after a pause (SIGSTOP, a frozen cgroup, a
		// starved CPU) a READY=1 and the timer it beat come at once,
		// and select would pick either.
		if s.drainNotices() {
			continue
		}
		select {
		case <-s.r.Reapable():
			s.onReapable()
		case sig := <-s.r.Terminations():
			s.onSignal(sig.(unix.Signal))
		case sig := <-s.r.Signals():
			s.onSignal(sig.(unix.Signal))
		case ev := <-s.notices:
			s.onNotice(ev)
		case f := <-s.do:
			f() // a timer's, or a request's (see request)
		}
	}
	return s.exit, nil
}

// onReapable, onSignal and onNotice handle the events of Run's loop other
// than its timers and requests. Each leaves garbage: settle before
// handling it, so that a release the event itself starts (a reload's
// end) counts for it.
func (s *Supervisor) onReapable()              { s.settle(); s.reap() }
func (s *Supervisor) onSignal(sig unix.Signal) { s.settle(); s.signal(sig) }
func (s *Supervisor) onNotice(ev notifyEvent)  { s.settle(); s.handleNotice(ev) }

// post runs f on the owner goroutine, unless Run has returned. The owner
// itself never calls it.
func (s *Supervisor) post(f func()) {
	select {
	case s.do <- f:
	case <-s.done:
	}
}

// call runs f on the owner goroutine and returns once it has run, or with
// an error when ctx ends first or Run has returned.
func (s *Supervisor) call(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case s.do <- func() { f(); close(ran) }:
		<-ran // the owner runs what it receives at once
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrStopped
	}
}

// request is call for a client's request (reload, probe, prestop,
// status): it counts as activity (see settle).
func (s *Supervisor) request(ctx context.Context, f func()) error {
	return s.call(ctx, func() {
		s.settle()
		f()
	})
}

// timer is a timer whose function runs on the owner goroutine, and never
// once stopped: Stop also cancels a run that the clock already started.
type timer struct {
	stop func() bool
	dead bool // owned by the owner
}

// after runs f on the owner goroutine after d, unless the timer is
// stopped first. What happened before the timer fired is handled first
// (see catchUp), and may stop it.
func (s *Supervisor) after(d time.Duration, f func()) *timer {
	t := &timer{}
	t.stop = s.sys.afterFunc(d, func() {
		s.post(func() {
			if t.dead {
				return
			}
			s.catchUp()
			if !t.dead {
				t.dead = true
				f()
			}
		})
	})
	return t
}

// catchUp handles, before a timer, the notices already read and the
// processes that have ended: after a pause of tini-hot (SIGSTOP, a frozen
// cgroup, a starved CPU) a timer fires late, at the same moment as what
// should have come before it, a READY=1 sent or a readiness check ended
// in time, and it must not fail a generation that was ready. The notices
// still in a generation's socket, not read yet, are the ready timeout's
// to wait for (see readyTimeout).
func (s *Supervisor) catchUp() {
	s.drainNotices()
	s.reap()
}

// drainNotices handles the notices already read, without waiting for
// more, and reports whether there were any.
func (s *Supervisor) drainNotices() (handled bool) {
	for {
		select {
		case ev := <-s.notices:
			s.onNotice(ev)
			handled = true
		default:
			return handled
		}
	}
}

// Stop cancels t; safe on nil and twice. Only the owner calls it.
func (t *timer) Stop() {
	if t != nil && !t.dead {
		t.dead = true
		t.stop()
	}
}

// Reload starts a new generation and returns its number once it serves;
// with waitDrained, once the old one has exited too. A reload that
// arrives during an upgrade joins the next one, which starts when the
// current one ends; one that arrives while the first generation is still
// starting waits until it is ready or overdue (its ready timeout has
// passed). The error says why the reload failed. When ctx ends first,
// only the wait ends: the reload goes on.
// by says who asks, for the log ("control socket", "--watch PATH").
func (s *Supervisor) Reload(ctx context.Context, waitDrained bool, by string) (int, error) {
	w := &waiter{waitDrained: waitDrained, reply: make(chan result, 1)}
	if err := s.request(ctx, func() {
		s.log.Info("reload requested", "by", by)
		s.reload(w)
	}); err != nil {
		return 0, err
	}
	select {
	case r := <-w.reply:
		return r.gen, r.err
	case <-ctx.Done():
		// Nobody waits any more: forget w, so abandoned requests do not
		// pile up behind a long upgrade.
		s.post(func() { s.dropWaiter(w) })
		return 0, ctx.Err()
	case <-s.done:
		select {
		case r := <-w.reply:
			return r.gen, r.err
		default:
			return 0, ErrStopped
		}
	}
}

// Probe answers a readiness probe: the serving generation's number while
// a ready generation serves and no termination has been announced, an
// error saying why not otherwise. A liveness probe only needs the
// supervisor to answer.
func (s *Supervisor) Probe(ctx context.Context, liveness bool) (int, error) {
	var gen int
	var perr error
	if err := s.request(ctx, func() { gen, perr = s.probe(liveness) }); err != nil {
		return 0, err
	}
	return gen, perr
}

// Prestop announces that termination is coming: from then on probe fails
// and reloads are refused, while the application keeps serving, until
// SIGTERM. With cancel, or when no SIGTERM has come within the grace
// period, the announcement is withdrawn: probe passes and reloads are
// taken again. It returns the serving generation's number.
func (s *Supervisor) Prestop(ctx context.Context, cancel bool) (int, error) {
	var gen int
	var perr error
	if err := s.request(ctx, func() { gen, perr = s.prestop(cancel) }); err != nil {
		return 0, err
	}
	return gen, perr
}

// withoutActivation returns env without the socket-activation and notify
// variables tini-hot itself may have been given.
func withoutActivation(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", generationEnv:
		default:
			out = append(out, kv)
		}
	}
	return out
}
