package upgrade

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// generationEnv marks every process of generation N: TINI_HOT_GENERATION=N
// is in the application's environment and inherited by whatever it
// starts.
const generationEnv = "TINI_HOT_GENERATION"

func generationMarker(n int) string { return generationEnv + "=" + strconv.Itoa(n) }

// execRetry is the pause between two runs of an exec readiness check.
const execRetry = 250 * time.Millisecond

// state is where a generation is in its life:
// starting → serving → draining → exited, or starting → failed.
type state int

const (
	stateStarting state = iota
	stateServing
	stateDraining
	stateExited
	stateFailed
)

func (s state) String() string {
	return [...]string{"starting", "serving", "draining", "exited", "failed"}[s]
}

// generation is one start of the application.
type generation struct {
	number    int
	pid       int
	state     state
	started   time.Time
	ready     time.Time
	ended     time.Time
	exited    bool // its main process has been reaped: pid is no longer its
	exit      reaper.Exit
	reason    string
	appStatus string
	// overdue: the first generation missed its ready timeout; reloads no
	// longer wait for it.
	overdue bool
	// reload: started for a reload (counted in ReloadCounters);
	// replacing: started as the serving generation in place of one that
	// ended (a restart); retry: if it fails before ready, the command is
	// started once more. oom: the OOM killer ended its main process.
	reload, replacing, retry, oom bool
	drainStart                    time.Time // when it got the drain signal
	handedOff                     time.Time // when the next one took over its slot's traffic (steered)
	slot                          int       // its sockets' slot, noSlot if none is steered
	deadline                      time.Time // its drain deadline, once armed
	requested                     time.Time // when the reload it serves was asked for
	notify                        notifier
	check                         int // pid of the running exec readiness check, 0 if none
	// checks counts its failed readiness checks; checkFailed is how the
	// last one failed.
	checks      int
	checkFailed string
	// ignored counts the notices from processes outside the generation;
	// ignoredLogged is when the log last said so.
	ignored       int
	ignoredLogged time.Time
	timers        []*timer // its timers: stopped when its state changes
	// waiters get the result of the upgrade to this generation;
	// drainWaiters the end of this generation's drain.
	waiters      []*waiter
	drainWaiters []*waiter
}

// arm keeps t with g's timers, and forgets those that have fired or were
// stopped: a check that keeps failing arms one every execRetry for as
// long as its generation starts.
func (g *generation) arm(t *timer) {
	g.timers = append(slices.DeleteFunc(g.timers, func(t *timer) bool { return t.dead }), t)
}

// stopTimers stops every timer of g: its ready timeout, readiness delay,
// check retry or drain deadline can never fire for a state it left.
func (g *generation) stopTimers() {
	for _, t := range g.timers {
		t.Stop()
	}
	g.timers = nil
}

// start launches the next generation with its notify socket. The caller
// records it (current or upgrading) and then calls watch.
func (s *Supervisor) start() (*generation, error) {
	n := s.next
	s.next++
	slot, err := s.pickSlot()
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	g := &generation{number: n, state: stateStarting, started: s.sys.now(), slot: slot}
	ns, err := s.sys.notify(fmt.Sprintf("tini-hot/%d/%d/%d", s.self, s.sys.now().UnixNano(), n))
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	g.notify = ns
	files := make([]int, len(s.opts.Listeners))
	names := make([]string, len(s.opts.Listeners))
	for i, l := range s.opts.Listeners {
		files[i], names[i] = l.SlotFd(slot), l.Spec.Name
	}
	env := s.env(n, append(slotEnv(slot), "NOTIFY_SOCKET="+ns.Env())...)
	if len(files) > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	// The serving generation has the terminal's foreground (^C of
	// docker run -it): the first one and a restart's from their start,
	// an upgrade's from its handover (see readyAt).
	foreground := s.current == nil || s.current.exited
	pid, err := s.sys.start(launch.Spec{Argv: s.opts.Command, Env: env, Fds: files, Foreground: foreground, Signals: s.opts.Signals})
	if err != nil {
		_ = ns.Close() // never served
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	g.pid = pid
	go ns.Serve(n, s.notices, s.done)
	s.gens = append(s.gens, g)
	s.log.Info("generation started", "generation", n, "pid", pid, "ready", s.opts.Ready.String())
	return g, nil
}

// env is the environment of a process of generation n: the
// application's, the generation marker and extra.
func (s *Supervisor) env(n int, extra ...string) []string {
	env := make([]string, 0, len(s.opts.Env)+1+len(extra))
	env = append(env, s.opts.Env...)
	env = append(env, generationMarker(n))
	return append(env, extra...)
}

// watch starts watching g's readiness: its ready timeout, and the delay
// or the exec check (notify needs nothing more than the socket).
func (s *Supervisor) watch(g *generation) {
	g.arm(s.after(s.opts.ReadyTimeout, func() { s.readyTimeout(g) }))
	switch s.opts.Ready.Mode {
	case ReadyDelay:
		g.arm(s.after(s.opts.Ready.Delay, func() { s.ready(g) }))
	case ReadyExec:
		s.runCheck(g)
	}
}

// runCheck starts the exec readiness command of g.
func (s *Supervisor) runCheck(g *generation) {
	if g.state != stateStarting || g.exited || g.check != 0 {
		return
	}
	env := s.env(g.number, "TINI_HOT_PID="+strconv.Itoa(g.pid))
	pid, err := s.sys.start(launch.Spec{Argv: s.opts.Ready.Command, Env: env, Signals: s.opts.Signals})
	switch {
	case err == nil:
		g.check = pid
	case g == s.current:
		// The first generation has nothing to fall back to; a fork that
		// failed (EAGAIN, ENOMEM) may work a moment later.
		s.log.Warn("readiness check", "generation", g.number, "err", err)
		g.arm(s.after(execRetry, func() { s.runCheck(g) }))
	default:
		s.failed(g, fmt.Sprintf("generation %d: readiness check: %v", g.number, err))
	}
}

// checkEnded handles the end of g's readiness check. A failed check is
// logged: the first of the generation, and each that fails otherwise
// than the one before, at the default verbosity; the others at -v 2.
func (s *Supervisor) checkEnded(g *generation, e reaper.Exit) {
	if g.state != stateStarting || g.exited {
		return
	}
	if e.Code() == 0 {
		s.ready(g)
		return
	}
	how := e.String()
	switch e.Code() {
	case 126:
		how += " (the command could not be executed)"
	case 127:
		how += " (the command was not found)"
	}
	g.checks++
	level := slog.LevelInfo
	if how != g.checkFailed {
		level = slog.LevelWarn
	}
	g.checkFailed = how
	s.log.Log(context.Background(), level, "readiness check failed: trying again", "generation", g.number, "how", how, "checks", g.checks, "in", execRetry)
	g.arm(s.after(execRetry, func() { s.runCheck(g) }))
}

// readyTimeout fails a new generation that is not ready in time. The
// first generation has nothing to fall back to: it keeps running, and
// reloads stop waiting for it.
//
// A datagram still waiting in g's notify socket may be a READY=1 sent in
// time while tini-hot was paused (its reader and this timer resumed
// together): the timeout waits for it to be read, by readyRecheck at a
// time, for at most readyGrace.
func (s *Supervisor) readyTimeout(g *generation) { s.readyTimeoutSince(g, s.sys.now()) }

// Waiting for a notice that arrived before a ready timeout: checked every
// readyRecheck, for at most readyGrace (two of the notify socket's pacing
// windows: a READY=1 queued behind a flood is not waited for longer).
const (
	readyRecheck = 10 * time.Millisecond
	readyGrace   = 2 * notifyPaceWindow
)

func (s *Supervisor) readyTimeoutSince(g *generation, fired time.Time) {
	if g.state != stateStarting || g.exited || s.ending() {
		return
	}
	if g.notify != nil && g.notify.Pending() && s.sys.now().Sub(fired) < readyGrace {
		g.arm(s.after(readyRecheck, func() { s.readyTimeoutSince(g, fired) }))
		return
	}
	reason := fmt.Sprintf("generation %d not ready after %v", g.number, s.opts.ReadyTimeout)
	switch {
	case g != s.current:
		s.failed(g, reason)
		return
	case g.retry:
		s.replacementFailed(g, reason)
		return
	}
	g.overdue, g.reason = true, reason
	s.log.Warn("first generation not ready; reloads go ahead", "reason", reason)
	s.notReady(g, reason)
	s.startPending()
}

// notReady answers the reloads g, the serving generation (a restart's),
// was started for: it is not ready, and will not be for them.
func (s *Supervisor) notReady(g *generation, reason string) {
	if len(g.waiters) == 0 && !g.reload {
		return
	}
	if g.reload {
		s.counters.Failed++
		g.reload = false
	}
	refuse(g.waiters, reason)
	g.waiters = nil
}

// handleExits records the exits the reaper collected. Every exit is
// matched first and acted upon after: acting can start a process, which
// may get a pid of this very batch.
func (s *Supervisor) handleExits(exits []reaper.Exit) {
	type match struct {
		g     *generation
		e     reaper.Exit
		check bool
	}
	var ms []match
	s.reaped += uint64(len(exits))
	for _, e := range exits {
		g, check := s.owner(e.Pid)
		switch {
		case g == nil:
			if s.opts.WarnOnReap {
				s.log.Warn("reaped zombie", "pid", e.Pid, "how", e.String())
			}
			continue
		case check:
			g.check = 0
		default:
			g.exited, g.exit, g.ended = true, e, s.sys.now()
			_ = g.notify.Close() // nothing of an ended generation notifies anything useful
		}
		ms = append(ms, match{g, e, check})
	}
	for _, m := range ms {
		if m.check {
			s.checkEnded(m.g, m.e)
		} else {
			s.ended(m.g, m.e)
		}
	}
}

// owner finds the live generation whose main process (check false) or
// readiness check (check true) has pid. A generation already reaped never
// matches: its pid may have been reused.
func (s *Supervisor) owner(pid int) (g *generation, check bool) {
	for _, g := range s.gens {
		switch {
		case g.check != 0 && g.check == pid:
			return g, true
		case !g.exited && g.pid == pid:
			return g, false
		}
	}
	return nil, false
}

// ended handles the end of g's main process.
func (s *Supervisor) ended(g *generation, e reaper.Exit) {
	s.log.Info("generation ended", "generation", g.number, "pid", e.Pid, "state", g.state.String(), "how", e.String())
	g.stopTimers()
	s.oomKilled(g, e)
	if !g.drainStart.IsZero() {
		s.drainTimes.observe(g.ended.Sub(g.drainStart))
	}
	switch {
	case s.finishing:
		if g.state != stateFailed {
			g.state = stateExited
		}
		// What it left is left over now.
		s.sweep(unix.SIGTERM)
	case g == s.current && g.retry && g.state == stateStarting && !s.stopping:
		s.replacementFailed(g, fmt.Sprintf("generation %d %s before ready", g.number, e))
	case g == s.current && !s.stopping:
		if g.state == stateStarting {
			// Started for the reloads it carries (a restart's
			// generation): they fail now, not at the end of a crash
			// loop.
			s.notReady(g, fmt.Sprintf("generation %d %s before ready", g.number, e))
		}
		if g.state != stateFailed {
			g.state = stateExited
		}
		// This ends the container, unless a restart is due: see reap.
		s.crashed(g, e)
	case g.state == stateStarting && !s.stopping:
		s.failed(g, fmt.Sprintf("generation %d %s before ready", g.number, e))
	case g.state == stateDraining:
		g.state = stateExited
		s.leftovers(g)
		for _, w := range g.drainWaiters {
			w.answer(s.current.number, nil)
		}
		g.drainWaiters = nil
		s.startPending() // it may have been waiting for this one
	default:
		// A failed generation, or any during the shutdown.
		if g.state != stateFailed {
			g.state = stateExited
		}
		s.leftovers(g)
	}
	if g.slot != noSlot {
		s.steer() // its QUIC flows have nobody to go to now
	}
	s.forget()
	if s.quiet() {
		s.releaseMemory() // a reload is over, done or failed
	}
}

// leftovers ends what g left when its main process ended before its
// drain deadline (an old generation, a failed one being retired, a
// crashed one being restarted): a worker that outlives it, a daemon it
// started, a readiness check that hangs. They get the drain signal now,
// and SIGKILL at the deadline, as the main process would have; before,
// those of old and failed generations lived on until the container's end,
// more with each reload. During a shutdown the end sweeps them instead.
func (s *Supervisor) leftovers(g *generation) {
	if g.deadline.IsZero() || s.ending() || !s.strangers() {
		return
	}
	left := s.tree(s.sys.procs(), g)
	if len(left) == 0 {
		return
	}
	killIn := max(g.deadline.Sub(s.sys.now()), 0)
	s.log.Info("generation ended: the processes it left get the drain signal", "generation", g.number, "processes", len(left), "kill_in", killIn)
	s.sys.signal(left, s.opts.DrainSignal)
	g.arm(s.after(killIn, func() {
		if n := s.killTree(g); n > 0 {
			s.log.Warn("drain timeout: killed what the generation left", "generation", g.number, "processes", n)
		}
	}))
}

// strangers reports whether a generation may have left a process below
// tini-hot. A readiness check that outlived its generation (a hung one)
// is tini-hot's own child, known from the generation. Anything else a
// generation leaves is given to tini-hot (PID 1, or a subreaper) the
// moment its parent ends, before that exit is reaped, and to its main
// thread: when that thread has no child but live generations' main
// processes and checks, nothing else was left below tini-hot (and what
// is left elsewhere is not tini-hot's to find). One small read, not the
// whole process table, which a reload would otherwise pay for nothing
// (150 µs and 100 KB of garbage here). The list is whole: this goroutine
// is the only reaper, and it is not reaping now. On an error it says yes.
func (s *Supervisor) strangers() bool {
	if slices.ContainsFunc(s.gens, func(g *generation) bool { return g.exited && g.check != 0 }) {
		return true
	}
	kids, err := s.sys.adopted()
	if err != nil {
		return true
	}
	return slices.ContainsFunc(kids, func(pid int) bool {
		g, _ := s.owner(pid)
		return g == nil
	})
}

// send signals g's main process, or its group with SignalGroup. A
// generation already reaped gets nothing: its pid may be someone else's.
func (s *Supervisor) send(g *generation, sig unix.Signal) {
	if g.exited {
		return
	}
	target := g.pid
	if s.opts.SignalGroup {
		target = -target
	}
	s.log.Debug("signal", "signal", reaper.SignalName(sig), "to", target, "generation", g.number)
	if err := s.sys.kill(target, sig); err != nil {
		// ESRCH: it ended and its exit is not reaped yet.
		s.log.Warn("signal", "signal", reaper.SignalName(sig), "to", target, "err", err)
	}
}

// killTree sends SIGKILL to every live process of g and returns how many.
func (s *Supervisor) killTree(g *generation) int {
	return s.sys.signal(s.tree(s.sys.procs(), g), unix.SIGKILL)
}

// tree lists the live processes of g in the snapshot ps.
func (s *Supervisor) tree(ps procs, g *generation) []proctree.Process {
	return ps.tree(g.pid, g.number, !g.exited)
}

// handleNotice applies an sd_notify message from a generation's process.
func (s *Supervisor) handleNotice(ev notifyEvent) {
	if ev.notice.barrier {
		// One goroutine reads each socket in order, and this one handles
		// what they read in order: every notice sent before the barrier
		// has been handled, and its sender may go on.
		ev.release()
		return
	}
	var g *generation
	for _, c := range s.gens {
		if c.number == ev.gen && !c.exited {
			g = c
		}
	}
	if g == nil || s.finishing {
		return
	}
	// Only a notice that would change something is checked: one that
	// repeats what is known (WATCHDOG=1, the same STATUS, READY=1 once
	// ready) costs nothing, however often a process sends it.
	status := ev.notice.status != "" && ev.notice.status != g.appStatus
	ready := ev.notice.ready && s.opts.Ready.Mode == ReadyNotify && g.state == stateStarting
	if !status && !ready {
		return
	}
	if ev.sender == 0 || (ev.sender != g.pid && !s.sys.member(g.number, g.pid, ev.sender)) {
		s.ignoredNotice(g, ev.sender)
		return
	}
	if status {
		g.appStatus = ev.notice.status
	}
	if ready {
		s.readyAt(g, ev.at)
	}
}

// ignoredNoticeLogEvery bounds the warnings about notices from outside a
// generation: a process that floods the socket must not flood the log.
const ignoredNoticeLogEvery = 10 * time.Second

// ignoredNotice counts a notice from a process outside g, and says so in
// the log: the first time, then at most once per ignoredNoticeLogEvery.
func (s *Supervisor) ignoredNotice(g *generation, sender int) {
	g.ignored++
	now := s.sys.now()
	if g.ignored > 1 && now.Sub(g.ignoredLogged) < ignoredNoticeLogEvery {
		return
	}
	g.ignoredLogged = now
	s.log.Warn("notify message from a process outside the generation ignored", "generation", g.number, "sender", sender, "ignored", g.ignored)
}

// forget drops ended generations beyond the few status keeps, but the
// serving one, whose exit may be the container's.
func (s *Supervisor) forget() {
	ended := 0
	for i := len(s.gens) - 1; i >= 0; i-- {
		g := s.gens[i]
		if g.exited && (g.state == stateExited || g.state == stateFailed) && g != s.current {
			ended++
			if ended > keepEnded {
				s.gens = append(s.gens[:i], s.gens[i+1:]...)
			}
		}
	}
}

// keepEnded is how many ended generations status still lists.
const keepEnded = 16
