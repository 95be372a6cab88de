package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/control"
	"github.com/tini-hot/tini-hot/hotapp"
	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/procs"
	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/sys/unix"
)

// The attacks of issue 8, each run against the built binary: a client
// that goes away, a reused pid, requests that could wedge the control
// socket, an upgrade racing the end, a late exit, an older generation cut
// short, and the signal state the application inherits. Each of these
// tests fails against d80ca1d (TINI_HOT_E2E_BINARY=/path/to/old/tini-hot).

// th is tini-hot (its path is known once TestMain has built it).
func th() initBin { return initBin{"tini-hot", tiniHot} }

// waitGen waits until generation n is in state and returns its status.
func (p *proc) waitGen(n int, state string) upgrade.GenerationStatus {
	p.t.Helper()
	return waitFor(p.t, fmt.Sprintf("generation %d %s", n, state), func() (upgrade.GenerationStatus, bool) {
		g, ok := generation(p.status(), n)
		return g, ok && g.State == state
	})
}

// waitSignals waits until tini-hot forwards every forwardable signal.
func (p *proc) waitSignals() {
	p.t.Helper()
	waitFor(p.t, "every signal forwarded", func() (string, bool) {
		st := p.status()
		return st.Signals, st.Signals == upgrade.SignalsAll
	})
}

// reloadWithin runs `tini-hot reload args...` and fails the test if it
// has not returned within d: a reload that hangs is a defect.
func (p *proc) reloadWithin(d time.Duration, args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, tiniHot, append([]string{"reload", "--control", p.control}, args...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		p.t.Fatalf("tini-hot reload %v: no answer within %v", args, d)
	}
	return strings.TrimSpace(string(out)), exitCode(err)
}

// trapUSR1 is an application that dies of any signal it does not trap
// (SIGPIPE included) and records SIGUSR1 in $OUT.
const trapUSR1 = `trap 'echo "usr1 $TINI_HOT_GENERATION" >> "$OUT"' USR1; while :; do sleep 0.05; done`

// TestClientGoneKeepsApp (item 1): a reload client that gives up, by
// --timeout or Ctrl-C, or a kill -PIPE of tini-hot, never makes a signal
// reach the application, which here dies of SIGPIPE.
func TestClientGoneKeepsApp(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			// A readiness delay far longer than the client's patience.
			p := startInit(t, th(), m, []string{"OUT=" + out}, "--ready", "delay:2s", "--", "sh", "-c", trapUSR1)
			p.waitGen(1, "serving")
			msg, code := p.reloadWithin(time.Minute, "--timeout", "300ms")
			p.waitGen(2, "serving")
			if code != 1 || msg != "tini-hot reload: no answer within 300ms: generation 2 is starting; the reload goes on (see tini-hot status)" {
				t.Errorf("reload --timeout 300ms: %d %q", code, msg)
			}
			// Ctrl-C in `kubectl exec … tini-hot reload`.
			client := exec.Command(tiniHot, "reload", "--control", p.control)
			if err := client.Start(); err != nil {
				t.Fatal(err)
			}
			p.waitGen(3, "starting")
			_ = client.Process.Signal(syscall.SIGINT)
			_ = client.Wait()
			p.waitGen(3, "serving")
			p.signal(syscall.SIGPIPE)
			p.signal(syscall.SIGUSR1) // forwarded after SIGPIPE was dealt with
			waitLine(t, out, "usr1 3")
			for n, want := range map[int]string{1: "killed by signal 15 (terminated)", 2: "killed by signal 15 (terminated)"} {
				if g := p.waitGen(n, "exited"); g.Exit != want {
					t.Errorf("generation %d: %q, want %q", n, g.Exit, want)
				}
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 143 {
				t.Errorf("exit status %d, want 143 (generation 3 drained by SIGTERM)", code)
			}
		})
	}
}

// TestPidReuse (item 2): a generation that gets the pid of an older one,
// which ended while draining, is not killed at the older one's drain
// deadline, and its exit is its own.
func TestPidReuse(t *testing.T) {
	requireNamespaces(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		need(t, "nsenter (util-linux)")
	}
	// The pid can only be handed on while it is free: a thread that
	// tini-hot's Go runtime starts at the wrong moment may take it for
	// good. That attempt proves nothing either way; start again.
	const attempts = 3
	for i := 1; ; i++ {
		taken := pidReuse(t)
		if taken == 0 {
			return
		}
		if i == attempts {
			t.Fatalf("in %d attempts, a thread of tini-hot took generation 1's pid (%d the last time) before a generation could", attempts, taken)
		}
		t.Logf("attempt %d: a thread of tini-hot took generation 1's pid %d; starting again", i, taken)
	}
}

// pidReuse is one attempt of TestPidReuse. It returns 0 when the checks
// ran (and passed), or generation 1's pid when a thread of tini-hot took
// it before any generation could.
func pidReuse(t *testing.T) int {
	t.Helper()
	// Generation 2 ignores the drain signal and is killed at its deadline:
	// that kill is the event that tells generation 1's deadline has passed.
	script := `[ "$TINI_HOT_GENERATION" = 2 ] && trap "" TERM; exec sleep 1000`
	// An attempt given up leaves its tini-hot to the test's cleanup.
	p := startInit(t, th(), mode{"pid1", true}, nil, "--ready", "delay:100ms", "--drain-timeout", "5s", "--", "sh", "-c", script)
	old := p.waitGen(1, "serving").Pid
	if out, code := p.reloadWithin(time.Minute); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	deadline1 := time.Now().Add(5 * time.Second)
	p.waitGen(1, "exited")
	init := p.initPid()
	host := strconv.Itoa(init)
	if !threadHas(t, init, 1) {
		t.Fatal("threadHas does not see tini-hot's own pid 1")
	}
	// Make the next pid of the namespace generation 1's old one; the Go
	// runtime's threads take pids too, so check and try again.
	n := 3
	for ; ; n++ {
		set := fmt.Sprintf("echo %d > /proc/sys/kernel/ns_last_pid", old-1)
		if out, err := exec.Command("nsenter", "-t", host, "-p", "-m", "sh", "-c", set).CombinedOutput(); err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if out, code := p.reloadWithin(time.Minute); code != 0 {
			t.Fatalf("reload: %d %s", code, out)
		}
		if g := p.waitGen(n, "serving"); g.Pid == old {
			break
		}
		if threadHas(t, init, old) {
			return old
		}
		if time.Now().After(deadline1.Add(-time.Second)) {
			t.Fatalf("no generation got pid %d before generation 1's drain deadline", old)
		}
	}
	t.Logf("generation %d has generation 1's pid %d", n, old)
	if g := p.waitGen(2, "exited"); g.Exit != "killed by signal 9 (killed)" {
		t.Fatalf("generation 2: %+v", g)
	}
	if time.Now().Before(deadline1) {
		t.Fatal("generation 2 was killed before generation 1's deadline")
	}
	st := p.status()
	if g, _ := generation(st, n); g.State != "serving" || g.Exit != "" {
		t.Fatalf("generation %d after generation 1's deadline: %+v", n, g)
	}
	if g, _ := generation(st, 1); g.Exit != "killed by signal 15 (terminated)" {
		t.Errorf("generation 1: %+v", g)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Errorf("exit status %d, want 143", code)
	}
	return 0
}

// threadHas reports whether a thread of process pid (a host pid) has
// nsPid in its own PID namespace.
func threadHas(t *testing.T, pid, nsPid int) bool {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		for _, line := range strings.Split(readFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name())), "\n") {
			// NSpid: the pid in each namespace from ours down to its own.
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(nsPid) {
				return true
			}
		}
	}
	return false
}

// checkScript writes an exec readiness check that passes for generation
// 1 only.
func checkScript(t *testing.T) string {
	t.Helper()
	check := filepath.Join(t.TempDir(), "check")
	if err := os.WriteFile(check, []byte("#!/bin/sh\n[ \"$TINI_HOT_GENERATION\" = 1 ]\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return check
}

// TestReloadWhileFirstNeverReady (item 3): a reload while generation 1
// starts and never becomes ready is answered: it waits for generation 1's
// ready timeout, then starts a generation that fails the same way.
func TestReloadWhileFirstNeverReady(t *testing.T) {
	p := startInit(t, th(), mode{"subreaper", false}, nil, "--ready", "notify", "--ready-timeout", "2s", "--", "sleep", "1000")
	p.waitGen(1, "starting")
	out, code := p.reloadWithin(time.Minute)
	if code != 1 || out != "tini-hot reload: generation 2 not ready after 2s" {
		t.Fatalf("reload: %d %q", code, out)
	}
	if g, _ := generation(p.status(), 1); g.State != "starting" || g.Reason != "generation 1 not ready after 2s" {
		t.Errorf("generation 1: %+v", g)
	}
}

// TestControlSocketNotWedged (item 3): a hundred reloads abandoned by
// their clients during a long upgrade, then 300 idle connections, leave
// every probe answered.
func TestControlSocketNotWedged(t *testing.T) {
	p := startInit(t, th(), mode{"subreaper", false}, nil, "--ready", "exec:"+checkScript(t), "--", "sleep", "1000")
	p.waitGen(1, "serving")
	for i := range 100 {
		if out, code := p.reloadWithin(time.Minute, "--timeout", "20ms"); code != 1 {
			t.Fatalf("abandoned reload %d: %d %q", i, code, out)
		}
	}
	probes := func(when string) {
		for _, args := range [][]string{nil, {"--liveness"}} {
			if out, code, _ := p.probe(args...); code != 0 {
				t.Fatalf("probe %v %s: %d %q", args, when, code, out)
			}
		}
	}
	probes("after 100 abandoned reloads")
	// Each is dropped once the server has seen its client go.
	waitFor(t, "the abandoned reloads to be dropped", func() (string, bool) {
		q := p.status().Queued
		return "", q != nil && q.Waiters == 0
	})
	for range 300 {
		c, err := net.Dial("unix", p.control)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	probes("with 300 idle connections")
}

// TestNoUpgradeAfterServingExit (item 5): when the serving generation
// exits while another starts and a reload is queued, nothing more is
// started, even when the starting one's readiness delay passes during the
// cleanup (it ignores SIGTERM, and the kill timeout is longer than the
// delay): the container ends with the serving generation's status.
func TestNoUpgradeAfterServingExit(t *testing.T) {
	dir := t.TempDir()
	out, stop := filepath.Join(dir, "out"), filepath.Join(dir, "stop")
	script := `echo "started $TINI_HOT_GENERATION" >> "$OUT"
if [ "$TINI_HOT_GENERATION" = 1 ]; then while [ ! -e "$STOP" ]; do sleep 0.05; done; exit 3; fi
trap "" TERM; while :; do sleep 0.05; done`
	p := startInit(t, th(), mode{"pid1", true}, []string{"OUT=" + out, "STOP=" + stop},
		"--ready", "delay:3s", "--kill-timeout", "5s", "--", "sh", "-c", script)
	p.waitGen(1, "serving")
	reload := make(chan string, 1)
	go func() { out, code := p.reload(); reload <- fmt.Sprintf("%d %s", code, out) }()
	waitLine(t, out, "started 2")
	p.signal(syscall.SIGHUP)
	waitFor(t, "the SIGHUP to be queued", func() (string, bool) { return "", p.status().Reloads.Requested == 2 })
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 3 {
		t.Errorf("exit status %d, want generation 1's 3", code)
	}
	if got := <-reload; !strings.HasPrefix(got, "1 ") {
		t.Errorf("reload of an abandoned upgrade: %s", got)
	}
	if strings.Contains(readFile(out), "started 3") {
		t.Errorf("a generation started after the serving one exited:\n%s", readFile(out))
	}
}

// TestExitWithOpenControlConnections (item 6): open control connections
// do not hold tini-hot past the grace period.
func TestExitWithOpenControlConnections(t *testing.T) {
	p := startInit(t, th(), mode{"pid1", true}, nil, "--ready", "delay:100ms", "--grace-period", "3s", "--", "sleep", "1000")
	p.waitGen(1, "serving")
	for range 5 {
		c, err := net.Dial("unix", p.control)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	term := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Errorf("exit status %d, want 143", code)
	}
	if took := p.ended.Sub(term); took >= 3*time.Second {
		t.Errorf("tini-hot exited %v after SIGTERM with idle control connections; the grace period is 3s", took)
	}
}

// TestOlderGenerationKeepsDrainDeadline (item 8): when the serving
// generation dies while the old one still drains a request, that request
// is answered; the container then ends with the serving generation's
// status.
func TestOlderGenerationKeepsDrainDeadline(t *testing.T) {
	p, url := startDemo(t, mode{"subreaper", false}, "--drain-timeout", "20s", "--kill-timeout", "1s")
	slow, started := slowRequest(t, url, 3, p.stderr.String)
	if !strings.Contains(started, "generation 1:") {
		t.Fatalf("slow request taken by: %q", started)
	}
	if out, code := p.reloadWithin(time.Minute); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	g2 := p.waitGen(2, "serving")
	if err := syscall.Kill(g2.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; !strings.HasSuffix(got, "gen:1") {
		t.Errorf("request draining in generation 1: %q, want its answer", got)
	}
	if code := p.wait(); code != 137 {
		t.Errorf("exit status %d, want generation 2's 137", code)
	}
}

func init() { registerHelper("sigparent", helperSigparent) }

// Signals the sigparent helper ignores and blocks, as tini's own
// sigconf-test does.
var (
	parentIgnores = []unix.Signal{unix.SIGTTOU, unix.SIGSEGV, unix.SIGINT}
	parentBlocks  = []unix.Signal{unix.SIGTTIN, unix.SIGILL, unix.SIGTERM}
)

// sigparentEnv makes the sigparent helper ignore and block the signals of
// tini's sigconf-test; without it, it starts its command with none.
const sigparentEnv = "SIGPARENT_TINI_CONF=1"

// helperSigparent sets the whole signal state, whatever the test itself
// inherited (a nohup, say): every signal at its default and none blocked,
// then, with sigparentEnv, the ignores and blocks of tini's sigconf-test.
// Then it execs its arguments.
func helperSigparent() int {
	runtime.LockOSThread()
	var state launch.SignalState // nothing ignored, nothing blocked
	if os.Getenv(strings.Split(sigparentEnv, "=")[0]) != "" {
		state = launch.SignalState{Ignored: mask(parentIgnores...), Blocked: mask(parentBlocks...)}
	}
	if err := state.Apply(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") && kv != sigparentEnv {
			env = append(env, kv)
		}
	}
	err = unix.Exec(path, os.Args[1:], env)
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 2
}

// startClean starts bin with args in mode m from the sigparent helper:
// with tiniConf, under the signal state of tini's sigconf-test, otherwise
// with nothing ignored or blocked.
func startClean(t *testing.T, bin initBin, m mode, tiniConf bool, args ...string) *proc {
	t.Helper()
	argv := append([]string{bin.path}, args...)
	if m.pid1 {
		requireNamespaces(t)
		argv = append([]string{"unshare", "-p", "-f", "--kill-child", "--mount-proc"}, argv...)
	}
	var env []string
	if tiniConf {
		env = []string{sigparentEnv}
	}
	helper := helperCmd("sigparent")
	return startInit(t, initBin{"sigparent", helper[0]}, mode{name: "plain"}, env, append(helper[1:], argv...)...)
}

// mask is the SigIgn/SigBlk bits of sigs.
func mask(sigs ...unix.Signal) uint64 {
	var m uint64
	for _, s := range sigs {
		m |= 1 << (uint(s) - 1)
	}
	return m
}

// TestInheritedSignalState (item 9): the application gets the signal
// ignores and blocks its init was started with. tini keeps all six of
// tini's own test; tini-hot keeps what the Go runtime leaves knowable
// (SIGTTOU and SIGINT ignored, SIGTTIN blocked) and adds nothing, with and
// without sockets to hand over.
func TestInheritedSignalState(t *testing.T) {
	cases := []struct {
		name     string
		bin      initBin
		flags    []string
		ign, blk uint64
		clean    bool // the parent ignores and blocks nothing
	}{
		{"tini", initBin{"tini", ""}, nil, mask(parentIgnores...), mask(parentBlocks...), false},
		{"tini-hot", th(), nil, mask(unix.SIGTTOU, unix.SIGINT), mask(unix.SIGTTIN), false},
		{"tini-hot-listen", th(), []string{"-l", "tcp://127.0.0.1:0"}, mask(unix.SIGTTOU, unix.SIGINT), mask(unix.SIGTTIN), false},
		// Started without the trampoline: still nothing ignored, SIGPIPE
		// (which tini-hot drops) included, and nothing blocked.
		{"tini-hot-clean", th(), nil, 0, 0, true},
	}
	for _, c := range cases {
		if c.bin.name == "tini" {
			path, err := exec.LookPath("tini")
			if err != nil {
				need(t, "tini (Debian package tini)")
			}
			c.bin.path = path
		}
		for _, m := range modes {
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				p := startClean(t, c.bin, m, !c.clean, initArgs(m, append(c.flags, "--", "cat", "/proc/self/status")...)...)
				if code := p.wait(); code != 0 {
					t.Fatalf("exit status %d:\n%s", code, p.stderr)
				}
				out := p.stderr.String()
				for _, want := range []string{fmt.Sprintf("SigIgn:\t%016x", c.ign), fmt.Sprintf("SigBlk:\t%016x", c.blk)} {
					if !strings.Contains(out, want+"\n") {
						t.Errorf("the application's status lacks %q:\n%s", want, grepSig(out))
					}
				}
			})
		}
	}
}

// grepSig keeps the Sig lines of a /proc/PID/status.
func grepSig(status string) string {
	var out []string
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "Sig") || strings.HasPrefix(l, "Cpus_allowed") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOwnProcessGroup: the application leads a process group of its own,
// and with nothing inherited it starts with no signal ignored or blocked,
// whatever tini-hot itself ignores (SIGPIPE) or handles; and on the CPUs
// tini-hot was given, though tini-hot runs on one CPU while it subscribes
// to signals (affinity.Pin).
func TestOwnProcessGroup(t *testing.T) {
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, cpus, _ := strings.Cut(string(own), "Cpus_allowed_list:")
	cpus, _, _ = strings.Cut(cpus, "\n")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			p := startClean(t, th(), m, false, "--", "sh", "-c", `echo group $$ $(ps -o pgid= -p $$); exec cat /proc/self/status`)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit status %d; output:\n%s", code, p.stderr)
			}
			out := p.stderr.String()
			for _, want := range []string{"SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000", "Cpus_allowed_list:" + cpus + "\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, grepSig(out))
				}
			}
			f := strings.Fields(strings.SplitN(out, "\n", 2)[0])
			if len(f) != 3 || f[0] != "group" || f[1] != f[2] {
				t.Errorf("first line %q: want the application leading its own group", f)
			}
		})
	}
}

// TestInheritedFdsNotPassed: an fd tini-hot inherited without
// close-on-exec does not reach the application, started directly or
// through the trampoline (with -l, whose socket is its fd 3).
func TestInheritedFdsNotPassed(t *testing.T) {
	for _, flags := range [][]string{nil, {"-l", "tcp://127.0.0.1:0"}} {
		leak, err := os.Open("/dev/null")
		if err != nil {
			t.Fatal(err)
		}
		defer leak.Close()
		// The shell tests each fd from 3 up without opening anything
		// itself (a pipe or a directory listing would show its own fds).
		cmd := exec.Command(tiniHot, append(flags, "--", "sh", "-c", `i=3; while [ $i -lt 300 ]; do [ -e /proc/$$/fd/$i ] && printf '%s ' $i; i=$((i+1)); done; true`)...)
		cmd.ExtraFiles = []*os.File{leak, leak, leak} // fds 3, 4, 5 in tini-hot
		cmd.Env = append(os.Environ(), "TINI_HOT_CONTROL="+filepath.Join(t.TempDir(), "c.sock"))
		out, err := cmd.Output()
		want := ""
		if len(flags) > 0 {
			want = "3 " // the listener
		}
		if err != nil || string(out) != want {
			t.Errorf("%v: the application's fds: %q (%v), want %q", flags, out, err, want)
		}
	}
}

// TestPdeathSignal: with -p, tini-hot gets the signal when its parent
// dies, and passes it on as any other (here SIGTERM: the application is
// stopped and tini-hot exits). The parent-death signal belongs to the
// thread that set it, so this holds only if that thread lives on.
func TestPdeathSignal(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	parent := exec.Command("sh", "-c", `"$0" --control "$1/control.sock" -p SIGTERM -- sleep 1000 & echo $! > "$1/pid"; wait`, tiniHot, dir)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	pid := waitFor(t, "tini-hot and its application", func() (int, bool) {
		pid, err := strconv.Atoi(strings.TrimSpace(readFile(pidFile)))
		return pid, err == nil && len(children(pid)) == 1
	})
	app := children(pid)[0]
	t.Cleanup(func() { _ = syscall.Kill(app, syscall.SIGKILL); _ = syscall.Kill(pid, syscall.SIGKILL) })
	// Work on the supervisor's side first (status over the control
	// socket), so that its goroutines have run on the runtime's threads.
	for range 5 {
		if out, err := exec.Command(tiniHot, "status", "--control", filepath.Join(dir, "control.sock")).CombinedOutput(); err != nil {
			t.Fatalf("status: %v: %s", err, out)
		}
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	waitFor(t, "tini-hot and its application to end after the parent's death", func() (bool, bool) {
		return true, !alive(pid) && !alive(app)
	})
}

func init() { registerHelper("shutlistener", helperShutListener) }

// helperShutListener is a hotapp server that answers "gen:N", and on
// SIGTERM shuts its listener down with shutdown(2), as runtimes that wake
// a thread blocked in accept(2) do, then exits. The shutdown reaches the
// next generation's accept too (EINVAL), which hotapp.Serve retries.
func helperShutListener() int {
	ls := oneListener()
	if ls == nil {
		return 2
	}
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		<-sigs
		if rc, err := ls[0].Listener.(*net.TCPListener).SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_RDWR) })
		}
		os.Exit(0)
	}()
	// SIGTERM is the goroutine's above: hotapp's drain would close the
	// listener first.
	return serveGen(ls, hotapp.Options{DrainSignals: []os.Signal{syscall.SIGUSR2}})
}

// oneListener is the one socket handed over to a helper, or nil after
// saying why not.
func oneListener() []hotapp.Listener {
	ls, err := hotapp.Listeners()
	if err != nil || len(ls) != 1 {
		fmt.Fprintln(os.Stderr, "listeners:", ls, err)
		return nil
	}
	return ls
}

// serveGen serves "gen:N" on ls with hotapp until it drains, and returns
// the helper's exit status.
func serveGen(ls []hotapp.Listener, opts hotapp.Options) int {
	body := "gen:" + os.Getenv("TINI_HOT_GENERATION")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })}
	if err := hotapp.Serve(context.Background(), srv, ls, opts); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// TestListenerShutDown: a generation that shuts its listener down as it
// drains. Shared (--shared-sockets), that stops the socket for the new
// generation too; steered, its own slot's socket only, which the kernel
// takes out of the reuseport group. Either way tini-hot makes it listen
// again at once (and, steered, steers again with the group's new order),
// and every later generation serves.
func TestListenerShutDown(t *testing.T) {
	for _, sm := range sockets {
		t.Run(sm.name, func(t *testing.T) {
			t.Parallel()
			listenerShutDown(t, sm.flags)
		})
	}
}

func listenerShutDown(t *testing.T, flags []string) {
	addr := freeAddr(t)
	p := startInit(t, th(), mode{"pid1", true}, nil,
		append(append(append([]string{"-l", "tcp://" + addr}, flags...), "--ready", "notify", "--"), helperCmd("shutlistener")...)...)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	waitFor(t, "generation 1 serving", func() (string, bool) {
		body, err := get(c, "http://"+addr+"/")
		return body, err == nil && body == "gen:1"
	})
	for gen := 2; gen <= 3; gen++ {
		if out, code := p.reloadWithin(30*time.Second, "--wait-drained"); code != 0 {
			t.Fatalf("reload to generation %d: %d %s", gen, code, out)
		}
		// Generation gen-1 shut the socket down and has exited.
		want := fmt.Sprintf("gen:%d", gen)
		waitForWithin(t, 10*time.Second, "the socket to serve "+want, func() (string, bool) {
			body, err := get(c, "http://"+addr+"/")
			return body, err == nil && body == want
		})
		for i := range 20 {
			if body, err := get(c, "http://"+addr+"/"); err != nil || body != want {
				t.Fatalf("request %d after the reload to generation %d: %q, %v", i, gen, body, err)
			}
		}
	}
	// The socket serves as soon as it listens; the warning follows.
	waitFor(t, "a warning per shutdown", func() (string, bool) {
		n := strings.Count(p.stderr.String(), "listening again")
		return fmt.Sprint(n, " warnings"), n >= 2
	})
	if n := strings.Count(p.stderr.String(), "listening again"); n != 2 {
		t.Errorf("%d warnings, want one per shutdown:\n%s", n, p.stderr)
	}
	if ls := p.status().Listeners; len(ls) != 1 || !ls[0].Listening || ls[0].Restored != 2 {
		t.Errorf("status of the listener: %+v, want listening, restored twice", ls)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func init() { registerHelper("notifyflood", helperNotifyFlood) }

// helperNotifyFlood is a hotapp server that answers "gen:N" and starts
// two processes that send notices in a loop, each a new STATUS (so that
// none repeats what tini-hot knows): a worker, its child, and a stranger,
// started setsid with no environment but NOTIFY_SOCKET by a process that
// exits at once, so that it is reparented to tini-hot and belongs to no
// generation. FLOOD_ROLE says which of them a process is.
func helperNotifyFlood() int {
	self := func(role string, env []string) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(env, helperEnv+"=notifyflood", "FLOOD_ROLE="+role)
		cmd.Stderr = os.Stderr
		return cmd
	}
	switch role := os.Getenv("FLOOD_ROLE"); role {
	case "worker", "stranger":
		// A stranger sends once reparented to tini-hot (PID 1): while its
		// starter lives it is the generation's, and would be taken as
		// such for its life.
		for role == "stranger" && os.Getppid() != 1 {
			time.Sleep(time.Millisecond)
		}
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for i := 0; ; i++ {
			if _, err := c.Write([]byte("STATUS=" + role + " " + strconv.Itoa(i))); err != nil {
				time.Sleep(time.Millisecond) // the generation's socket is gone
			}
		}
	case "middle":
		cmd := self("stranger", []string{"NOTIFY_SOCKET=" + os.Getenv("NOTIFY_SOCKET")})
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	ls := oneListener()
	if ls == nil {
		return 2
	}
	for _, role := range []string{"worker", "middle"} {
		cmd := self(role, os.Environ())
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if role == "middle" {
			_ = cmd.Wait()
		}
	}
	return serveGen(ls, hotapp.Options{})
}

// TestNotifyFlood: a worker and a stranger that send notices in a loop
// get a paced share of tini-hot (at most 100 datagrams per 100 ms of a
// generation's socket), not a /proc scan or a log line each; status and
// reloads answer meanwhile, and the stranger is named once.
func TestNotifyFlood(t *testing.T) {
	addr := freeAddr(t)
	p := startInit(t, th(), mode{"pid1", true}, nil,
		append([]string{"-l", "tcp://" + addr, "--ready", "notify", "--"}, helperCmd("notifyflood")...)...)
	begun := time.Now()
	// The worker's last STATUS tini-hot took: how many it has read.
	taken := func() (int, bool) {
		g, _ := generation(p.status(), 1)
		n, err := strconv.Atoi(strings.TrimPrefix(g.AppStatus, "worker "))
		return n, err == nil && strings.HasPrefix(g.AppStatus, "worker ")
	}
	waitFor(t, "the worker's notices", taken)
	from := time.Now()
	n0, _ := taken()
	// Status answers, each to a fresh client, during the flood: at least
	// half a second of them (the pace's window is 100 ms), until the
	// worker's count has moved.
	n1 := waitFor(t, "more of the worker's notices", func() (int, bool) {
		n, _ := taken()
		return n, n > n0 && time.Since(from) >= 500*time.Millisecond
	})
	took := time.Since(from)
	// What the pace allows in that time, plus the kernel's queue (10)
	// and the supervisor's channel (16): the worker shares the socket
	// with the stranger, so it gets less.
	if most := 100*int(took/(100*time.Millisecond)+2) + 26; n1-n0 > most {
		t.Errorf("the worker's notices taken: %d in %v, want at most %d", n1-n0, took.Round(time.Millisecond), most)
	} else {
		t.Logf("the worker's notices taken: %d in %v (at most %d)", n1-n0, took.Round(time.Millisecond), most)
	}
	waitFor(t, "the stranger named in the log", func() (string, bool) {
		return "", strings.Contains(p.stderr.String(), "outside the generation ignored")
	})
	if g, _ := generation(p.status(), 1); g.NoticesIgnored == 0 {
		t.Errorf("status counts no notice ignored for generation 1: %+v", g)
	}
	if out, code := p.reloadWithin(30*time.Second, "--wait-drained"); code != 0 {
		t.Fatalf("reload during the flood: %d %s", code, out)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if body, err := get(c, "http://"+addr+"/"); err != nil || body != "gen:2" {
		t.Fatalf("after the reload: %q, %v", body, err)
	}
	// For each generation flooded (2), its first warning and one count
	// per 10 s of its life at most. Their lives overlap (generation 1
	// drains while 2 serves), so each may have lived the whole run: a
	// bound of 2+run/10s failed under load with 4 lines in 17.65 s, each
	// generation's first and one count 10 s after it.
	if n, most := strings.Count(p.stderr.String(), "outside the generation ignored"), 2*(1+int(time.Since(begun)/(10*time.Second))); n > most {
		t.Errorf("%d warnings about the stranger, want at most %d:\n%s", n, most, p.stderr)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestStalledLog: tini-hot's stderr is the container's log pipe, and its
// reader can stall (a log driver in blocking mode, a full disk). As PID 1
// at -vv, which logs every step, with that pipe full and never read,
// tini-hot still reloads, and on SIGTERM drains the application and exits
// with its status.
func TestStalledLog(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// Fill the pipe, then leave it blocking, as the init gets it.
	fd := int(w.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{4096, 1} {
		for {
			if _, err := syscall.Write(fd, make([]byte, size)); errors.Is(err, syscall.EAGAIN) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	// The demo logs to a stderr of its own: only tini-hot's log is stalled.
	p := startInitTo(t, w, th(), mode{"pid1", true}, nil,
		"-vv", "-l", "http=tcp://"+addr, "--ready", "notify", "--", "sh", "-c", `exec "$0" 2>/dev/null`, demo)
	w.Close()
	url := "http://" + addr + "/"
	waitServed(t, url, "gen:1")
	p.waitGen(1, "serving")
	if out, code := p.reloadWithin(20 * time.Second); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	waitServed(t, url, "gen:2")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit status %d, want the demo's 0", code)
	}
}

// pidsRoot is the v1 pids controller's mount on this machine.
const pidsRoot = "/sys/fs/cgroup/pids"

// pidsCgroup creates a pids cgroup limited to max tasks and removes it at
// the end of the test, once empty.
func pidsCgroup(t *testing.T, max int) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pidsRoot, "cgroup.procs")); err != nil || os.Geteuid() != 0 {
		need(t, "root and the cgroup v1 pids controller at %s", pidsRoot)
	}
	dir := newCgroup(t, pidsRoot)
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(fmt.Sprint(max)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fillPids moves sleeping processes into cg until it holds as many tasks
// as it may (a cgroup's limit stops forks, not moves), and returns a
// function that ends them.
func fillPids(t *testing.T, cg string) (free func()) {
	t.Helper()
	var fillers []*exec.Cmd
	free = func() {
		for _, c := range fillers {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		fillers = nil
	}
	t.Cleanup(free)
	for {
		cur, max := readFile(filepath.Join(cg, "pids.current")), readFile(filepath.Join(cg, "pids.max"))
		if strings.TrimSpace(cur) == strings.TrimSpace(max) {
			return free
		}
		c := exec.Command("sleep", "600")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, c)
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(fmt.Sprint(c.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// threads is how many threads process pid has.
func threads(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestPidsLimit: an application that takes every pid its container may
// have (a thread leak, a fork bomb) must not take tini-hot down. A Go
// program whose runtime cannot start a thread it needs dies, and before
// this test tini-hot did, under a burst of status and scrape requests.
// As PID 1 of a pids cgroup filled to its limit, both processors busy,
// under 100 status and 100 scrape clients at once, 10 times over,
// tini-hot answers every one and starts no thread; it refuses the reload it cannot fork for, the old
// generation serving on; once pids are free it upgrades, and on SIGTERM
// it exits with the application's status.
func TestPidsLimit(t *testing.T) {
	cg := pidsCgroup(t, 64)
	metrics := freeAddr(t)
	p := startInit(t, initBin{"tini-hot", "sh"}, mode{"pid1", true}, nil,
		"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg,
		tiniHot, "-vvv", "--ready", "notify", "--metrics", metrics, "--",
		"sh", "-c", "systemd-notify --ready && exec sleep 100000")
	p.waitGen(1, "serving")
	pid := p.initPid()
	waitFor(t, "tini-hot to reserve its threads", func() (bool, bool) {
		done := strings.Contains(p.stderr.String(), "threads reserved")
		return done, done
	})
	reserved := threads(t, pid)
	if reserved <= procs.Reserved {
		t.Fatalf("%d threads after reserving %d", reserved, procs.Reserved)
	}
	free := fillPids(t, cg)

	// Both processors busy, as on a loaded node: a thread of tini-hot's
	// in a system call is then descheduled longer, and the runtime wants
	// another for the rest.
	for range 2 {
		busy := exec.Command("sh", "-c", "while :; do :; done")
		if err := busy.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	}
	client := &http.Client{Timeout: time.Minute}
	for round := range 10 {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		// 100 at once: the control socket reads at most 128 clients at
		// once and drops the oldest beyond.
		for range 100 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if resp, err := control.Do(ctx, p.control, control.Request{Op: control.OpStatus}); err != nil || !resp.OK {
					errs <- fmt.Errorf("status: %v %s", err, resp.Error)
				}
			})
			wg.Go(func() {
				if body, err := get(client, "http://"+metrics+"/metrics"); err != nil || !strings.Contains(body, "tini_hot_generation 1") {
					errs <- fmt.Errorf("scrape: %v", err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		select {
		case <-p.done:
			t.Fatalf("tini-hot ended in round %d: %s", round, p.stderr)
		default:
		}
	}
	if n := threads(t, pid); n > reserved {
		t.Errorf("tini-hot has %d threads, %d before the clients: it started threads at the limit", n, reserved)
	}
	if out, code := p.reloadWithin(20 * time.Second); code == 0 {
		t.Fatalf("reload at the pids limit succeeded: %s", out)
	}
	p.waitGen(1, "serving")
	free()
	if out, code := p.reloadWithin(20 * time.Second); code != 0 {
		t.Fatalf("reload once pids are free: exit %d: %s", code, out)
	}
	p.waitGen(3, "serving") // 2 is the one that could not be forked
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit status %d, want 143 (sleep's SIGTERM): %s", code, p.stderr)
	}
	if strings.Contains(p.stderr.String(), "fatal error") {
		t.Fatalf("the runtime failed:\n%s", p.stderr)
	}
}
