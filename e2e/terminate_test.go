package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// probe runs `tini-hot probe` with args and returns its output, exit
// status and how long it took.
func (p *proc) probe(args ...string) (string, int, time.Duration) {
	start := time.Now()
	out, err := exec.Command(tiniHot, append([]string{"probe", "--control", p.control}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), exitCode(err), time.Since(start)
}

// TestTerminateInFlight is a pod's termination: after SIGTERM the app
// keeps serving through --shutdown-delay while probe already fails, a
// request in flight finishes, further SIGTERM and SIGINT change nothing,
// and tini-hot exits 0 with the app.
func TestTerminateInFlight(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			p, url := startDemo(t, m, "--shutdown-delay", "1s", "--grace-period", "10s")
			waitFor(t, "probe to pass", func() (string, bool) {
				_, code, _ := p.probe()
				return "", code == 0
			})
			var worst time.Duration
			for range 20 {
				out, code, took := p.probe()
				if code != 0 || !strings.HasPrefix(out, "ready: generation 1 serving") {
					t.Fatalf("probe: %d %q", code, out)
				}
				worst = max(worst, took)
			}
			slow, _ := slowRequest(t, url, 2, p.stderr.String)
			term := time.Now()
			p.signal(syscall.SIGTERM)
			var out string
			var code int
			waitFor(t, "probe to fail", func() (string, bool) {
				out, code, _ = p.probe()
				return out, code != 0
			})
			if code != 1 || !strings.Contains(out, "not ready: shutting down (SIGTERM received)") || strings.Count(out, "\n") != 0 {
				t.Errorf("probe after SIGTERM: %d %q", code, out)
			}
			if out, code, _ := p.probe("--liveness"); code != 0 || out != "alive" {
				t.Errorf("liveness probe during the shutdown delay: %d %q", code, out)
			}
			// Still serving new requests during the shutdown delay.
			if body, err := get(&http.Client{}, url); err != nil || !strings.Contains(body, "gen:1") {
				t.Errorf("request during the shutdown delay: %q %v", body, err)
			}
			if out, code := p.reload(); code != 1 || !strings.Contains(out, "shutting down") {
				t.Errorf("reload after SIGTERM: %d %q", code, out)
			}
			p.signal(syscall.SIGTERM)
			p.signal(syscall.SIGINT)
			if got := <-slow; !strings.HasSuffix(got, "gen:1") {
				t.Errorf("request in flight across SIGTERM: %q, want generation 1's answer", got)
			}
			if code := p.wait(); code != 0 {
				t.Errorf("tini-hot exited %d, want 0", code)
			}
			took := p.ended.Sub(term)
			if took < time.Second {
				t.Errorf("exited %v after SIGTERM, before the 1s shutdown delay", took)
			}
			t.Logf("probe: worst of 20 %v; in-flight 2s request answered; exit 0 %v after SIGTERM (shutdown delay 1s)",
				worst.Round(time.Millisecond), took.Round(time.Millisecond))
		})
	}
}

// stubborn is an app that ignores SIGTERM and has a setsid child that
// does too; it writes its pids to $OUT.
const stubborn = `trap "" TERM; setsid sh -c 'trap "" TERM; exec sleep 1000' & echo $$ $! > "$OUT"; while :; do sleep 1; done`

// pids reads the pids a stubborn app wrote.
func pids(t *testing.T, path string) []int {
	t.Helper()
	var a, b int
	waitFor(t, "the app's pids", func() (string, bool) {
		n, _ := fmt.Sscan(readFile(path), &a, &b)
		return "", n == 2
	})
	return []int{a, b}
}

// TestTerminateStubborn: an app that ignores SIGTERM is killed, with all
// its processes, before the grace period ends, and tini-hot exits
// before the kubelet would kill it.
func TestTerminateStubborn(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "pids")
			p := startInit(t, initBin{"tini-hot", tiniHot}, m, []string{"OUT=" + out},
				"--ready", "delay:100ms", "--grace-period", "3s", "--", "sh", "-c", stubborn)
			// Host pids, to check from outside the namespace.
			waitFor(t, "the app's setsid child", func() (string, bool) {
				return "", len(descendants(p.initPid())) >= 3
			})
			kids := descendants(p.initPid())
			term := time.Now()
			p.signal(syscall.SIGTERM)
			code := p.wait()
			took := p.ended.Sub(term)
			if code != 128+9 {
				t.Errorf("exit status %d, want 137 (app killed by SIGKILL)", code)
			}
			// tini-hot kills at grace minus margin (2.7 s) after it got
			// SIGTERM, which is after term; it must have exited within
			// the grace period.
			if took >= 3*time.Second || took < 2700*time.Millisecond {
				t.Errorf("tini-hot exited %v after SIGTERM, want from 2.7s (the kill at grace minus margin) to under 3s (grace period)", took)
			}
			for pid, name := range kids {
				if alive(pid) {
					t.Errorf("process %d (%s) still alive", pid, name)
				}
			}
			t.Logf("app ignoring SIGTERM: %d processes killed, tini-hot exited 137 %v after SIGTERM (grace period 3s)",
				len(kids), took.Round(time.Millisecond))
		})
	}
}

// TestPrestop: prestop makes probe fail and refuses reloads while the app
// keeps serving, waits its delay, and starts the grace period's clock the
// way the kubelet's does.
func TestPrestop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pids")
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"subreaper", false}, []string{"OUT=" + out},
		"--ready", "delay:100ms", "--grace-period", "3s", "--", "sh", "-c", stubborn)
	app := pids(t, out)
	waitFor(t, "probe to pass", func() (string, bool) {
		_, code, _ := p.probe()
		return "", code == 0
	})
	start := time.Now()
	pre, err := exec.Command(tiniHot, "prestop", "--delay", "1s", "--control", p.control).CombinedOutput()
	prestopDone := time.Now()
	waited := prestopDone.Sub(start)
	if err != nil || len(pre) != 0 {
		t.Fatalf("prestop: %v %q", err, pre)
	}
	if waited < time.Second {
		t.Errorf("prestop --delay 1s returned after %v", waited)
	}
	if out, code, _ := p.probe(); code != 1 || out != "tini-hot probe: not ready: termination announced by prestop" {
		t.Errorf("probe after prestop: %d %q", code, out)
	}
	if out, code := p.reload(); code != 1 || !strings.Contains(out, "termination announced by prestop") {
		t.Errorf("reload after prestop: %d %q", code, out)
	}
	if st := p.status(); st.State != "termination announced by prestop" {
		t.Errorf("status after prestop: %q", st.State)
	}
	if !alive(app[0]) {
		t.Fatal("the app stopped at prestop")
	}
	term := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 137 {
		t.Errorf("exit status %d, want 137", code)
	}
	// The grace period counts from prestop's request, which tini-hot
	// got after start and at least the 1 s delay before prestopDone:
	// SIGKILL 2.7 s after it, and the exit within 3 s of it.
	total, afterTerm := p.ended.Sub(start), p.ended.Sub(term)
	if total < 2700*time.Millisecond || p.ended.Sub(prestopDone) >= 2*time.Second {
		t.Errorf("tini-hot exited %v after prestop began and %v after it returned; want the kill 2.7s after prestop's request and the exit within the 3s grace period",
			total, p.ended.Sub(prestopDone))
	}
	for _, pid := range app {
		if alive(pid) {
			t.Errorf("process %d still alive", pid)
		}
	}
	t.Logf("prestop waited %v; exit 137 %v after prestop, %v after SIGTERM (grace period 3s)",
		waited.Round(time.Millisecond), total.Round(time.Millisecond), afterTerm.Round(time.Millisecond))
}

// TestTerminateDuringUpgrade: SIGTERM while a new generation is starting
// aborts the upgrade and drains both generations.
func TestTerminateDuringUpgrade(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `trap 'echo drained $TINI_HOT_GENERATION >> "$OUT"; exit 0' TERM; echo started $TINI_HOT_GENERATION >> "$OUT"; while :; do sleep 0.05; done`
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, []string{"OUT=" + log},
		"--ready", "delay:2s", "--grace-period", "10s", "--", "sh", "-c", script)
	waitFor(t, "generation 1 serving", func() (string, bool) {
		g, _ := generation(p.status(), 1)
		return "", g.State == "serving"
	})
	reload := p.reloadAsync()
	waitFor(t, "generation 2 started, not ready", func() (string, bool) {
		g, _ := generation(p.status(), 2)
		return "", g.State == "starting" && strings.Contains(readFile(log), "started 2")
	})
	term := time.Now()
	p.signal(syscall.SIGTERM)
	r := <-reload
	if r.code != 1 || r.out != "tini-hot reload: generation 2: upgrade aborted: shutting down" {
		t.Errorf("reload: %d %q", r.code, r.out)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	took := p.ended.Sub(term)
	for _, line := range []string{"drained 1", "drained 2"} {
		if !strings.Contains(readFile(log), line) {
			t.Errorf("log %q: no %q", readFile(log), line)
		}
	}
	t.Logf("SIGTERM during an upgrade: both generations drained, exit 0 %v after SIGTERM", took.Round(time.Millisecond))
}

// TestPrestopWithdrawn: a prestop that no SIGTERM follows within the
// grace period is withdrawn, and prestop --cancel withdraws one at once:
// probe passes and a reload (here by --watch) is taken again. aa4f58b
// stayed unready and refused every reload for good, and had no --cancel.
func TestPrestopWithdrawn(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(conf, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, url := startDemo(t, mode{"pid1", true}, "--grace-period", "2s", "--watch", conf, "--watch-debounce", "100ms")
	if out, err := exec.Command(tiniHot, "prestop", "--control", p.control).CombinedOutput(); err != nil {
		t.Fatalf("prestop: %v %s", err, out)
	}
	if _, code, _ := p.probe(); code != 1 {
		t.Fatal("probe passes after prestop")
	}
	waitForWithin(t, time.Minute, "probe to pass again, 2 s after the prestop", func() (string, bool) {
		out, code, _ := p.probe()
		return out, code == 0
	})
	if err := os.WriteFile(conf, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitServed(t, url, "gen:2")
	if out, err := exec.Command(tiniHot, "prestop", "--control", p.control).CombinedOutput(); err != nil {
		t.Fatalf("prestop: %v %s", err, out)
	}
	out, err := exec.Command(tiniHot, "prestop", "--cancel", "--control", p.control).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "termination announcement withdrawn: generation 2 serving" {
		t.Fatalf("prestop --cancel: %v %q", err, out)
	}
	if out, code, _ := p.probe(); code != 0 {
		t.Fatalf("probe after prestop --cancel: %d %q", code, out)
	}
}

// TestStatusOfStoppedSupervisor: status, probe and reload against a
// tini-hot stopped by SIGSTOP each give up at their timeout with one line
// and exit 1. aa4f58b's status waited for ever.
func TestStatusOfStoppedSupervisor(t *testing.T) {
	p, _ := startDemo(t, mode{"pid1", true})
	pid := p.initPid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "tini-hot status: no answer within 5s"},
		{[]string{"status", "--timeout", "1s"}, "tini-hot status: no answer within 1s"},
		{[]string{"probe"}, "tini-hot probe: no answer within 900ms"},
		{[]string{"reload", "--timeout", "1s"}, "tini-hot reload: no answer within 1s"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, tiniHot, append(c.args, "--control", p.control)...).CombinedOutput()
		hung := ctx.Err() != nil
		cancel()
		if hung {
			t.Fatalf("%v against a stopped tini-hot: still waiting after 30 s", c.args)
		}
		if code := exitCode(err); code != 1 || !strings.HasPrefix(strings.TrimSpace(string(out)), c.want) {
			t.Errorf("%v against a stopped tini-hot: %d %q, want 1 %q", c.args, code, out, c.want)
		}
	}
}
