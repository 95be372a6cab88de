package launch

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// This package imports the standard library's syscall, not
// golang.org/x/sys/unix, and neither fmt nor strings: the trampoline runs
// from its initialiser, and what it imports must be initialised early (see
// init).

// helperArg, as argv[1], makes tini-hot run as the trampoline. It cannot be
// mistaken for a flag or a subcommand a person would type.
const helperArg = "__tini-hot-exec"

// ListenFdsStart is SD_LISTEN_FDS_START: the fd number of the first of
// [Spec.Fds] in the started process.
const ListenFdsStart = 3

// defaultPath is used to find the command when the environment has no
// PATH, as execvp(3) does.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec is a process to start.
type Spec struct {
	// Argv is the command and its arguments; Argv[0] is looked up in the
	// PATH of Env when it has no slash.
	Argv []string
	// Env is the complete environment of the command.
	Env []string
	// Fds become the command's fds 3, 4, ... in this order. Every other
	// fd of tini-hot is close-on-exec and does not reach the command. The
	// caller keeps them open until Start returns.
	Fds []int
	// Foreground makes the process group the terminal's foreground group
	// when stdin is a terminal.
	Foreground bool
	// Signals is the signal state the command starts with: the ignores
	// and blocks tini-hot inherited (see [CaptureSignals]); every other
	// signal has its default disposition and is unblocked.
	Signals SignalState
}

// Start forks the trampoline for spec and returns its pid, which stays the
// command's pid after the exec. The process gets its own process group;
// with Foreground and a terminal on stdin, that group becomes the
// terminal's foreground group (so Ctrl-C of docker run -it reaches the
// application).
//
// The caller reaps the process: Start never waits for it.
func Start(spec Spec) (int, error) {
	if len(spec.Argv) == 0 {
		return 0, errors.New("start: empty command")
	}
	fds := []uintptr{0, 1, 2}
	for _, fd := range spec.Fds {
		fds = append(fds, uintptr(fd))
	}
	attr := &syscall.ProcAttr{
		Env:   spec.Env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	if spec.Foreground && isTerminal(0) {
		attr.Sys.Foreground = true
		attr.Sys.Ctty = 0
	}
	// With no socket to hand over (no LISTEN_PID to set) and no signal
	// state to restore, the trampoline has nothing to do: exec the
	// command directly, one Go start-up fewer. The child gets every
	// signal at its default and none blocked, as the trampoline would
	// give it, and no fd beyond 0-2 (see CloseInherited). A command not
	// found or not executable goes through the trampoline, which reports
	// it with the shell's statuses, 127 and 126.
	if len(spec.Fds) == 0 && spec.Signals == (SignalState{}) && inherited.Ignored == 0 {
		if path, ok := lookPath(spec.Argv[0], spec.Env); ok {
			if pid, err := forkExec(path, spec.Argv, attr); err == nil {
				return pid, nil
			}
		}
	}
	argv := append([]string{os.Args[0], helperArg, strconv.Itoa(len(spec.Fds)), spec.Signals.String()}, spec.Argv...)
	pid, err := forkExec("/proc/self/exe", argv, attr)
	if err != nil {
		return 0, wrap("start "+spec.Argv[0], err)
	}
	return pid, nil
}

// forkExec starts path; when stdin is a terminal but not our controlling
// one, it starts it in the background group, as tini does.
func forkExec(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil && attr.Sys.Foreground && (errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.EPERM)) {
		fg := *attr.Sys
		fg.Foreground = false
		a := *attr
		a.Sys = &fg
		pid, err = syscall.ForkExec(path, argv, &a)
	}
	return pid, err
}

// lookPath finds name as execvp(3) would in the PATH of env: the first
// executable regular file among its candidates.
func lookPath(name string, env []string) (string, bool) {
	path, ok := defaultPath, false
	for _, kv := range env {
		// The first PATH counts, as for the trampoline's own lookup.
		if k, v, found := cut(kv, '='); found && k == "PATH" && !ok {
			path, ok = v, true
		}
	}
	for _, p := range candidates(name, path) {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && syscall.Access(p, xOK) == nil {
			return p, true
		}
	}
	return "", false
}

// candidates are the paths execvp(3) tries for name, in order: name
// itself when it holds a slash, else name in each directory of path (an
// empty entry is the current directory).
func candidates(name, path string) []string {
	if _, _, slash := cut(name, '/'); slash {
		return []string{name}
	}
	var out []string
	for more := true; more; {
		var dir string
		dir, path, more = cut(path, ':')
		if dir == "" {
			dir = "."
		}
		out = append(out, dir+"/"+name)
	}
	return out
}

// CloseInherited marks every fd from 3 on close-on-exec, once at start:
// what tini-hot inherited from its parent never reaches the application,
// whether it is started through the trampoline or directly.
func CloseInherited() error { return closeOnExecFrom(ListenFdsStart) }

// PassForeground makes process group to the foreground group of the
// terminal on stdin, when that is process group from: the serving
// generation's group takes it over from the one before, so that ^C of
// `docker run -it` reaches the application after an upgrade too. It does
// nothing when stdin is not a terminal, or someone else's group has the
// foreground (the application gave it to a job of its own). The caller
// is in the background (tini-hot's own group never has the foreground),
// where the kernel answers TIOCSPGRP with SIGTTOU unless the thread
// blocks it: it is blocked meanwhile, on this thread only.
func PassForeground(from, to int) (bool, error) {
	if !isTerminal(0) {
		return false, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ttou := uint64(1) << (syscall.SIGTTOU - 1)
	var old uint64
	if err := sigprocmask(sigBlock, &ttou, &old); err != nil {
		return false, wrap("block SIGTTOU", err)
	}
	defer func() { _ = sigprocmask(sigSetmask, &old, nil) }()
	var fg int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg))); errno != 0 {
		// ENOTTY: stdin is a terminal but not tini-hot's controlling
		// one (started in the background of a shell).
		return false, wrap("read the terminal's foreground group", errno)
	}
	if int(fg) != from {
		return false, nil
	}
	pg := int32(to)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&pg))); errno != 0 {
		// ESRCH or EPERM: that group is gone, or of another session.
		return false, wrap("give the terminal to process group "+strconv.Itoa(to), errno)
	}
	return true, nil
}

func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// init runs the trampoline when argv[1] asks for it, and never returns
// then; otherwise it returns at once.
//
// It runs here rather than in main so that the trampoline, started once
// for every generation, does not pay for the initialisation of the
// libraries tini-hot links (protobuf descriptors, regular expressions,
// cgroup and process-metrics probes): the Go specification initialises a
// package as soon as everything it imports is, taking first the package
// whose import path sorts first, so this package, which imports only
// packages of the standard library that are initialised early (os,
// syscall, strconv), is initialised before them. That is why it uses
// syscall rather than golang.org/x/sys/unix, and neither fmt nor strings:
// they are initialised once every package that sorts before them and could
// be is, among them x/sys/unix behind most of what tini-hot links, and
// strings behind crypto, encoding/json and flag.
// Measured on 2 cores, medians of 300 interleaved runs, the trampoline
// took more than exec'ing the command directly: 2.09 ms when it ran from
// main; from here, 1.58 ms with x/sys/unix, fmt and strings imported, and
// 0.4 ms less without them (1.78 against 2.24 ms, and 1.59 against 2.00 ms,
// in two series where a Go program that does nothing but exec took 1.40
// and 1.20 ms). The e2e test TestTrampolineSkipsLibraries checks the order
// on the real binary.
func init() {
	if len(os.Args) < 5 || os.Args[1] != helperArg {
		inherited, inheritedErr = readSignals()
		return
	}
	nfiles, err := strconv.Atoi(os.Args[2])
	if err != nil || nfiles < 0 {
		os.Stderr.WriteString("tini-hot: " + helperArg + ": bad file count " + strconv.Quote(os.Args[2]) + "\n")
		os.Exit(126)
	}
	sigs, err := parseSignalState(os.Args[3])
	if err != nil {
		os.Stderr.WriteString("tini-hot: " + helperArg + ": " + err.Error() + "\n")
		os.Exit(126)
	}
	os.Exit(execCommand(nfiles, sigs, os.Args[4:]))
}

// execCommand replaces the process with argv, which keeps fds 0-2 and the
// len(Fds) fds after them, and returns an exit status only when that fails.
func execCommand(nfiles int, sigs SignalState, argv []string) int {
	// The signal mask and the exec belong to one thread.
	runtime.LockOSThread()
	if err := sigs.Apply(); err != nil {
		os.Stderr.WriteString("tini-hot: exec " + argv[0] + ": set signals: " + err.Error() + "\n")
		return 126
	}
	if err := closeOnExecFrom(ListenFdsStart + nfiles); err != nil {
		os.Stderr.WriteString("tini-hot: exec " + argv[0] + ": " + err.Error() + "\n")
		return 126
	}
	if os.Getenv("LISTEN_FDS") != "" {
		_ = os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid())) // cannot fail for a valid key
	}
	err := execvp(argv[0], argv, os.Environ())
	os.Stderr.WriteString("tini-hot: exec " + argv[0] + ": " + err.Error() + "\n")
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return 127
	}
	return 126
}

// execvp is execvp(3) without the /bin/sh fallback: the first PATH entry
// that execs wins; EACCES from an entry is reported only if no later entry
// exists.
func execvp(name string, argv, env []string) error {
	path, ok := os.LookupEnv("PATH")
	if !ok {
		path = defaultPath
	}
	var denied error
	for _, p := range candidates(name, path) {
		err := syscall.Exec(p, argv, env)
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
			// Not in this directory: try the next.
		case errors.Is(err, syscall.EACCES):
			// Present but not executable here; a later entry may be.
			denied = err
		default:
			return err
		}
	}
	if denied != nil {
		return denied
	}
	return syscall.ENOENT
}

// closeOnExecFrom marks every fd from first on close-on-exec: fds that
// tini-hot inherited from its own parent without the flag must not reach
// the application.
func closeOnExecFrom(first int) error {
	_, _, errno := syscall.Syscall(sysCloseRange, uintptr(first), ^uintptr(0), closeRangeCloexec)
	if errno == 0 {
		return nil
	}
	// ENOSYS or EINVAL: a kernel before 5.11; walk /proc/self/fd instead.
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return wrap("close inherited fds (close_range: "+errno.Error()+")", rerr)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			// The directory's own fd is already close-on-exec.
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, syscall.FD_CLOEXEC)
		}
	}
	return nil
}

// Not in package syscall, which predates them: close_range(2) has the
// same number on every architecture (asm-generic and x86), and
// CLOSE_RANGE_CLOEXEC is 1<<2. X_OK is access(2)'s execute bit.
const (
	sysCloseRange     = 436
	closeRangeCloexec = 1 << 2
	xOK               = 1
)

// prefixed is an error with what failed in front, as fmt.Errorf("%s: %w")
// would make it.
type prefixed struct {
	prefix string
	err    error
}

func wrap(prefix string, err error) error { return &prefixed{prefix, err} }

func (e *prefixed) Error() string { return e.prefix + ": " + e.err.Error() }
func (e *prefixed) Unwrap() error { return e.err }

// cut is strings.Cut with a one-byte separator; strings is initialised
// late (see init).
func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
