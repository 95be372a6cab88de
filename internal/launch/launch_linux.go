package launch

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

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
	if len(spec.Fds) == 0 && spec.Signals == (SignalState{}) {
		if path, ok := lookPath(spec.Argv[0], spec.Env); ok {
			if pid, err := forkExec(path, spec.Argv, attr); err == nil {
				return pid, nil
			}
		}
	}
	argv := append([]string{os.Args[0], helperArg, strconv.Itoa(len(spec.Fds)), spec.Signals.String()}, spec.Argv...)
	pid, err := forkExec("/proc/self/exe", argv, attr)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	return pid, nil
}

// forkExec starts path; when stdin is a terminal but not our controlling
// one, it starts it in the background group, as tini does.
func forkExec(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil && attr.Sys.Foreground && (errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EPERM)) {
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
		if v, found := strings.CutPrefix(kv, "PATH="); found && !ok {
			path, ok = v, true
		}
	}
	for _, p := range candidates(name, path) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Access(p, unix.X_OK) == nil {
			return p, true
		}
	}
	return "", false
}

// candidates are the paths execvp(3) tries for name, in order: name
// itself when it holds a slash, else name in each directory of path (an
// empty entry is the current directory).
func candidates(name, path string) []string {
	if strings.Contains(name, "/") {
		return []string{name}
	}
	dirs := strings.Split(path, ":")
	out := make([]string, len(dirs))
	for i, dir := range dirs {
		if dir == "" {
			dir = "."
		}
		out[i] = dir + "/" + name
	}
	return out
}

// CloseInherited marks every fd from 3 on close-on-exec, once at start:
// what tini-hot inherited from its parent never reaches the application,
// whether it is started through the trampoline or directly.
func CloseInherited() error { return closeOnExecFrom(ListenFdsStart) }

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// init runs the trampoline when argv[1] asks for it, and never returns
// then; otherwise it returns at once.
//
// It runs here rather than in main so that the trampoline, started once
// for every generation, does not pay for the initialisation of the
// libraries tini-hot links (protobuf descriptors, regular expressions,
// cgroup and process-metrics probes): the Go specification initialises a
// package as soon as everything it imports is, taking first the package
// whose import path sorts first, so this package, which imports only the
// standard library and golang.org/x/sys/unix, is initialised before them.
// Measured on 2 cores, median of 300 runs: the trampoline took 2.09 ms
// more than exec'ing the command directly when it ran from main, 1.58 ms
// from here; a Go program that only execs takes 1.04 ms. The e2e test
// TestTrampolineSkipsLibraries checks the order on the real binary.
func init() {
	if len(os.Args) < 5 || os.Args[1] != helperArg {
		return
	}
	nfiles, err := strconv.Atoi(os.Args[2])
	if err != nil || nfiles < 0 {
		fmt.Fprintf(os.Stderr, "tini-hot: %s: bad file count %q\n", helperArg, os.Args[2])
		os.Exit(126)
	}
	sigs, err := parseSignalState(os.Args[3])
	if err != nil {
		fmt.Fprintf(os.Stderr, "tini-hot: %s: %v\n", helperArg, err)
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
		fmt.Fprintf(os.Stderr, "tini-hot: exec %s: set signals: %v\n", argv[0], err)
		return 126
	}
	if err := closeOnExecFrom(ListenFdsStart + nfiles); err != nil {
		fmt.Fprintf(os.Stderr, "tini-hot: exec %s: %v\n", argv[0], err)
		return 126
	}
	if os.Getenv("LISTEN_FDS") != "" {
		_ = os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid())) // cannot fail for a valid key
	}
	err := execvp(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "tini-hot: exec %s: %v\n", argv[0], err)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
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
		err := unix.Exec(p, argv, env)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			// Not in this directory: try the next.
		case errors.Is(err, unix.EACCES):
			// Present but not executable here; a later entry may be.
			denied = err
		default:
			return err
		}
	}
	if denied != nil {
		return denied
	}
	return unix.ENOENT
}

// closeOnExecFrom marks every fd from first on close-on-exec: fds that
// tini-hot inherited from its own parent without the flag must not reach
// the application.
func closeOnExecFrom(first int) error {
	err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// ENOSYS or EINVAL: a kernel before 5.11; walk /proc/self/fd instead.
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close inherited fds: %w (close_range: %v)", rerr, err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			// The directory's own fd is already close-on-exec.
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
	return nil
}
