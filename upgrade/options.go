package upgrade

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/listen"
	"github.com/tini-hot/tini-hot/internal/usage"
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
	// reload starts; one more reload waits until one of them has exited
	// rather than cut their requests short.
	DefaultMaxDraining = 4
	// DefaultGracePeriod is Kubernetes' default
	// terminationGracePeriodSeconds.
	DefaultGracePeriod = 30 * time.Second
)

// LowMemory is what a reload does when the container's memory cannot hold
// a second generation next to the serving one (Options.OnLowMemory).
type LowMemory string

const (
	// LowMemoryRefuse fails the reload; the serving generation serves
	// on. The default.
	LowMemoryRefuse LowMemory = "refuse"
	// LowMemoryRestart drains the serving generation fully, then starts
	// the new one on the held sockets: a gap in service (connections
	// wait in the kernel's backlog), and no way back to the old process.
	LowMemoryRestart LowMemory = "restart"
	// LowMemoryIgnore upgrades anyway.
	LowMemoryIgnore LowMemory = "ignore"
)

// ParseLowMemory checks an --on-low-memory value.
func ParseLowMemory(s string) (LowMemory, error) {
	return parseChoice(s, LowMemoryRefuse, LowMemoryRestart, LowMemoryIgnore)
}

// parseChoice returns s as one of choices, or an error listing them.
func parseChoice[T ~string](s string, choices ...T) (T, error) {
	names := make([]string, len(choices))
	for i, c := range choices {
		if string(c) == s {
			return c, nil
		}
		names[i] = string(c)
	}
	return "", fmt.Errorf("%q: must be %s or %s", s, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// RestartPolicy says when the serving generation is started again after
// it exits on its own (Options.Restart).
type RestartPolicy string

const (
	// RestartNever ends the container with the application's status, as
	// tini. The default.
	RestartNever RestartPolicy = "never"
	// RestartOnFailure restarts after a non-zero status or a signal.
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartAlways restarts after any exit, status 0 too.
	RestartAlways RestartPolicy = "always"
)

// ParseRestartPolicy checks a --restart value.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	return parseChoice(s, RestartNever, RestartOnFailure, RestartAlways)
}

// Restart back-off: the first restart is at once, the next after
// RestartBackoff, doubling up to RestartBackoffMax.
const (
	RestartBackoff    = 250 * time.Millisecond
	RestartBackoffMax = 10 * time.Second
	// DefaultRestartLimit crashes within DefaultRestartWindow make
	// tini-hot give up: an application that crashes at every start ends
	// the container within about 5 s, and the kubelet's CrashLoopBackOff
	// takes over.
	DefaultRestartLimit  = 5
	DefaultRestartWindow = time.Minute
)

// NoReloadSignal in Options.ReloadSignal keeps tini's behaviour: the
// reload signal is forwarded like any other.
const NoReloadSignal = unix.Signal(-1)

// KillMargin is how long before the end of the grace period tini-hot
// sends SIGKILL to every process left, so that it exits, with a status,
// before the kubelet's own SIGKILL: a tenth of the grace period, at least
// 50 ms and at most 1 s.
func KillMargin(grace time.Duration) time.Duration {
	return min(max(grace/10, 50*time.Millisecond), time.Second)
}

// Options configures a Supervisor. The command line (internal/cli) fills
// it directly, one flag per field.
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
	Listeners []*listen.Listener
	// Signals is the signal state the application starts with: what
	// tini-hot inherited ([launch.CaptureSignals]). Zero: nothing
	// ignored or blocked.
	Signals launch.SignalState
	// SignalGroup forwards signals to the application's process group
	// instead of its main process (tini -g).
	SignalGroup bool
	// KillTimeout is the time from SIGTERM to SIGKILL for processes left
	// when the serving generation has exited. Zero: DefaultKillTimeout.
	KillTimeout time.Duration
	// Ready says when a new generation is ready; zero: DefaultReadiness.
	Ready Readiness
	// ReadyTimeout fails a new generation not ready in time. Zero:
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// DrainSignal asks an old generation to finish and exit. Zero:
	// DefaultDrainSignal.
	DrainSignal unix.Signal
	// DrainTimeout is how long an old generation may drain before its
	// whole process tree gets SIGKILL. Zero: DefaultDrainTimeout.
	DrainTimeout time.Duration
	// ReloadSignal starts a reload; NoReloadSignal forwards it instead.
	// Zero: DefaultReloadSignal.
	ReloadSignal unix.Signal
	// MaxDraining bounds the generations draining at once. Zero:
	// DefaultMaxDraining.
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
	// SIGTERM has come. Less than GracePeriod.
	ShutdownDelay time.Duration
	// Container is the container's memory cgroup, read before every
	// upgrade and for status; nil: none, every upgrade fits.
	Container *usage.Container
	// OnLowMemory says what a reload does when the serving generation's
	// anonymous and shared memory does not fit below the container's limit next to
	// what is used, even once the generations still draining are gone.
	// Zero: LowMemoryRefuse.
	OnLowMemory LowMemory
	// Restart says whether the serving generation is started again on
	// the held sockets when it exits outside a shutdown or an upgrade.
	// Zero: RestartNever.
	Restart RestartPolicy
	// RestartLimit restarts within RestartWindow are allowed; at the next
	// crash tini-hot gives up and exits with the application's status.
	// Zero: DefaultRestartLimit, DefaultRestartWindow.
	RestartLimit  int
	RestartWindow time.Duration
	// Expected are exit statuses that count as success besides 0, as
	// tini -e remaps them: one is no crash (--restart on-failure).
	Expected map[int]bool
	// WarnOnReap logs every reaped process that is not a generation's
	// main process (tini -w).
	WarnOnReap bool
	// Logger receives the supervisor's messages; nil means slog.Default().
	Logger *slog.Logger
	// Started, if set, is called once, from Run's goroutine, right after
	// the first generation has been started.
	Started func()
}

// SetDefaults gives every zero field that has a default its Default…
// value. Validate calls it; the command line calls it first, so that its
// flags start from the same defaults.
func (o *Options) SetDefaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.KillTimeout, DefaultKillTimeout},
		{&o.ReadyTimeout, DefaultReadyTimeout},
		{&o.DrainTimeout, DefaultDrainTimeout},
		{&o.GracePeriod, DefaultGracePeriod},
		{&o.RestartWindow, DefaultRestartWindow},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.Ready.Mode == "" {
		o.Ready = DefaultReadiness
	}
	if o.DrainSignal == 0 {
		o.DrainSignal = DefaultDrainSignal
	}
	if o.ReloadSignal == 0 {
		o.ReloadSignal = DefaultReloadSignal
	}
	if o.MaxDraining == 0 {
		o.MaxDraining = DefaultMaxDraining
	}
	if o.OnLowMemory == "" {
		o.OnLowMemory = LowMemoryRefuse
	}
	if o.Restart == "" {
		o.Restart = RestartNever
	}
	if o.RestartLimit == 0 {
		o.RestartLimit = DefaultRestartLimit
	}
}

// Validate fills zero fields with their defaults and checks the rest. Its
// errors are one line and name the option's flag.
func (o *Options) Validate() error {
	if len(o.Command) == 0 {
		return fmt.Errorf("no command to supervise")
	}
	if o.Command[0] == "" {
		return fmt.Errorf("the command to supervise is empty (\"\")")
	}
	o.SetDefaults()
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--kill-timeout", o.KillTimeout},
		{"--ready-timeout", o.ReadyTimeout},
		{"--drain-timeout", o.DrainTimeout},
		{"--grace-period", o.GracePeriod},
		{"--restart-window", o.RestartWindow},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v: must be positive", d.flag, d.v)
		}
	}
	if o.ReloadSignal != NoReloadSignal {
		switch why := reaper.Unforwardable(o.ReloadSignal); {
		case o.ReloadSignal == unix.SIGTERM:
			return fmt.Errorf("--reload-signal %s: it shuts the container down", reaper.SignalName(o.ReloadSignal))
		case why != "":
			return fmt.Errorf("--reload-signal %s: never reaches tini-hot: %s", reaper.SignalName(o.ReloadSignal), why)
		}
	}
	if o.Restart != RestartNever {
		switch least := restartBackoffs(o.RestartLimit); {
		case least == math.MaxInt64:
			return fmt.Errorf("--restart-limit %d: the back-off between so many restarts is longer than any --restart-window: the restarts would never give up", o.RestartLimit)
		case o.RestartWindow <= least:
			return fmt.Errorf("--restart-window %v: the back-off between %d restarts (--restart-limit) takes %v, so more than %d crashes never fit in it and the restarts never give up; use more than %v", o.RestartWindow, o.RestartLimit, least, o.RestartLimit, least)
		}
	}
	if o.MaxDraining < 0 {
		return fmt.Errorf("--max-draining %d: must be at least 1", o.MaxDraining)
	}
	if o.RestartLimit < 0 {
		return fmt.Errorf("--restart-limit %d: must be at least 1", o.RestartLimit)
	}
	if _, err := ParseRestartPolicy(string(o.Restart)); err != nil {
		return fmt.Errorf("--restart %v", err)
	}
	if _, err := ParseLowMemory(string(o.OnLowMemory)); err != nil {
		return fmt.Errorf("--on-low-memory %v", err)
	}
	if o.ShutdownDelay < 0 || o.ShutdownDelay >= o.GracePeriod {
		return fmt.Errorf("--shutdown-delay %v: must be at least 0 and less than --grace-period %v", o.ShutdownDelay, o.GracePeriod)
	}
	return nil
}
