package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"github.com/tini-hot/tini-hot/internal/syncbuf"
)

// initBin is an init under test.
type initBin struct {
	name string
	path string
}

// mode is how the init runs: as PID 1 of a new PID namespace, or as a
// subreaper below the test.
type mode struct {
	name string
	pid1 bool
}

var modes = []mode{{"pid1", true}, {"subreaper", false}}

// need fails the test under CI and skips it elsewhere: a missing
// prerequisite must never pass silently in CI.
func need(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite under CI: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// requireNamespaces checks what running as PID 1 takes.
func requireNamespaces(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		need(t, "root (PID namespaces)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		need(t, "unshare (util-linux)")
	}
}

// inits is tini-hot and, to check the tests themselves, Debian's tini.
func inits(t testing.TB) []initBin {
	t.Helper()
	out := []initBin{{"tini-hot", tiniHot}}
	if p, err := exec.LookPath("tini"); err == nil {
		out = append(out, initBin{"tini", p})
	} else {
		need(t, "tini (Debian package tini), the reference the tests are checked against")
	}
	return out
}

var helpersMu sync.Mutex

// helperCmd is the argv that runs the test binary as helper name; env
// goes into the process environment (it reaches the helper through the
// init).
func helperCmd(name string) []string {
	helpersMu.Lock()
	usedHelpers[name] = true
	helpersMu.Unlock()
	return []string{"env", helperEnv + "=" + name, os.Args[0]}
}

// proc is a running init.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	pid    int  // host pid of the init itself, once known
	pid1   bool // pid is unshare's, the init is its child
	stderr *syncbuf.Buffer
	done   chan struct{}
	code   int
	ended  time.Time
	// control is the control socket of a tini-hot.
	control string
}

// startInit runs bin with args in mode, with extra environment env.
func startInit(t testing.TB, bin initBin, m mode, env []string, args ...string) *proc {
	t.Helper()
	return startInitTo(t, nil, bin, m, env, args...)
}

// startInitTo is startInit with the init's stdout and stderr going to out,
// as they are, when out is not nil (p.stderr then stays empty).
func startInitTo(t testing.TB, out *os.File, bin initBin, m mode, env []string, args ...string) *proc {
	t.Helper()
	argv := append([]string{bin.path}, args...)
	if m.pid1 {
		requireNamespaces(t)
		argv = append([]string{"unshare", "-p", "-f", "--kill-child", "--mount-proc"}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Each tini-hot gets its own control socket (tini ignores the
	// variable).
	ctl := filepath.Join(t.TempDir(), "control.sock")
	cmd.Env = append(append(os.Environ(), "TINI_HOT_CONTROL="+ctl), env...)
	p := &proc{t: t, cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{}), control: ctl}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if out != nil {
		cmd.Stderr, cmd.Stdout = out, out
	}
	// Its own process group: signals meant for the init never hit the
	// test, and cleanup can kill whatever is left.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A leftover process holding the output pipe must not hang the test.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() {
		defer cancel()
		err := cmd.Wait()
		p.ended = time.Now()
		p.code = exitCode(err)
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s:\n%s", bin.name, p.stderr)
		}
		select {
		case <-p.done:
		default:
			// A failed test: kill everything the init started (the
			// application runs in process groups of its own), then it.
			for pid := range descendants(cmd.Process.Pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	p.pid = cmd.Process.Pid
	p.pid1 = m.pid1
	return p
}

// initPid is the host pid of the init: unshare's child in pid1 mode.
func (p *proc) initPid() int {
	p.t.Helper()
	if p.pid1 {
		p.pid = waitFor(p.t, "the namespace's PID 1", func() (int, bool) {
			kids := children(p.cmd.Process.Pid)
			if len(kids) == 1 {
				return kids[0], true
			}
			return 0, false
		})
		p.pid1 = false
	}
	return p.pid
}

// exitCode is the shell's view of a command's end: its exit code, 128+N
// for signal N, -1 when it could not be run or waited for.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		return -1
	}
}

// wait waits for the init to exit and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(3 * time.Minute):
		p.t.Fatalf("init did not exit; output:\n%s", p.stderr.String())
		return -1
	}
}

// signal sends sig to the init itself.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	pid := p.initPid()
	if err := syscall.Kill(pid, sig); err != nil {
		p.t.Fatalf("kill %d %v: %v", pid, sig, err)
	}
}

// waitServed waits until url answers with a body ending in want (such as
// "gen:2", the generation the demo reports), and returns the body.
func waitServed(t testing.TB, url, want string) string {
	t.Helper()
	return waitFor(t, want, func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil && strings.HasSuffix(body, want)
	})
}

// newCgroup creates a cgroup under the controller mounted at root, named
// after the test, and removes it at the end of the test, once empty.
func newCgroup(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprintf("tini-hot-e2e-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The processes are gone once the test's cleanups have run;
		// the kernel may take a moment to let the group go.
		_, ok := poll(10*time.Second, func() (error, bool) {
			err := os.Remove(dir)
			return err, err == nil || os.IsNotExist(err)
		})
		if !ok {
			t.Errorf("cgroup %s not removed", dir)
		}
	})
	return dir
}

// waitFor polls cond every 10 ms for up to 20 s.
func waitFor[T any](t testing.TB, what string, cond func() (T, bool)) T {
	t.Helper()
	return waitForWithin(t, 20*time.Second, what, cond)
}

// waitForWithin polls cond every 10 ms for up to d.
func waitForWithin[T any](t testing.TB, d time.Duration, what string, cond func() (T, bool)) T {
	t.Helper()
	v, ok := poll(d, cond)
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
	return v
}

// waitForOK polls cond every 10 ms for up to 20 s and reports whether it
// held, for callers that explain a failure themselves.
func waitForOK[T any](cond func() (T, bool)) (T, bool) {
	return poll(20*time.Second, cond)
}

func poll[T any](d time.Duration, cond func() (T, bool)) (T, bool) {
	deadline := time.Now().Add(d)
	for {
		v, ok := cond()
		if ok || time.Now().After(deadline) {
			return v, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procTable maps every process to its parent, read from /proc.
func procTable() map[int]procfs.ProcStat {
	all, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	out := make(map[int]procfs.ProcStat, len(all))
	for _, p := range all {
		if st, err := p.Stat(); err == nil {
			out[p.PID] = st
		}
	}
	return out
}

// cpuSeconds is the CPU time of process pid so far, user and system.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	p, err := procfs.NewProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.CPUTime()
}

// children lists the direct children of pid.
func children(pid int) []int {
	var out []int
	for p, st := range procTable() {
		if st.PPID == pid {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists every process below root with its state.
func descendants(root int) map[int]string {
	table := procTable()
	out := map[int]string{}
	for changed := true; changed; {
		changed = false
		for p, st := range table {
			if _, seen := out[p]; seen {
				continue
			}
			if _, parentIn := out[st.PPID]; st.PPID == root || parentIn {
				out[p] = st.State
				changed = true
			}
		}
	}
	return out
}

// running counts the processes below root whose command line is argv.
func running(root int, argv ...string) int {
	want := strings.Join(argv, "\x00") + "\x00"
	n := 0
	for pid := range descendants(root) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && string(b) == want {
			n++
		}
	}
	return n
}

// readFile returns the content of path, or "" if it does not exist yet.
func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// waitLine waits up to 20 s until the file at path has a line equal to
// line.
func waitLine(t testing.TB, path, line string) {
	t.Helper()
	waitLineWithin(t, path, line, 20*time.Second)
}

// waitLineWithin waits up to d until the file at path has a line equal to
// line.
func waitLineWithin(t testing.TB, path, line string, d time.Duration) {
	t.Helper()
	waitForWithin(t, d, "line "+line+" in "+path, func() (struct{}, bool) {
		for _, l := range strings.Split(readFile(path), "\n") {
			if l == line {
				return struct{}{}, true
			}
		}
		return struct{}{}, false
	})
}
