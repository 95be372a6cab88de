package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
)

// initArgs are the flags common to both inits in a mode: tini warns unless
// it is PID 1 or a subreaper, so the subreaper mode asks for -s.
func initArgs(m mode, args ...string) []string {
	if !m.pid1 {
		args = append([]string{"-s"}, args...)
	}
	return args
}

// exitCases are the exit statuses an init must pass on: each command
// (sh -c) under the flags gives want.
var exitCases = []struct {
	name  string
	flags []string
	cmd   string
	want  int
}{
	{"zero", nil, "exit 0", 0},
	{"seven", nil, "exit 7", 7},
	{"sigterm", nil, "kill -TERM $$", 143},
	{"sigkill", nil, "kill -KILL $$", 137},
	{"remapped", []string{"-e", "7"}, "exit 7", 0},
	{"not-remapped", []string{"-e", "7"}, "exit 8", 8},
}

func TestExitStatus(t *testing.T) {
	for _, bin := range inits(t) {
		testExitStatus(t, bin, modes)
	}
}

// testExitStatus runs exitCases against bin in each of modes.
func testExitStatus(t *testing.T, bin initBin, modes []mode) {
	for _, m := range modes {
		for _, c := range exitCases {
			t.Run(bin.name+"/"+m.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				args := initArgs(m, append(c.flags, "--", "sh", "-c", c.cmd)...)
				p := startInit(t, bin, m, nil, args...)
				if got := p.wait(); got != c.want {
					t.Fatalf("%s %v: exit status %d, want %d; output:\n%s", bin.name, args, got, c.want, p.stderr)
				}
			})
		}
	}
}

// tiniSignals are the signals every init must forward.
var tiniSignals = []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGWINCH}

func TestSignalsForwarded(t *testing.T) {
	for _, bin := range inits(t) {
		for _, m := range modes {
			for _, group := range []bool{false, true} {
				name := bin.name + "/" + m.name + "/child"
				if group {
					name = bin.name + "/" + m.name + "/group"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					checkForwarded(t, bin, m, group, tiniSignals)
				})
			}
		}
	}
}

// TestHostileSignals sends tini-hot the signals that would kill or stop an
// init that did not handle them: it must forward each and survive.
// (SIGPIPE is not forwarded: see TestClientGoneKeepsApp.)
func TestHostileSignals(t *testing.T) {
	hostile := []syscall.Signal{
		syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGTRAP,
		syscall.SIGSYS, syscall.SIGABRT, syscall.SIGALRM, syscall.SIGHUP,
		syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCONT,
		syscall.SIGXCPU, syscall.Signal(36), syscall.Signal(64),
	}
	bin := initBin{"tini-hot", tiniHot}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// SIGHUP is forwarded like the others with no reload signal.
			checkForwarded(t, bin, m, false, hostile, "TINI_HOT_RELOAD_SIGNAL=none")
		})
	}
}

// checkForwarded starts the signals helper under bin, sends the init each
// of sigs in turn and checks that the child (and, with group, a
// grandchild in its process group) records each one.
func checkForwarded(t *testing.T, bin initBin, m mode, group bool, sigs []syscall.Signal, extraEnv ...string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "child")
	names := make([]string, len(sigs))
	for i, s := range sigs {
		names[i] = reaper.SignalName(s)
	}
	env := append([]string{"OUT=" + out, "SIGNALS=" + strings.Join(names, ",")}, extraEnv...)
	flags := []string{}
	if group {
		flags = append(flags, "-g")
		env = append(env, "GRANDCHILD=1")
	}
	args := initArgs(m, append(append(flags, "--"), helperCmd("signals")...)...)
	p := startInit(t, bin, m, env, args...)
	files := []string{out}
	if group {
		files = append(files, out+".grandchild")
	}
	waitLine(t, out, "READY")
	if bin.path == tiniHot {
		// tini-hot forwards the signals that would not end it only
		// from a few ms after the start (reaper.New); the helper can be
		// ready sooner on a loaded machine.
		p.waitSignals()
	}
	for i, sig := range sigs {
		p.signal(sig)
		for _, f := range files {
			waitLine(t, f, names[i])
		}
	}
	if got := p.wait(); got != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", got, p.stderr)
	}
	for _, f := range files {
		want := "READY\n" + strings.Join(names, "\n") + "\n"
		if got := readFile(f); got != want {
			t.Errorf("%s recorded:\n%s\nwant:\n%s", filepath.Base(f), got, want)
		}
	}
}

func init() { registerHelper("signals", helperSignals) }

// helperSignals waits for each signal named in $SIGNALS and appends its
// name to $OUT, after a READY line. With GRANDCHILD=1 it first starts a
// copy of itself in its own process group, recording to $OUT.grandchild,
// and waits for it before it exits. It exits 0 once every signal came.
func helperSignals() int {
	names := strings.Split(os.Getenv("SIGNALS"), ",")
	remaining := map[string]bool{}
	var sigs []os.Signal
	for _, n := range names {
		s, err := reaper.ParseSignal(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		sigs = append(sigs, s)
		remaining[reaper.SignalName(s)] = true
	}
	c := make(chan os.Signal, len(sigs))
	signal.Notify(c, sigs...)
	out := os.Getenv("OUT")
	var grandchild *exec.Cmd
	if os.Getenv("GRANDCHILD") == "1" {
		grandchild = exec.Command(os.Args[0])
		grandchild.Env = append(os.Environ(), "OUT="+out+".grandchild", "GRANDCHILD=0")
		grandchild.Stderr = os.Stderr
		if err := grandchild.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.HasPrefix(readFile(out+".grandchild"), "READY\n") {
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "grandchild not ready")
				return 2
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	fmt.Fprintln(f, "READY")
	for len(remaining) > 0 {
		s := <-c
		name := reaper.SignalName(s.(syscall.Signal))
		fmt.Fprintln(f, name)
		delete(remaining, name)
	}
	if grandchild != nil {
		if err := grandchild.Wait(); err != nil {
			fmt.Fprintln(os.Stderr, "grandchild:", err)
			return 1
		}
	}
	return 0
}

// TestApplicationEnvironment: tini-hot tunes its own Go runtime (its soft
// memory limit, one processor) in process: the application's
// GOMAXPROCS reaches it unchanged, and no Go runtime setting is added, as
// under tini.
func TestApplicationEnvironment(t *testing.T) {
	for _, bin := range inits(t) {
		t.Run(bin.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "env")
			p := startInit(t, bin, modes[0], []string{"GOMAXPROCS=3", "OUT=" + out}, "--", "sh", "-c", `env > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"`)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit status %d; output:\n%s", code, p.stderr)
			}
			env := map[string]string{}
			for _, kv := range strings.Split(strings.TrimSpace(readFile(out)), "\n") {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			if env["GOMAXPROCS"] != "3" {
				t.Errorf("GOMAXPROCS=%q, want 3, as given to the init", env["GOMAXPROCS"])
			}
			for _, k := range []string{"GOMEMLIMIT", "GOGC", "GODEBUG"} {
				if v, ok := env[k]; ok {
					t.Errorf("%s=%q added to the application's environment", k, v)
				}
			}
			if bin.name == "tini-hot" && env["TINI_HOT_GENERATION"] != "1" {
				t.Errorf("TINI_HOT_GENERATION=%q, want 1", env["TINI_HOT_GENERATION"])
			}
		})
	}
}
