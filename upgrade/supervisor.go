package upgrade

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/control"
	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// Defaults for zero Options fields.
const (
	DefaultKillTimeout  = 5 * time.Second
	DefaultReadyTimeout = 60 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultDrainSignal  = unix.SIGTERM
	DefaultReloadSignal = unix.SIGHUP
	// DefaultMaxDraining bounds the generations still draining when a
	// reload starts; one more reload is refused ("N generations still
	// draining") rather than cutting their requests short.
	DefaultMaxDraining = 4
	// DefaultGracePeriod is Kubernetes' default
	// terminationGracePeriodSeconds.
	DefaultGracePeriod = 30 * time.Second
)

// KillMargin is how long before the end of the grace period tini-hot
// sends SIGKILL to every process left, so that it exits, with a status,
// before the kubelet's own SIGKILL: a tenth of the grace period, at least
// 50 ms and at most 1 s.
func KillMargin(grace time.Duration) time.Duration {
	return min(max(grace/10, 50*time.Millisecond), time.Second)
}

// pollInterval bounds how long a missed SIGCHLD could delay reaping while
// the last processes are being terminated.
const pollInterval = time.Second

// execRetry is the pause between two runs of an exec readiness check.
const execRetry = 250 * time.Millisecond

// keepEnded is how many ended generations status still lists.
const keepEnded = 16

// Options configures a Supervisor.
type Options struct {
	// Command is the application and its arguments. Required.
	Command []string
	// Env is the application's environment; nil means os.Environ(). The
	// socket-activation variables tini-hot itself may have inherited
	// (LISTEN_*, NOTIFY_SOCKET) are replaced by its own.
	Env []string
	// Reaper collects exits and receives signals. Required.
	Reaper *reaper.Reaper
	// Listeners are handed to every generation as fds 3, 4, ...
	Listeners []*Listener
	// SignalGroup forwards signals to the application's process group
	// instead of its main process (tini -g).
	SignalGroup bool
	// KillTimeout is the time from SIGTERM to SIGKILL for processes left
	// when the serving generation has exited. Zero: DefaultKillTimeout.
	KillTimeout time.Duration
	// Ready says when a new generation is ready; zero: DefaultReadiness.
	Ready Readiness
	// ReadyTimeout fails a new generation not ready in time.
	ReadyTimeout time.Duration
	// DrainSignal asks an old generation to finish and exit.
	DrainSignal unix.Signal
	// DrainTimeout is how long an old generation may drain before its
	// whole process tree gets SIGKILL.
	DrainTimeout time.Duration
	// ReloadSignal starts a reload; NoReloadSignal forwards it instead.
	ReloadSignal unix.Signal
	// MaxDraining bounds the generations draining at once.
	MaxDraining int
	// GracePeriod bounds the shutdown that SIGTERM starts: every process
	// still alive KillMargin before it ends gets SIGKILL. It counts from
	// the first termination notice, SIGTERM or a prestop request made
	// within one grace period before SIGTERM, as the kubelet's clock
	// does. Zero: DefaultGracePeriod.
	GracePeriod time.Duration
	// ShutdownDelay keeps the application serving after the first
	// termination notice, while load balancers stop sending to it;
	// generations get the drain signal only when it has passed and
	// SIGTERM has come.
	ShutdownDelay time.Duration
	// WarnOnReap logs every reaped process that is not a generation's
	// main process (tini -w).
	WarnOnReap bool
	// Logger receives the supervisor's messages; nil means slog.Default().
	Logger *slog.Logger
}

// NoReloadSignal in Options.ReloadSignal keeps tini's behaviour: the
// reload signal is forwarded like any other.
const NoReloadSignal = unix.Signal(-1)

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
	exited    bool
	exit      reaper.Exit
	reason    string
	appStatus string
	notify    *notifySocket
	checkPid  int // running exec readiness check
	timer     *time.Timer
	// waiters get the result of the upgrade to this generation;
	// drainWaiters the end of this generation's drain.
	waiters      []*waiter
	drainWaiters []*waiter
}

// waiter is a reload request that wants an answer.
type waiter struct {
	waitDrained bool
	reply       chan control.Response // buffered: the owner never blocks
}

func (w *waiter) answer(r control.Response) {
	if w != nil {
		w.reply <- r
	}
}

// refuse answers every waiter in ws with the error msg.
func refuse(ws []*waiter, msg string) {
	for _, w := range ws {
		w.answer(control.Response{Error: msg})
	}
}

// request is a control request on its way to the owner.
type request struct {
	req   control.Request
	reply chan control.Response
}

// Supervisor runs the application's generations. Create it with New, then
// call Run once; Handle may be called from any goroutine.
type Supervisor struct {
	opts     Options
	log      *slog.Logger
	self     int
	requests chan request
	notices  chan notifyEvent
	do       chan func()
	done     chan struct{}

	// Owned by the Run goroutine.
	gens      []*generation // every generation still of interest, oldest first
	current   *generation   // the serving generation (or the first, starting)
	upgrading *generation   // a new generation not yet ready
	pending   []*waiter     // reloads waiting for the next upgrade
	pendingOn bool          // a signal asked for the next upgrade
	next      int
	counters  control.ReloadCounters
	// announced is when termination was first announced (prestop or
	// SIGTERM) and by what; stopping is set by SIGTERM, finishing once
	// the application has ended and only leftovers are terminated.
	announced   time.Time
	announcedBy string
	stopping    bool
	deadline    time.Time
	finishing   bool
}

// New checks opts and fills in defaults.
func New(opts Options) (*Supervisor, error) {
	if len(opts.Command) == 0 {
		return nil, errors.New("no command to supervise")
	}
	if opts.Reaper == nil {
		return nil, errors.New("no reaper")
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	opts.Env = withoutActivation(opts.Env)
	if opts.KillTimeout <= 0 {
		opts.KillTimeout = DefaultKillTimeout
	}
	if opts.Ready.Mode == "" {
		opts.Ready = DefaultReadiness
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.DrainSignal == 0 {
		opts.DrainSignal = DefaultDrainSignal
	}
	if opts.ReloadSignal == 0 {
		opts.ReloadSignal = DefaultReloadSignal
	}
	if opts.MaxDraining <= 0 {
		opts.MaxDraining = DefaultMaxDraining
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = DefaultGracePeriod
	}
	if opts.ShutdownDelay < 0 || opts.ShutdownDelay >= opts.GracePeriod {
		return nil, fmt.Errorf("shutdown delay %v must be at least 0 and less than the grace period %v", opts.ShutdownDelay, opts.GracePeriod)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{
		opts:     opts,
		log:      log,
		self:     os.Getpid(),
		requests: make(chan request),
		notices:  make(chan notifyEvent, 16),
		do:       make(chan func(), 16),
		done:     make(chan struct{}),
		next:     1,
	}, nil
}

// Handle answers a control request; it blocks until the owner has. It is
// the control server's Handler.
func (s *Supervisor) Handle(req control.Request) control.Response {
	r := request{req: req, reply: make(chan control.Response, 1)}
	select {
	case s.requests <- r:
	case <-s.done:
		return control.Response{Error: "shutting down"}
	}
	select {
	case resp := <-r.reply:
		return resp
	case <-s.done:
		return control.Response{Error: "shutting down"}
	}
}

// post runs f on the owner goroutine, unless Run has returned.
func (s *Supervisor) post(f func()) {
	select {
	case s.do <- f:
	case <-s.done:
	}
}

// after runs f on the owner goroutine after d.
func (s *Supervisor) after(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() { s.post(f) })
}

// Run starts the application and supervises it until its serving
// generation has exited and no other process is left. It returns that
// generation's exit. An error means the application could not be started.
func (s *Supervisor) Run() (reaper.Exit, error) {
	defer close(s.done)
	g, err := s.start()
	if err != nil {
		return reaper.Exit{}, err
	}
	s.current = g
	r := s.opts.Reaper
	for {
		select {
		case <-r.Reapable():
			exits, children := r.Reap()
			if s.handleExits(exits) || (s.stopping && s.allExited()) {
				return s.finish(children), nil
			}
		case sig := <-r.Signals():
			s.signal(sig.(unix.Signal))
		case req := <-s.requests:
			s.handleRequest(req)
		case ev := <-s.notices:
			s.handleNotice(ev)
		case f := <-s.do:
			f()
		}
	}
}

// start launches the next generation with its notify socket and starts
// watching its readiness.
func (s *Supervisor) start() (*generation, error) {
	n := s.next
	s.next++
	g := &generation{number: n, state: stateStarting, started: time.Now()}
	ns, err := newNotifySocket(fmt.Sprintf("tini-hot/%d/%d/%d", s.self, time.Now().UnixNano(), n))
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	g.notify = ns
	files := make([]int, len(s.opts.Listeners))
	names := make([]string, len(s.opts.Listeners))
	for i, l := range s.opts.Listeners {
		files[i], names[i] = l.Fd(), l.Spec.Name
	}
	env := s.env(n, "NOTIFY_SOCKET="+ns.env)
	if len(files) > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	pid, err := launch.Start(launch.Spec{Argv: s.opts.Command, Env: env, Fds: files, Foreground: n == 1})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	g.pid = pid
	go ns.serve(n, s.notices, s.done)
	s.gens = append(s.gens, g)
	s.log.Info("generation started", "generation", n, "pid", pid, "ready", s.opts.Ready.String())
	g.timer = s.after(s.opts.ReadyTimeout, func() {
		if g.state == stateStarting {
			s.failed(g, fmt.Sprintf("generation %d not ready after %v", n, s.opts.ReadyTimeout))
		}
	})
	switch s.opts.Ready.Mode {
	case ReadyDelay:
		s.after(s.opts.Ready.Delay, func() {
			if g.state == stateStarting && !g.exited {
				s.ready(g)
			}
		})
	case ReadyExec:
		s.runCheck(g)
	}
	return g, nil
}

// env is the environment of a process of generation n: the
// application's, the generation marker and extra.
func (s *Supervisor) env(n int, extra ...string) []string {
	env := make([]string, 0, len(s.opts.Env)+1+len(extra))
	env = append(env, s.opts.Env...)
	env = append(env, generationEnv+"="+strconv.Itoa(n))
	return append(env, extra...)
}

// runCheck starts the exec readiness command of g.
func (s *Supervisor) runCheck(g *generation) {
	env := s.env(g.number, "TINI_HOT_PID="+strconv.Itoa(g.pid))
	pid, err := launch.Start(launch.Spec{Argv: s.opts.Ready.Command, Env: env})
	if err != nil {
		s.failed(g, fmt.Sprintf("generation %d: readiness check: %v", g.number, err))
		return
	}
	g.checkPid = pid
}

// handleExits records exits and reports whether the serving generation
// has ended, which ends the container.
func (s *Supervisor) handleExits(exits []reaper.Exit) bool {
	ended := false
	for _, e := range exits {
		if s.exited(e) {
			ended = true
		}
	}
	return ended
}

// exited handles one exit; true when it ends the serving generation.
func (s *Supervisor) exited(e reaper.Exit) bool {
	for _, g := range s.gens {
		switch e.Pid {
		case g.checkPid:
			g.checkPid = 0
			if g.state != stateStarting {
				return false
			}
			if e.Code() == 0 {
				s.ready(g)
			} else {
				s.after(execRetry, func() {
					if g.state == stateStarting && g.checkPid == 0 && !g.exited {
						s.runCheck(g)
					}
				})
			}
			return false
		case g.pid:
			g.exited, g.exit, g.ended = true, e, time.Now()
			// Nothing of an ended generation notifies anything useful.
			_ = g.notify.Close()
			s.log.Info("generation ended", "generation", g.number, "pid", e.Pid, "state", g.state.String(), "how", e.String())
			switch {
			case g == s.current && !s.stopping && !s.finishing:
				g.state = stateExited
				return true
			case g.state == stateStarting && !s.stopping:
				s.failed(g, fmt.Sprintf("generation %d %s before ready", g.number, e))
			case g.state == stateDraining:
				g.state = stateExited
				for _, w := range g.drainWaiters {
					w.answer(control.Response{OK: true, Generation: s.current.number})
				}
				g.drainWaiters = nil
				s.forget()
			default:
				// failed generations, or any during the final shutdown
				if g.state != stateFailed {
					g.state = stateExited
				}
			}
			return false
		}
	}
	if s.opts.WarnOnReap {
		s.log.Warn("reaped zombie", "pid", e.Pid, "how", e.String())
	}
	return false
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

// signal starts the shutdown (SIGTERM) or a reload (the reload signal),
// or forwards sig to the serving generation. Once the shutdown has
// begun, SIGTERM and SIGINT change nothing: the drain runs to its end or
// to the grace period's.
func (s *Supervisor) signal(sig unix.Signal) {
	switch {
	case s.stopping && (sig == unix.SIGTERM || sig == unix.SIGINT):
		s.log.Info("already shutting down: signal ignored", "signal", reaper.SignalName(sig), "deadline", time.Until(s.deadline).Round(time.Millisecond))
	case sig == unix.SIGTERM:
		s.shutdown()
	case sig == s.opts.ReloadSignal:
		s.log.Info("reload requested by signal", "signal", reaper.SignalName(sig))
		s.reload(nil)
	default:
		s.send(s.current, sig)
	}
}

// announce records the first notice that termination is coming: from
// then on probe fails and reloads are refused.
func (s *Supervisor) announce(by string) {
	if !s.announced.IsZero() {
		return
	}
	s.announced, s.announcedBy = time.Now(), by
	s.log.Info("termination announced", "by", by)
	s.refuseReloads()
}

// refuseReloads answers every reload queued for the next upgrade with an
// error; an upgrade in progress goes on (SIGTERM aborts it).
func (s *Supervisor) refuseReloads() {
	refuse(s.pending, s.closedReason())
	s.pending, s.pendingOn = nil, false
}

// shutdown is SIGTERM: keep serving until ShutdownDelay has passed since
// the first notice, then drain every generation; whatever is left
// KillMargin before the grace period ends is killed.
func (s *Supervisor) shutdown() {
	now := time.Now()
	if !s.announced.IsZero() && now.Sub(s.announced) >= s.opts.GracePeriod {
		// A prestop that long ago was no kubelet's: count from now.
		s.announced = time.Time{}
	}
	s.stopping = true
	s.announce("SIGTERM")
	s.deadline = s.announced.Add(s.opts.GracePeriod - KillMargin(s.opts.GracePeriod))
	s.after(time.Until(s.deadline), s.killAtDeadline)
	if g := s.upgrading; g != nil {
		s.log.Warn("upgrade aborted: shutting down", "generation", g.number)
		g.reason = "upgrade aborted by shutdown"
		refuse(g.waiters, fmt.Sprintf("generation %d: upgrade aborted: shutting down", g.number))
		g.waiters = nil
		s.upgrading = nil
	}
	delay := time.Until(s.announced.Add(s.opts.ShutdownDelay))
	s.log.Info("shutting down", "drain_in", max(delay, 0).Round(time.Millisecond), "kill_in", time.Until(s.deadline).Round(time.Millisecond))
	if delay > 0 {
		s.after(delay, s.drainAll)
		return
	}
	s.drainAll()
}

// drainAll sends the drain signal to every generation not draining yet.
func (s *Supervisor) drainAll() {
	if s.finishing {
		return
	}
	for _, g := range s.gens {
		if !g.exited && (g.state == stateStarting || g.state == stateServing) {
			if g.timer != nil {
				g.timer.Stop() // a ready timeout; the deadline now rules
			}
			g.state = stateDraining
			s.log.Info("draining generation", "generation", g.number, "pid", g.pid, "signal", reaper.SignalName(s.opts.DrainSignal))
			s.send(g, s.opts.DrainSignal)
		}
	}
}

// killAtDeadline kills every process left when the grace period is about
// to end.
func (s *Supervisor) killAtDeadline() {
	if s.finishing {
		return // finish has its own timer on the same deadline
	}
	s.log.Warn("grace period ending: killing every process left", "grace_period", s.opts.GracePeriod)
	s.killAll()
}

// send signals g's main process, or its group with SignalGroup.
func (s *Supervisor) send(g *generation, sig unix.Signal) {
	if g.exited {
		return
	}
	target := g.pid
	if s.opts.SignalGroup {
		target = -target
	}
	s.log.Debug("signal", "signal", reaper.SignalName(sig), "to", target, "generation", g.number)
	if err := unix.Kill(target, sig); err != nil {
		// ESRCH: it ended and its exit is not reaped yet.
		s.log.Warn("signal", "signal", reaper.SignalName(sig), "to", target, "err", err)
	}
}

func (s *Supervisor) handleRequest(r request) {
	switch r.req.Op {
	case control.OpReload:
		s.log.Info("reload requested by control socket")
		s.reload(&waiter{waitDrained: r.req.WaitDrained, reply: r.reply})
	case control.OpStatus:
		st := s.status()
		r.reply <- control.Response{OK: true, Status: &st}
	case control.OpProbe:
		r.reply <- s.probe(r.req.Liveness)
	case control.OpPrestop:
		s.announce("prestop")
		r.reply <- control.Response{OK: true, Generation: s.current.number}
	default:
		r.reply <- control.Response{Error: fmt.Sprintf("unknown op %q", r.req.Op)}
	}
}

// closing reports whether termination has been announced or begun.
func (s *Supervisor) closing() bool {
	return !s.announced.IsZero() || s.finishing
}

// closedReason says why reloads are refused and probe fails.
func (s *Supervisor) closedReason() string {
	switch {
	case s.stopping:
		return "shutting down (SIGTERM received)"
	case s.finishing:
		return "shutting down (the application has exited)"
	}
	return "termination announced by " + s.announcedBy
}

// probe answers a readiness probe: OK while a ready generation serves and
// no termination has been announced. A liveness probe only needs the
// owner to answer.
func (s *Supervisor) probe(liveness bool) control.Response {
	g := s.current
	switch {
	case liveness:
	case s.closing():
		return control.Response{Error: "not ready: " + s.closedReason()}
	case g.state != stateServing:
		return control.Response{Error: fmt.Sprintf("not ready: generation %d is %s", g.number, g.state)}
	}
	return control.Response{OK: true, Generation: g.number}
}

// reload starts an upgrade, or queues w for the one after the upgrade in
// progress: requests that arrive during an upgrade are coalesced into at
// most one more.
func (s *Supervisor) reload(w *waiter) {
	s.counters.Requested++
	if s.closing() {
		s.counters.Failed++
		w.answer(control.Response{Error: s.closedReason()})
		return
	}
	if s.upgrading != nil || s.current.state == stateStarting {
		if s.pendingOn || len(s.pending) > 0 {
			s.counters.Coalesced++
		}
		s.pendingOn = true
		if w != nil {
			s.pending = append(s.pending, w)
		}
		return
	}
	s.upgrade([]*waiter{w})
}

// upgrade starts a new generation for waiters.
func (s *Supervisor) upgrade(waiters []*waiter) {
	if n := s.draining(); n >= s.opts.MaxDraining {
		s.counters.Failed++
		refuse(waiters, fmt.Sprintf("%d generations still draining (--max-draining %d); retry later", n, s.opts.MaxDraining))
		return
	}
	g, err := s.start()
	if err != nil {
		s.counters.Failed++
		s.log.Error("reload failed", "err", err)
		refuse(waiters, err.Error())
		return
	}
	g.waiters = waiters
	s.upgrading = g
}

// draining counts generations whose main process still drains.
func (s *Supervisor) draining() int {
	n := 0
	for _, g := range s.gens {
		if g.state == stateDraining && !g.exited {
			n++
		}
	}
	return n
}

// ready hands over to g.
func (s *Supervisor) ready(g *generation) {
	if g.state != stateStarting || s.stopping {
		return
	}
	g.ready = time.Now()
	g.state = stateServing
	g.timer.Stop()
	s.log.Info("generation ready", "generation", g.number, "pid", g.pid, "after", g.ready.Sub(g.started).Round(time.Millisecond))
	if g == s.current {
		// The first generation: nothing to hand over.
		s.startPending()
		return
	}
	old := s.current
	s.current, s.upgrading = g, nil
	s.counters.Succeeded++
	s.drain(old)
	for _, w := range g.waiters {
		if w != nil && w.waitDrained && !old.exited {
			old.drainWaiters = append(old.drainWaiters, w)
			continue
		}
		w.answer(control.Response{OK: true, Generation: g.number})
	}
	g.waiters = nil
	s.startPending()
}

// startPending starts the upgrade that reloads queued during the last one asked
// for.
func (s *Supervisor) startPending() {
	if !s.pendingOn {
		return
	}
	waiters := s.pending
	s.pending, s.pendingOn = nil, false
	if len(waiters) == 0 {
		waiters = []*waiter{nil}
	}
	s.upgrade(waiters)
}

// drain asks g to finish and arms its deadline.
func (s *Supervisor) drain(g *generation) {
	g.state = stateDraining
	s.log.Info("draining generation", "generation", g.number, "pid", g.pid, "signal", reaper.SignalName(s.opts.DrainSignal), "timeout", s.opts.DrainTimeout)
	s.send(g, s.opts.DrainSignal)
	g.timer = s.after(s.opts.DrainTimeout, func() {
		if n := s.killTree(g); n > 0 {
			s.log.Warn("drain timeout: killed generation", "generation", g.number, "processes", n)
		}
	})
}

// failed kills a generation that did not become ready; the serving one
// never notices.
func (s *Supervisor) failed(g *generation, reason string) {
	if g.state != stateStarting || s.stopping {
		return
	}
	if g == s.current {
		// The first generation has nothing to fall back to: it ends the
		// container only by exiting; a ready timeout is just logged.
		s.log.Warn("first generation not ready", "reason", reason)
		return
	}
	g.state, g.reason = stateFailed, reason
	g.timer.Stop()
	s.killTree(g)
	s.log.Warn("reload failed", "reason", reason)
	s.counters.Failed++
	s.upgrading = nil
	refuse(g.waiters, reason)
	g.waiters = nil
	s.forget()
	s.startPending()
}

// killTree sends SIGKILL to every live process of g and returns how many.
func (s *Supervisor) killTree(g *generation) int {
	pids := treeOf(s.self, g.pid, g.number)
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL) // ESRCH: already gone
	}
	return len(pids)
}

// handleNotice applies an sd_notify message from a generation's process.
func (s *Supervisor) handleNotice(ev notifyEvent) {
	var g *generation
	for _, c := range s.gens {
		if c.number == ev.gen {
			g = c
		}
	}
	if g == nil {
		return
	}
	if ev.sender == 0 || (ev.sender != g.pid && !slices.Contains(treeOf(s.self, g.pid, g.number), ev.sender)) {
		s.log.Warn("notify message from a process outside the generation ignored", "generation", g.number, "sender", ev.sender)
		return
	}
	if ev.notice.status != "" {
		g.appStatus = ev.notice.status
	}
	if ev.notice.ready && s.opts.Ready.Mode == ReadyNotify {
		s.ready(g)
	}
}

// forget drops ended generations beyond the few status keeps.
func (s *Supervisor) forget() {
	ended := 0
	for i := len(s.gens) - 1; i >= 0; i-- {
		g := s.gens[i]
		if g.exited && (g.state == stateExited || g.state == stateFailed) {
			ended++
			if ended > keepEnded {
				s.gens = append(s.gens[:i], s.gens[i+1:]...)
			}
		}
	}
}

// status reports the supervisor for the control socket.
func (s *Supervisor) status() control.Status {
	st := control.Status{Pid: s.self, State: "running", Reloads: s.counters}
	switch {
	case s.closing():
		st.State = s.closedReason()
	case s.upgrading != nil:
		st.State = "upgrading"
	}
	for _, g := range s.gens {
		gs := control.GenerationStatus{Number: g.number, Pid: g.pid, State: g.state.String(), Started: g.started, Reason: g.reason, AppStatus: g.appStatus}
		if !g.ready.IsZero() {
			t := g.ready
			gs.Ready = &t
		}
		if g.exited {
			t := g.ended
			gs.Ended, gs.Exit = &t, g.exit.String()
		}
		st.Generations = append(st.Generations, gs)
	}
	for _, l := range s.opts.Listeners {
		st.Listeners = append(st.Listeners, control.ListenerStatus{Name: l.Spec.Name, Address: l.Spec.String()})
	}
	return st
}

// finish terminates every process left once the serving generation has
// ended and returns its exit when none is left. children is what the
// last Reap said.
func (s *Supervisor) finish(children bool) reaper.Exit {
	s.finishing = true
	exit := s.current.exit
	for _, g := range s.gens {
		refuse(append(g.waiters, g.drainWaiters...), "shutting down")
		g.waiters, g.drainWaiters = nil, nil
		if g.timer != nil {
			g.timer.Stop()
		}
	}
	refuse(s.pending, "shutting down")
	s.pending = nil
	if !children {
		return exit
	}
	r := s.opts.Reaper
	wait := s.opts.KillTimeout
	if s.stopping {
		wait = max(min(wait, time.Until(s.deadline)), 0)
	}
	if n, err := r.SignalAll(unix.SIGTERM); err != nil {
		s.log.Warn("terminate remaining processes", "err", err)
	} else if n > 0 {
		s.log.Info("terminating remaining processes", "signal", "SIGTERM", "kill_in", wait)
	}
	kill := time.NewTimer(wait)
	defer kill.Stop()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	killing := false
	for {
		select {
		case <-r.Reapable():
		case <-poll.C:
			if killing {
				// Processes forked since the last SIGKILL.
				s.killAll()
			}
		case <-kill.C:
			s.log.Warn("processes left: sending SIGKILL", "after", wait)
			killing = true
			s.killAll()
		case sig := <-r.Signals():
			// The application has ended; nothing to forward to.
			s.log.Debug("signal ignored while terminating", "signal", reaper.SignalName(sig.(unix.Signal)))
			continue
		case req := <-s.requests:
			req.reply <- control.Response{Error: "shutting down"}
			continue
		case <-s.notices:
			continue
		case f := <-s.do:
			f()
			continue
		}
		exits, children := r.Reap()
		s.handleExits(exits)
		if !children {
			return exit
		}
	}
}

func (s *Supervisor) killAll() {
	if _, err := s.opts.Reaper.SignalAll(unix.SIGKILL); err != nil {
		s.log.Warn("kill remaining processes", "err", err)
	}
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
