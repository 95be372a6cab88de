package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"

	"github.com/tini-hot/tini-hot/internal/affinity"
	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/internal/sighold"
	"golang.org/x/sys/unix"
)

// Reaper reaps zombies and receives signals. Its owner selects on
// [Reaper.Reapable] and [Reaper.Signals] and calls [Reaper.Reap], so
// starting a process, recording its pid and matching its exit all happen
// in one goroutine and no exit can arrive before its pid is known.
type Reaper struct {
	pid     int
	chld    chan os.Signal
	term    chan os.Signal
	signals chan os.Signal
	// rest are the signals New leaves to SubscribeRest, nil once
	// subscribed to; subscribed is closed then.
	rest       []os.Signal
	subscribed chan struct{}
	mu         sync.Mutex // rest, stopped
	stopped    bool
}

// New subscribes to SIGCHLD and to the [Forwardable] signals a Go
// program dies or stops of while nobody has subscribed to them
// ([Essential]) and, unless the process is PID 1, makes it a child
// subreaper. The Essential signals come through [sighold]: New takes its
// channels over, with the signals that arrived since tini-hot held them
// from its first moments, or has it subscribe now. Call it before
// starting any child, so that no exit and no such signal is missed. Call [Reaper.SubscribeRest] for the others once
// the first child has started.
//
// os/signal enables each signal with a round trip between two of the
// runtime's threads, and New makes them with every thread on one CPU
// ([affinity.Pin]), where the round trips cost half: 17 in about 0.2 ms
// on 2 CPUs. The 40 others need not delay the command: until their
// subscription, the runtime drops such a signal (USR1, WINCH, ...)
// instead of forwarding it, as it does for every signal before New:
// forwarded to an application that has only just been forked, it would
// have found the signal at its default disposition anyway, and for most
// of them that ends the process.
//
// It also catches and drops SIGPIPE: the kernel raises it in tini-hot
// when a control client or the reader of its log goes away mid-write, and
// a forwarded SIGPIPE would kill an application that does not ignore it
// (a shell script, a C program). Since it cannot be told apart from a
// kill -PIPE, it is never forwarded; writes fail with EPIPE instead. It
// is caught rather than ignored so that the application, started
// directly, gets it at its default: an ignored signal stays ignored
// across exec.
func New() (*Reaper, error) {
	r := &Reaper{
		pid:        os.Getpid(),
		chld:       make(chan os.Signal, 1),
		subscribed: make(chan struct{}),
	}
	if r.pid != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	// The Essential signals: held since tini-hot's first initialiser,
	// or subscribed to now (Hold does nothing when they are held).
	sighold.Hold()
	r.term, r.signals = sighold.Take()
	essential := Essential()
	for _, s := range Forwardable() {
		if !slices.Contains(essential, s) {
			r.rest = append(r.rest, s)
		}
	}
	defer affinity.Pin()()
	// Never read: os/signal drops what does not fit.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)
	signal.Notify(r.chld, unix.SIGCHLD)
	return r, nil
}

// SubscribeRest subscribes to the forwardable signals New left out, with
// every thread on one CPU (see New), and closes [Reaper.Subscribed]. Call
// it once the first child has started: it then takes a CPU the
// application's start may not need. It does nothing after
// [Reaper.Stop], or when called again.
func (r *Reaper) SubscribeRest() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.rest == nil {
		return
	}
	unpin := affinity.Pin()
	signal.Notify(r.signals, r.rest...)
	unpin()
	r.rest = nil
	close(r.subscribed)
}

// Subscribed is closed once the reaper is subscribed to every forwardable
// signal (see [Reaper.SubscribeRest]).
func (r *Reaper) Subscribed() <-chan struct{} { return r.subscribed }

// IsInit reports whether the process is PID 1 of its PID namespace.
func (r *Reaper) IsInit() bool { return r.pid == 1 }

// Reapable receives a value when a child may have ended: call Reap.
func (r *Reaper) Reapable() <-chan os.Signal { return r.chld }

// Signals receives every forwardable signal the process gets, except
// SIGTERM.
func (r *Reaper) Signals() <-chan os.Signal { return r.signals }

// Terminations receives SIGTERM. Its own channel cannot be filled by other
// signals, so a SIGTERM is never dropped, however many others wait.
func (r *Reaper) Terminations() <-chan os.Signal { return r.term }

// Stop unsubscribes from all signals. Signals then get the Go runtime's
// default handling.
func (r *Reaper) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	signal.Stop(r.chld)
	signal.Stop(r.term)
	signal.Stop(r.signals)
}

// Reap collects every child that has ended, without blocking. children is
// false once the process has no child left at all (wait4 said ECHILD): no
// descendant remains either, since orphans are reparented to a subreaper or
// PID 1.
func (r *Reaper) Reap() (exits []Exit, children bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case err == nil && pid > 0:
			exits = append(exits, Exit{Pid: pid, Status: ws})
		case err == nil:
			// pid 0: children exist but none has ended. We never block
			// here, so that the owner stays responsive to signals.
			return exits, true
		case errors.Is(err, unix.EINTR):
			// Interrupted by a signal before anything was reaped: retry.
		case errors.Is(err, unix.ECHILD):
			// No child at all.
			return exits, false
		default:
			// wait4 fails otherwise only for a bad argument (EINVAL),
			// which these constant arguments rule out. Report no more
			// exits for now; the next SIGCHLD retries.
			return exits, true
		}
	}
}

// SignalAll sends sig to every process left below this one: as PID 1 that
// is every other process of the namespace (kill(-1)); as a subreaper, every
// descendant found in /proc (through pidfds, so a pid reused since the scan
// is left alone). It returns how many processes were signalled (as a
// subreaper) or 1 when kill(-1) found any (as PID 1).
func (r *Reaper) SignalAll(sig unix.Signal) (int, error) {
	if r.IsInit() {
		// kill(-1) from PID 1 reaches every process of the namespace
		// except the caller. It is never used when not PID 1, where it
		// would reach every process of the host the user may signal.
		err := unix.Kill(-1, sig)
		switch {
		case err == nil:
			return 1, nil
		case errors.Is(err, unix.ESRCH):
			// No other process.
			return 0, nil
		default:
			return 0, fmt.Errorf("kill -%s -1: %w", SignalName(sig), err)
		}
	}
	t, err := proctree.Snapshot()
	if err != nil {
		return 0, err
	}
	return proctree.SignalAll(t.Descendants(r.pid), sig), nil
}
