// Package sighold holds, from tini-hot's first moments, the signals that
// would end it: until a Go program subscribes to SIGHUP, SIGINT or SIGTERM,
// the Go runtime exits with status 2 when one arrives (as PID 1 it cannot
// die of the signal, so the runtime's exit(2) is what is left), and it
// crashes on SIGQUIT and the other [Essential] signals sent with kill(2).
// tini-hot subscribes to them only in main, after its libraries are
// initialised, its flags parsed and its sockets bound: a few milliseconds
// in which a SIGTERM, or a SIGHUP meant as a reload, ended the container
// with the usage-error status.
//
// [Hold] subscribes to them into channels of its own, which the reaper
// later takes over ([Take]) with whatever arrived meanwhile: a SIGTERM
// then shuts down cleanly, a SIGHUP reloads, once the supervisor runs.
// The package atstart calls Hold from its initialiser, which the Go
// specification runs as soon as os/signal is initialised, before the
// libraries tini-hot links (see atstart). What is left is the Go runtime's
// own start, before any package's initialiser: there the runtime has
// installed its handlers and nothing can subscribe yet. A program that
// does not supervise (a subcommand, --help, a usage error) calls
// [Release], which delivers what was held as if nothing had been.
//
// It imports only the standard library packages that are initialised
// first (os, os/signal, syscall) and internal/affinity, which imports no
// more, so that its initialiser is not held back by others
// (golang.org/x/sys/unix is initialised late).
package sighold

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/tini-hot/tini-hot/internal/affinity"
)

// Essential lists the signals a Go program does not drop while it has not
// subscribed to them: the runtime exits on SIGHUP, SIGINT and SIGTERM
// (its _SigKill signals) and crashes with a stack trace on SIGQUIT,
// SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSTKFLT and SIGSYS
// (_SigThrow, _SigPanic), sent by kill(2) as well, and leaves SIGTSTP,
// SIGTTIN and SIGTTOU at their default, which stops the process (unless
// its process group is orphaned: the kernel discards them then). It drops
// every other catchable signal.
func Essential() []syscall.Signal {
	return []syscall.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGABRT,
		syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGTERM, syscall.SIGSTKFLT, syscall.SIGSYS,
		syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU,
	}
}

// Buffers of the held channels, which become the reaper's: SIGTERM has
// one of its own, of one (one SIGTERM waiting is as good as several), so
// that no other signal can fill it. SignalsBuffer is how many other
// signals may wait: os/signal drops a signal when the channel is full,
// and 256 covers any burst a person or a script sends (a storm of the
// same signal is coalesced later anyway).
const (
	termBuffer    = 1
	SignalsBuffer = 256
)

var (
	mu      sync.Mutex
	held    bool
	term    chan os.Signal
	signals chan os.Signal
)

// Hold subscribes to the [Essential] signals, SIGTERM into a channel of
// its own. Calling it again does nothing.
func Hold() {
	mu.Lock()
	defer mu.Unlock()
	if held {
		return
	}
	held = true
	term = make(chan os.Signal, termBuffer)
	signals = make(chan os.Signal, SignalsBuffer)
	var others []os.Signal
	for _, s := range Essential() {
		if s != syscall.SIGTERM {
			others = append(others, s)
		}
	}
	// With every thread on one CPU, where os/signal's round trips cost
	// half (internal/affinity).
	defer affinity.Pin()()
	signal.Notify(term, syscall.SIGTERM)
	signal.Notify(signals, others...)
}

// Take hands the held channels over: SIGTERM, and the other Essential
// signals, each with what arrived since Hold, still subscribed. The caller
// owns them from now on. It returns nil channels when nothing is held
// (Hold was not called, or Take or Release was).
func Take() (termC, signalsC chan os.Signal) {
	mu.Lock()
	defer mu.Unlock()
	termC, signalsC = term, signals
	held, term, signals = false, nil, nil
	return termC, signalsC
}

// Release stops holding: the Essential signals get the Go runtime's
// default handling again, and each signal that arrived while held is sent
// again, so that the process ends (or stops) as it would have without
// Hold. For a program that will not supervise.
func Release() {
	termC, signalsC := Take()
	if termC == nil {
		return
	}
	signalStop(termC, signalsC)
	for _, c := range []chan os.Signal{termC, signalsC} {
		for len(c) > 0 {
			if s, ok := (<-c).(syscall.Signal); ok {
				_ = syscall.Kill(os.Getpid(), s) // to ourselves: cannot fail
			}
		}
	}
}

// signalStop stops the delivery to every channel given.
func signalStop(cs ...chan os.Signal) {
	for _, c := range cs {
		signal.Stop(c)
	}
}
