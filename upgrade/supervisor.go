package upgrade

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// DefaultKillTimeout is how long processes left behind by the main child
// get between SIGTERM and SIGKILL.
const DefaultKillTimeout = 5 * time.Second

// pollInterval bounds how long a missed SIGCHLD could delay reaping while
// the last processes are being terminated.
const pollInterval = time.Second

// Options configures a Supervisor.
type Options struct {
	// Command is the application and its arguments. Required.
	Command []string
	// Env is the application's environment; nil means os.Environ(). The
	// socket-activation variables tini-hot itself may have inherited
	// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) are removed: they describe
	// fds of tini-hot, not of the application.
	Env []string
	// Reaper collects exits and receives signals. Required.
	Reaper *reaper.Reaper
	// SignalGroup forwards signals to the application's process group
	// instead of its main process (tini -g).
	SignalGroup bool
	// KillTimeout is the time from SIGTERM to SIGKILL for processes left
	// when the main child has exited. Zero means DefaultKillTimeout.
	KillTimeout time.Duration
	// WarnOnReap logs every reaped process that is not the application's
	// main process (tini -w).
	WarnOnReap bool
	// Logger receives the supervisor's messages; nil means slog.Default().
	Logger *slog.Logger
}

// state is where a generation is in its life.
type state int

const (
	stateServing state = iota
	stateExited
)

func (s state) String() string {
	return [...]string{"serving", "exited"}[s]
}

// generation is one start of the application.
type generation struct {
	number  int
	pid     int
	state   state
	started time.Time
	exit    reaper.Exit
}

// Supervisor runs the application. Create it with New, then call Run once.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	serving *generation
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
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{opts: opts, log: log}, nil
}

// Run starts the application and supervises it until it has exited and no
// other process is left. It returns the application's exit. An error means
// the application could not be started at all.
func (s *Supervisor) Run() (reaper.Exit, error) {
	g, err := s.start(1)
	if err != nil {
		return reaper.Exit{}, err
	}
	s.serving = g
	r := s.opts.Reaper
	for {
		select {
		case <-r.Reapable():
			exits, children := r.Reap()
			if s.handleExits(exits) {
				return s.finish(children), nil
			}
		case sig := <-r.Signals():
			s.forward(sig.(unix.Signal))
		}
	}
}

// start launches generation n of the application.
func (s *Supervisor) start(n int) (*generation, error) {
	pid, err := launch.Start(launch.Spec{Argv: s.opts.Command, Env: s.opts.Env})
	if err != nil {
		return nil, err
	}
	s.log.Info("started", "generation", n, "pid", pid, "command", s.opts.Command[0])
	return &generation{number: n, pid: pid, state: stateServing, started: time.Now()}, nil
}

// handleExits records exits and reports whether the serving generation
// has ended.
func (s *Supervisor) handleExits(exits []reaper.Exit) bool {
	ended := false
	for _, e := range exits {
		if e.Pid == s.serving.pid {
			s.serving.state = stateExited
			s.serving.exit = e
			s.log.Info("main child ended", "generation", s.serving.number, "pid", e.Pid, "how", e.String())
			ended = true
			continue
		}
		if s.opts.WarnOnReap {
			s.log.Warn("reaped zombie", "pid", e.Pid, "how", e.String())
		}
	}
	return ended
}

// forward relays sig to the serving generation.
func (s *Supervisor) forward(sig unix.Signal) {
	target := s.serving.pid
	if s.opts.SignalGroup {
		target = -target
	}
	s.log.Debug("forwarding signal", "signal", reaper.SignalName(sig), "to", target)
	if err := unix.Kill(target, sig); err != nil {
		// ESRCH: the child ended and its exit is not reaped yet.
		s.log.Warn("forward signal", "signal", reaper.SignalName(sig), "to", target, "err", err)
	}
}

// finish terminates every process left once the main child has ended and
// returns the main child's exit when none is left. children is what the
// last Reap said.
func (s *Supervisor) finish(children bool) reaper.Exit {
	r := s.opts.Reaper
	if !children {
		return s.serving.exit
	}
	if n, err := r.SignalAll(unix.SIGTERM); err != nil {
		s.log.Warn("terminate remaining processes", "err", err)
	} else if n > 0 {
		s.log.Info("terminating remaining processes", "signal", "SIGTERM", "kill_timeout", s.opts.KillTimeout)
	}
	kill := time.NewTimer(s.opts.KillTimeout)
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
			s.log.Warn("processes left after kill timeout: sending SIGKILL", "kill_timeout", s.opts.KillTimeout)
			killing = true
			s.killAll()
		case sig := <-r.Signals():
			// The application has ended; nothing to forward to.
			s.log.Debug("signal ignored while terminating", "signal", reaper.SignalName(sig.(unix.Signal)))
			continue
		}
		exits, children := r.Reap()
		s.handleExits(exits)
		if !children {
			return s.serving.exit
		}
	}
}

func (s *Supervisor) killAll() {
	if _, err := s.opts.Reaper.SignalAll(unix.SIGKILL); err != nil {
		s.log.Warn("kill remaining processes", "err", err)
	}
}

// withoutActivation returns env without the socket-activation variables.
func withoutActivation(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
		default:
			out = append(out, kv)
		}
	}
	return out
}
