package launch

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// run starts spec with stdout on a pipe and returns what it printed and
// its wait status.
func run(t *testing.T, spec Spec) (string, unix.WaitStatus) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The child's stdout is fd 1 of this process: swap it for the pipe.
	saved, err := unix.Dup(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(w.Fd()), 1); err != nil {
		t.Fatal(err)
	}
	pid, startErr := Start(spec)
	_ = unix.Dup2(saved, 1)
	_ = unix.Close(saved)
	w.Close()
	if startErr != nil {
		t.Fatal(startErr)
	}
	out := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(out), "PID", strconv.Itoa(pid), -1), ws
}

// TestStartHandsFiles checks the socket-activation view of the child:
// LISTEN_PID is its own pid, the files are fds 3.. and nothing else leaks.
func TestStartHandsFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "fd3")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, ws := run(t, Spec{
		Argv: []string{"sh", "-c", `echo "pid=$$ listen_pid=$LISTEN_PID"; echo via-fd3 >&3; ls /proc/self/fd | sort -n | tr '\n' ' '`},
		Env:  []string{"PATH=/usr/bin:/bin", "LISTEN_FDS=1"},
		Fds:  []int{int(f.Fd())},
	})
	if ws.ExitStatus() != 0 {
		t.Fatalf("status %v, output %q", ws, out)
	}
	lines := strings.Split(out, "\n")
	if f := strings.Fields(lines[0]); len(f) != 2 || strings.TrimPrefix(f[0], "pid=") != strings.TrimPrefix(f[1], "listen_pid=") {
		t.Errorf("LISTEN_PID is not the child's pid: %q", lines[0])
	}
	// ls sees 0 1 2 3 and its own directory fd.
	if got := strings.Fields(lines[1]); len(got) != 5 || strings.Join(got[:4], " ") != "0 1 2 3" {
		t.Errorf("fds of the child: %v, want 0 1 2 3 and ls's own", got)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "via-fd3\n" {
		t.Errorf("fd 3 wrote %q to the file", b)
	}
}

// TestStartWithoutListenFDs leaves LISTEN_PID unset.
func TestStartWithoutListenFDs(t *testing.T) {
	out, _ := run(t, Spec{Argv: []string{"sh", "-c", `echo "[${LISTEN_PID-unset}]"`}, Env: []string{"PATH=/usr/bin:/bin"}})
	if out != "[unset]\n" {
		t.Errorf("output %q, want LISTEN_PID unset", out)
	}
}

// TestExecFailures maps exec errors to 127 and 126, like a shell.
func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	plain := dir + "/plain"
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		argv []string
		path string
		code int
	}{
		{[]string{"/nonexistent"}, "/bin", 127},
		{[]string{"nonexistent-command"}, "/bin:/usr/bin", 127},
		{[]string{plain}, "/bin", 126},
		{[]string{"plain"}, dir, 126},
		{[]string{"true"}, "/nonexistent:" + dir + ":/bin:/usr/bin", 0},
	}
	for _, c := range cases {
		_, ws := run(t, Spec{Argv: c.argv, Env: []string{"PATH=" + c.path}})
		if ws.ExitStatus() != c.code {
			t.Errorf("%v with PATH=%s: status %d, want %d", c.argv, c.path, ws.ExitStatus(), c.code)
		}
	}
}

func TestStartEmpty(t *testing.T) {
	if _, err := Start(Spec{}); err == nil {
		t.Fatal("Start with no command succeeded")
	}
}

// TestSignalState: the started command gets exactly the ignores and
// blocks of its Spec, whatever tini-hot itself ignores.
func TestSignalState(t *testing.T) {
	want := SignalState{
		Ignored: 1<<(unix.SIGTTOU-1) | 1<<(unix.SIGINT-1) | 1<<(unix.SIGPIPE-1),
		Blocked: 1<<(unix.SIGTTIN-1) | 1<<(unix.SIGUSR2-1),
	}
	out, ws := run(t, Spec{
		// No shell: dash empties the signal mask at start.
		Argv:    []string{"grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"},
		Env:     []string{"PATH=/usr/bin:/bin"},
		Signals: want,
	})
	if ws.ExitStatus() != 0 {
		t.Fatalf("status %v, output %q", ws, out)
	}
	for _, line := range []string{fmt.Sprintf("SigBlk:\t%016x", want.Blocked), fmt.Sprintf("SigIgn:\t%016x", want.Ignored)} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	out, _ = run(t, Spec{Argv: []string{"grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"}, Env: []string{"PATH=/usr/bin:/bin"}})
	if !strings.Contains(out, "SigBlk:\t0000000000000000") || !strings.Contains(out, "SigIgn:\t0000000000000000") {
		t.Errorf("zero SignalState: %q, want nothing ignored or blocked", out)
	}
}

func TestParseSignalState(t *testing.T) {
	s := SignalState{Ignored: 0x200002, Blocked: 1 << 63}
	if got, err := parseSignalState(s.String()); err != nil || got != s {
		t.Fatalf("round trip of %v: %v, %v", s, got, err)
	}
	for _, bad := range []string{"", "1", "x:1", "1:", ":", "1:2:3", "10000000000000000:0"} {
		if _, err := parseSignalState(bad); err == nil {
			t.Errorf("parseSignalState(%q) succeeded", bad)
		}
	}
}

// FuzzParseSignalState: any input gives an error or a state that prints
// back to itself.
func FuzzParseSignalState(f *testing.F) {
	f.Add("200002:100000")
	f.Add("ffffffffffffffff:0")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseSignalState(v)
		if err != nil {
			return
		}
		if back, err := parseSignalState(s.String()); err != nil || back != s {
			t.Fatalf("%q: %v does not read back: %v, %v", v, s, back, err)
		}
	})
}

// lookPath and the trampoline's execvp try the same candidates, and read
// the same PATH: the first one in the environment, as os.Getenv does.
func TestLookPath(t *testing.T) {
	if got := candidates("sh", ":/bin"); len(got) != 2 || got[0] != "./sh" || got[1] != "/bin/sh" {
		t.Fatalf("candidates = %q", got)
	}
	if got := candidates("/bin/sh", "/usr/bin"); len(got) != 1 || got[0] != "/bin/sh" {
		t.Fatalf("candidates with a slash = %q", got)
	}
	if p, ok := lookPath("sh", []string{"PATH=/bin", "PATH=/nonexistent"}); !ok || p != "/bin/sh" {
		t.Fatalf("lookPath = %q %v", p, ok)
	}
	if p, ok := lookPath("sh", []string{"PATH=/nonexistent", "PATH=/bin"}); ok {
		t.Fatalf("lookPath used the second PATH: %q", p)
	}
	if _, ok := lookPath("/etc", nil); ok {
		t.Fatal("a directory is not executable")
	}
}

// The numbers this package writes itself, since package syscall lacks
// them, are x/sys/unix's.
func TestSyscallNumbers(t *testing.T) {
	if sysCloseRange != unix.SYS_CLOSE_RANGE || closeRangeCloexec != unix.CLOSE_RANGE_CLOEXEC || xOK != unix.X_OK {
		t.Fatalf("close_range %d, CLOSE_RANGE_CLOEXEC %d, X_OK %d; x/sys/unix: %d, %d, %d",
			sysCloseRange, closeRangeCloexec, xOK, unix.SYS_CLOSE_RANGE, unix.CLOSE_RANGE_CLOEXEC, unix.X_OK)
	}
	if sigBlock != unix.SIG_BLOCK || sigSetmask != unix.SIG_SETMASK {
		t.Fatalf("SIG_BLOCK %d, SIG_SETMASK %d; x/sys/unix: %d, %d", sigBlock, sigSetmask, unix.SIG_BLOCK, unix.SIG_SETMASK)
	}
}
