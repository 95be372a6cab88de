package reaper

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sigRTMin is the first real-time signal a program may use: glibc keeps 32
// and 33 for itself (SIGRTMIN in C is 34 on Linux with glibc or musl).
const sigRTMin = 34

// sigMax is the highest signal number on Linux (_NSIG - 1).
const sigMax = 64

// Forwardable lists the signals a Reaper relays: every signal from 1 to 64
// except SIGKILL and SIGSTOP (uncatchable), SIGCHLD (it drives reaping),
// SIGURG (the Go runtime's preemption signal), SIGPROF (the Go runtime
// consumes it for its profiler and never delivers it), SIGPIPE (tini-hot's
// own writes raise it; see [New]) and 32, 33 (reserved by the C
// libraries).
func Forwardable() []unix.Signal {
	var sigs []unix.Signal
	for n := 1; n <= sigMax; n++ {
		s := unix.Signal(n)
		switch {
		case s == unix.SIGKILL, s == unix.SIGSTOP, s == unix.SIGCHLD, s == unix.SIGURG, s == unix.SIGPROF, s == unix.SIGPIPE:
		case n > 31 && n < sigRTMin:
		default:
			sigs = append(sigs, s)
		}
	}
	return sigs
}

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
