// Command tini-hot is a container init (PID 1): it reaps zombies, forwards
// signals and exits with its child's status, like tini, and upgrades the
// application in place on sockets it holds. See README.md.
//
// Exit statuses of tini-hot itself: the application's status (128+N when
// it died of signal N, 0 for a status remapped with -e); 2 for a usage
// error; 1 when tini-hot could not start (a socket could not be bound, the
// application could not be forked); 127 and 126 when the command does not
// exist or cannot be executed. Subcommands exit 0 on success, 1 on
// failure with one line saying why, 2 on a usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/control"
	"github.com/tini-hot/tini-hot/internal/cli"
	"github.com/tini-hot/tini-hot/internal/footprint"
	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/listen"
	"github.com/tini-hot/tini-hot/internal/logq"
	"github.com/tini-hot/tini-hot/internal/metrics"
	"github.com/tini-hot/tini-hot/internal/procs" // bounds the processors from its initialiser
	"github.com/tini-hot/tini-hot/internal/sighold"
	_ "github.com/tini-hot/tini-hot/internal/sighold/atstart" // holds the essential signals from its initialiser
	"github.com/tini-hot/tini-hot/internal/usage"
	"github.com/tini-hot/tini-hot/internal/watch"
	"github.com/tini-hot/tini-hot/reaper"
	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/sys/unix"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..." (Dockerfile, release).
var (
	version = "dev"
	commit  string
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is tini-hot without os.Exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := cli.Parse(args, os.LookupEnv)
	if err != nil || cfg.Help || cfg.Version || cfg.Subcommand != "" {
		// No supervisor: the signals held since the start (see
		// internal/sighold) end this process as they would any program.
		sighold.Release()
	}
	if err != nil {
		fmt.Fprintf(stderr, "tini-hot: %v (see tini-hot --help)\n", err)
		return cli.ExitUsage
	}
	switch {
	case cfg.Help && cfg.Subcommand == "version":
		fmt.Fprint(stdout, cli.VersionUsage)
		return 0
	case cfg.Help:
		fmt.Fprint(stdout, cli.Usage(cfg.Flags))
		return 0
	case cfg.Version:
		fmt.Fprint(stdout, cli.VersionLine(version, commit))
		return 0
	case cfg.Subcommand != "":
		return cli.RunClient(cfg, stdout, stderr)
	}
	if err := cfg.CheckPaths(); err != nil {
		fmt.Fprintf(stderr, "tini-hot: %v (see tini-hot --help)\n", err)
		return cli.ExitUsage
	}
	return supervise(cfg, stderr)
}

// softMemoryLimit is tini-hot's own soft memory limit: the Go runtime
// otherwise keeps the memory of past reloads' garbage, and RSS grows over
// thousands of reloads (measured: RssAnon +3.8 MiB over 300 reloads
// without it, +0.7 MiB over 1,000 with it). It is set in
// process, never through GOMEMLIMIT, which the application would inherit.
// The supervisor also gives each reload's memory back once the reload is
// over (upgrade's releaseMemory); the limit bounds what accumulates
// between reloads (status and metrics requests).
const softMemoryLimit = 8 << 20

// settleAfter is how long after the first generation's start tini-hot
// subscribes to the signals that can wait and reserves the threads it may
// need later (see supervise).
const settleAfter = 5 * time.Millisecond

// socketSlots is how many sockets each TCP and UDP listener binds, one
// per generation that can be alive at once: the serving one, an
// upgrading one, --max-draining old ones and a failed one being stopped.
// 1 (shared) with --shared-sockets.
func socketSlots(cfg *cli.Config) int {
	if cfg.SharedSockets {
		return 1
	}
	return cfg.Supervisor.MaxDraining + 3
}

// supervise is tini-hot as init.
func supervise(cfg *cli.Config, stderr io.Writer) int {
	// The log pipe can stall (its reader stuck): lines are queued and
	// written by a goroutine of their own, so that the supervisor never
	// waits for it, and the last ones get a second to go out.
	out := logq.New(stderr)
	defer out.Flush(time.Second)
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	// What the application inherits of tini-hot's signal state, read
	// before anything subscribed.
	inherited, err := launch.CaptureSignals()
	log := newLogger(out, cfg.Verbosity)
	slog.SetDefault(log)
	if err != nil {
		log.Warn("the application starts with no signal ignored or blocked", "err", err)
	}
	fail := func(err error) int {
		fmt.Fprintf(out, "tini-hot: %v\n", err)
		return cli.ExitFailure
	}
	if err := launch.CloseInherited(); err != nil {
		log.Warn("inherited fds may reach the application", "err", err)
	}

	// Sockets first: a bind failure starts nothing.
	var listeners []*listen.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close() // removes unix socket files
		}
	}()
	for _, spec := range cfg.Listen {
		l, err := listen.Bind(spec, socketSlots(cfg))
		if err != nil {
			return fail(err)
		}
		if l.Fallback != "" {
			log.Warn("listener shared by every generation, not steered: the kernel refused the steering program", "listener", spec.Name, "err", l.Fallback)
		}
		listeners = append(listeners, l)
	}

	r, err := reaper.New()
	if err != nil {
		return fail(err)
	}
	if len(listeners) > 0 {
		// A generation's shutdown(2) of a shared socket would stop it
		// for every generation: listen again at once.
		if g, err := listen.Guard(listeners, log); err != nil {
			log.Warn("sockets not guarded against shutdown(2)", "err", err)
		} else {
			defer g.Close()
		}
	}
	if cfg.PdeathSignal != 0 {
		// The parent-death signal belongs to the thread that sets it: keep
		// this goroutine on it for good, so that the thread lives as long
		// as the process. Lock here, not from the start: under a locked
		// goroutine each signal subscription in reaper.New (a round trip
		// with one of the runtime's threads, per signal) costs a thread
		// switch more, 1.5 ms at start in all.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(cfg.PdeathSignal), 0, 0, 0); err != nil {
			return fail(fmt.Errorf("set parent-death signal: %w", err))
		}
	}
	opts := cfg.Supervisor
	opts.Reaper, opts.Listeners, opts.Signals, opts.Logger = r, listeners, inherited, log
	container := usage.Deferred()
	opts.Container = container
	// What tini-hot needs only once the application runs waits for its
	// fork. Right after it, beside the application's start (its exec,
	// on the other CPU): the memory cgroup and the control socket,
	// 0.3 and 0.1 ms of `tini-hot -- /bin/true` when they came before.
	//
	// Once the first generation has run a moment (a command that ends
	// sooner needs none of it):
	//   - the signals that can wait (reaper.New): 0.3 ms more of
	//     `tini-hot -- /bin/true` right after the fork, where their
	//     round trips shared the CPUs with the command's start;
	//   - threads for later, while the container has room for them: at
	//     its pids limit it could give none, and the Go runtime dies when
	//     it cannot start a thread it needs (procs.Reserve); reserved on
	//     the way to the fork, they made `tini-hot -- /bin/true` 0.8 ms
	//     slower, and right after it 0.3 ms;
	//   - trimming what tini-hot keeps of its start: the garbage
	//     collector's one-time cost, paid now while the heap is smallest,
	//     and the binary's pages that only the start touched
	//     (footprint.Trim).
	var (
		sup   *upgrade.Supervisor
		later *time.Timer
		ctl   *control.Server
	)
	opts.Started = func() {
		if err := container.Found(); err != nil {
			log.Info("no memory cgroup: reloads do not check memory", "err", err)
		}
		ctl = listenControl(cfg.Control, sup, log)
		later = time.AfterFunc(settleAfter, func() {
			r.SubscribeRest()
			procs.Reserve(procs.Reserved)
			log.Debug("threads reserved", "threads", procs.Reserved)
			if err := footprint.Trim(); err != nil {
				log.Info("start-up pages of the binary kept", "err", err)
			}
		})
	}
	defer func() {
		if later != nil {
			later.Stop()
		}
		if ctl != nil {
			ctl.Close()
		}
	}()
	sup, err = upgrade.New(opts)
	if err != nil {
		return fail(err)
	}
	if len(cfg.Watch) > 0 {
		w, err := watch.New(cfg.Watch, cfg.WatchDebounce, func(paths []string) {
			// The answer is logged by the supervisor; this goroutine only
			// waits for it, so that the watcher never blocks.
			go func() { _, _ = sup.Reload(context.Background(), false, "--watch "+strings.Join(paths, ", ")) }()
		}, log)
		if err != nil {
			return fail(err)
		}
		defer w.Close()
	}
	if cfg.Metrics != "" {
		srv, err := metrics.Listen(cfg.Metrics, sup.Status, log)
		if err != nil {
			return fail(err)
		}
		defer srv.Close()
	}
	exit, err := sup.Run()
	if err != nil {
		return fail(err)
	}
	code := exit.Code()
	if cfg.Remap[code] {
		return 0
	}
	return code
}

// listenControl creates the control socket at path, or returns nil. It
// is a convenience: without it SIGHUP still reloads, so failing to
// create it (read-only root filesystem) is a warning.
func listenControl(path string, sup *upgrade.Supervisor, log *slog.Logger) *control.Server {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Warn("no control socket", "err", err)
		return nil
	}
	srv, err := control.Listen(path, handler(sup), log)
	if err != nil {
		log.Warn("no control socket", "err", err)
		return nil
	}
	return srv
}

// newLogger logs to w at tini's verbosity levels: 0 errors, 1 warnings
// (the default), 2 information, 3 and more debugging.
func newLogger(w io.Writer, verbosity int) *slog.Logger {
	level := slog.LevelError
	switch {
	case verbosity >= 3:
		level = slog.LevelDebug
	case verbosity == 2:
		level = slog.LevelInfo
	case verbosity == 1:
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			// Container runtimes timestamp every line already.
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("prog", "tini-hot")
}
