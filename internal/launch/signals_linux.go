package launch

import (
	"errors"
	"strconv"
	"syscall"
	"unsafe"
)

// SignalState is a set of ignored and a set of blocked signals, bit N-1
// for signal N, as in /proc/PID/status (SigIgn, SigBlk).
type SignalState struct {
	Ignored, Blocked uint64
}

// String is the form the trampoline reads back: "IGN:BLK" in hex.
func (s SignalState) String() string {
	return strconv.FormatUint(s.Ignored, 16) + ":" + strconv.FormatUint(s.Blocked, 16)
}

func parseSignalState(v string) (SignalState, error) {
	ign, blk, ok := cut(v, ':')
	i, err1 := strconv.ParseUint(ign, 16, 64)
	b, err2 := strconv.ParseUint(blk, 16, 64)
	if !ok || err1 != nil || err2 != nil {
		return SignalState{}, errors.New("bad signal state " + strconv.Quote(v))
	}
	return SignalState{Ignored: i, Blocked: b}, nil
}

// sigaction is the kernel's struct sigaction for rt_sigaction(2) on amd64
// and arm64.
type sigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// SIG_DFL and SIG_IGN.
const (
	sigDfl = 0
	sigIgn = 1
)

// sigMax is the highest signal number (_NSIG - 1).
const sigMax = 64

// inherited and inheritedErr are the signal state this process started
// with, read by the package's initialiser (see init) before anything
// could subscribe to a signal.
var (
	inherited    SignalState
	inheritedErr error
)

// CaptureSignals returns what could still be known of the signal state
// tini-hot was started with, for its application to inherit as it would
// under tini. It was read by this package's initialiser, on the main
// thread, before any signal.Notify: tini-hot subscribes to some signals
// from an initialiser too (internal/sighold/atstart), which imports this
// package so that this one is initialised first.
//
// The Go runtime installs its own handlers and unblocks the signals it
// needs before main runs, so some of the inherited state is gone by then:
// an ignore of a signal the runtime handles (SIGSEGV, SIGBUS, SIGFPE,
// SIGILL, SIGTRAP, SIGABRT, SIGSYS, SIGQUIT, SIGTERM, SIGUSR1, ...) and the
// block of a signal it must receive (SIGILL, SIGTERM, SIGSEGV, ...). What
// is kept: the ignores the runtime leaves in place (SIGHUP and SIGINT when
// ignored, SIGTTIN, SIGTTOU, SIGTSTP, ...) and the blocks it leaves
// (SIGTTIN, SIGTTOU, SIGHUP, SIGUSR2, ... anything not in its list).
func CaptureSignals() (SignalState, error) { return inherited, inheritedErr }

// readSignals reads the ignored signals and the calling thread's mask.
func readSignals() (SignalState, error) {
	var s SignalState
	for sig := 1; sig <= sigMax; sig++ {
		var old sigaction
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&old)), unsafe.Sizeof(old.mask), 0, 0)
		if errno != 0 {
			// EINVAL: a number the kernel does not take here (32, 33
			// under some C libraries' kernels); it is not ignored.
			continue
		}
		if old.handler == sigIgn {
			s.Ignored |= 1 << (sig - 1)
		}
	}
	if err := sigprocmask(sigBlock, nil, &s.Blocked); err != nil {
		return s, wrap("read the signal mask", err)
	}
	return s, nil
}

// Apply gives every signal in s.Ignored the SIG_IGN disposition and every
// other its default, and sets the calling thread's mask to s.Blocked: the
// state a program exec'd next by this thread starts with. Handlers are
// reset by execve anyway; this matters for ignored signals, which execve
// keeps, as it keeps the mask. Call it with the thread locked
// (runtime.LockOSThread), just before the exec.
func (s SignalState) Apply() error {
	for sig := 1; sig <= sigMax; sig++ {
		if sig == int(syscall.SIGKILL) || sig == int(syscall.SIGSTOP) {
			continue
		}
		act := sigaction{handler: sigDfl}
		if s.Ignored&(1<<(sig-1)) != 0 {
			act.handler = sigIgn
		}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
			uintptr(unsafe.Pointer(&act)), 0, unsafe.Sizeof(act.mask), 0, 0)
		if errno != 0 && errno != syscall.EINVAL {
			// EINVAL: a signal number the kernel does not accept here
			// (32 and 33 under some kernels); it cannot be ignored.
			return wrap("rt_sigaction "+strconv.Itoa(sig), errno)
		}
	}
	return sigprocmask(sigSetmask, &s.Blocked, nil)
}

// rt_sigprocmask(2)'s how, for the calling thread's mask.
const (
	sigBlock   = 0
	sigSetmask = 2
)

// sigprocmask is rt_sigprocmask(2) with the kernel's 64-bit signal set:
// set (nil: no change) applied with how, the old mask written to old
// (nil: not read).
func sigprocmask(how int, set, old *uint64) error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, uintptr(how),
		uintptr(unsafe.Pointer(set)), uintptr(unsafe.Pointer(old)), 8, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
