package reaper

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tini-hot/tini-hot/internal/sighold"
	"golang.org/x/sys/unix"
)

// sigMax is the highest signal number on Linux (_NSIG - 1).
const sigMax = 64

// Forwardable lists the signals a Reaper relays: every signal from 1 to 64
// but those [Unforwardable] names a reason for.
func Forwardable() []unix.Signal {
	var sigs []unix.Signal
	for n := 1; n <= sigMax; n++ {
		if Unforwardable(unix.Signal(n)) == "" {
			sigs = append(sigs, unix.Signal(n))
		}
	}
	return sigs
}

// Unforwardable says why sig never reaches tini-hot's handling, to
// forward it or to act on it (a reload), or "" when it does: SIGKILL and
// SIGSTOP cannot be caught; SIGCHLD drives reaping; the Go runtime keeps
// SIGURG (its preemption signal) and SIGPROF (its profiler) for itself;
// SIGPIPE is raised by tini-hot's own writes and dropped (see [New]); 32
// and 33 are reserved by the C libraries; and 34 a Go program cannot
// catch (as PID 1 the kernel drops it, as it does every signal PID 1 has
// no handler for; otherwise it ends tini-hot, as SIGKILL would).
func Unforwardable(sig unix.Signal) string {
	switch {
	case sig == unix.SIGKILL, sig == unix.SIGSTOP:
		return "it cannot be caught"
	case sig == unix.SIGCHLD:
		return "tini-hot reaps on it"
	case sig == unix.SIGURG:
		return "the Go runtime preempts with it"
	case sig == unix.SIGPROF:
		return "the Go runtime profiles with it"
	case sig == unix.SIGPIPE:
		return "tini-hot's own writes raise it, and it is dropped"
	case sig == 32 || sig == 33:
		return "the C libraries reserve it"
	case sig == 34:
		// SIGRTMIN in C; the Go runtime keeps it for musl's SIGSYNCCALL,
		// installs no handler, and os/signal cannot enable one
		// (_SigSetStack in its signal table, Go issue 39343).
		return "a Go program cannot catch it"
	case sig < 1 || sig > sigMax:
		return "no such signal"
	}
	return ""
}

// Essential lists the forwardable signals that a Go program does not drop
// while it has not subscribed to them ([sighold.Essential]): the runtime
// exits or crashes on them, or they stop the process. [New] subscribes to
// these before it returns (or takes them over from [sighold]), to the
// rest in the background. TestUnsubscribed checks the runtime's side.
func Essential() []unix.Signal { return sighold.Essential() }

// ParseSignal reads a signal given as a name with or without the SIG
// prefix, in any case ("TERM", "SIGTERM", "sigterm"), or as a number from 1
// to 64 with or without the prefix ("15", "SIG40"), which is what
// [SignalName] writes.
func ParseSignal(s string) (unix.Signal, error) {
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n, err := strconv.Atoi(name[len("SIG"):]); err == nil {
		if n < 1 || n > sigMax {
			return 0, fmt.Errorf("signal %q: number out of range 1-%d", s, sigMax)
		}
		return unix.Signal(n), nil
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown signal name", s)
}

// SignalName is the conventional name of sig ("SIGTERM"), or its number
// for signals without a name ("SIG40").
func SignalName(sig unix.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "SIG" + strconv.Itoa(int(sig))
}
