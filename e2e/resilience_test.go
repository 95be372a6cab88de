package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"github.com/tini-hot/tini-hot/internal/watch/kubelet"
	"github.com/tini-hot/tini-hot/upgrade"
)

// hostPid is the host's pid of the process that is nsPid in the PID
// namespace whose PID 1 is host pid init.
func hostPid(t *testing.T, init, nsPid int) int {
	t.Helper()
	for pid := range descendants(init) {
		p, err := procfs.NewProc(pid)
		if err != nil {
			continue
		}
		st, err := p.NewStatus()
		if err == nil && len(st.NSpids) > 1 && int(st.NSpids[len(st.NSpids)-1]) == nsPid {
			return pid
		}
	}
	t.Fatalf("no process %d in the namespace of %d", nsPid, init)
	return 0
}

// TestReloadsWaitAtBound: with --max-draining 2 and each old generation
// holding a 6 s request, a third reload waits and succeeds, and a SIGHUP
// sent at the bound ends in a newer generation serving. Every held
// request is answered by the generation that took it.
func TestReloadsWaitAtBound(t *testing.T) {
	p, url := startDemo(t, mode{"pid1", true}, "--max-draining", "2")
	var held, extra []<-chan string
	for gen := 1; gen <= 2; gen++ {
		// Generation gen must hold a request. Just after a reload, the
		// generation told to drain may still take one before it closes
		// its listener (and answers it): ask again until gen takes one.
		for try := 1; ; try++ {
			slow, line := slowRequest(t, url, 6, p.stderr.String)
			if strings.Contains(line, fmt.Sprintf("generation %d:", gen)) {
				held = append(held, slow)
				break
			}
			extra = append(extra, slow)
			if try == 20 {
				t.Fatalf("generation %d took none of 20 slow requests; the last: %s", gen, line)
			}
		}
		if out, code := p.reload(); code != 0 || out != fmt.Sprintf("generation %d serving", gen+1) {
			t.Fatalf("reload %d: %d %s", gen, code, out)
		}
	}
	// Two generations drain: the bound.
	start := time.Now()
	out, code := p.reloadWithin(time.Minute, "--timeout", "1s")
	if code != 1 || !strings.Contains(out, "queued, waiting for one of 2 draining generations to exit (--max-draining 2)") {
		t.Fatalf("reload --timeout 1s at the bound: %d %q", code, out)
	}
	third := make(chan string, 1)
	go func() { out, code := p.reload(); third <- fmt.Sprintf("%d %s", code, out) }()
	waitFor(t, "the reload to be queued", func() (string, bool) {
		q := p.status().Queued
		return fmt.Sprint(q), q != nil && q.Waiters == 1
	})
	hup := time.Now()
	p.signal(syscall.SIGHUP)
	got := <-third
	waited := time.Since(start)
	if got != "0 generation 4 serving" {
		t.Fatalf("third reload: %s", got)
	}
	st := settled(t, p)
	serving := st.Generations[len(st.Generations)-1]
	if serving.State != "serving" || serving.Number < 4 || serving.Started.Before(hup) {
		t.Fatalf("after the SIGHUP at the bound: generation %d %s started %v (SIGHUP at %v)", serving.Number, serving.State, serving.Started, hup)
	}
	for i, slow := range held {
		if body := <-slow; !strings.HasSuffix(body, fmt.Sprintf("gen:%d", i+1)) {
			t.Errorf("request held by generation %d: %q", i+1, body)
		}
	}
	for _, slow := range extra {
		if body := <-slow; !strings.HasSuffix(body, "gen:1") {
			t.Errorf("request taken by generation 1 as it began to drain: %q", body)
		}
	}
	t.Logf("reload at the bound waited %v; generation %d serves; reloads %+v", waited.Round(time.Millisecond), serving.Number, st.Reloads)
}

// TestWatchConfigMap: the kubelet's atomic update of a ConfigMap volume
// gives exactly one reload, watching the directory or a file in it; three
// updates give three; nothing changing gives none.
func TestWatchConfigMap(t *testing.T) {
	for _, file := range []bool{false, true} {
		name := map[bool]string{false: "directory", true: "file"}[file]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			vol := t.TempDir()
			if err := kubelet.Update(vol, map[string]string{"app.conf": "v0", "other.conf": "x"}); err != nil {
				t.Fatal(err)
			}
			path := vol
			if file {
				path = filepath.Join(vol, "app.conf")
			}
			const debounce = 200 * time.Millisecond
			p, url := startDemo(t, mode{"pid1", true}, "--watch", path, "--watch-debounce", debounce.String())
			// quiet checks that no reload comes over several windows:
			// the absence of an event can only be seen over time.
			quiet := func(want int) {
				t.Helper()
				time.Sleep(5 * debounce)
				if st := settled(t, p); st.Reloads.Requested != want {
					t.Fatalf("%d reloads, want %d: %+v", st.Reloads.Requested, want, st.Reloads)
				}
			}
			quiet(0)
			for i := 1; i <= 3; i++ {
				if err := kubelet.Update(vol, map[string]string{"app.conf": fmt.Sprint("v", i), "other.conf": "x"}); err != nil {
					t.Fatal(err)
				}
				waitServed(t, url, fmt.Sprintf("gen:%d", i+1))
				quiet(i)
			}
			if file {
				// Another file of the volume changing alone is not a
				// change of the watched one.
				if err := os.WriteFile(filepath.Join(vol, "unrelated"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				quiet(3)
			}
		})
	}
}

// TestWatchSymlinks: each update a --watch path leads to reloads once,
// through links to other directories and however many watched paths see
// it (aa4f58b: 0, 0 and 2 reloads):
//   - rel/current -> v1, swapped atomically to v2: one reload, then an
//     edit in v2 one more;
//   - lnk -> ext/conf, ext/conf edited in place: one reload;
//   - a directory and a file in it, both watched, one update: one reload.
func TestWatchSymlinks(t *testing.T) {
	const debounce = 200 * time.Millisecond
	// quiet waits several windows, then checks the reloads: the absence
	// of a reload can only be seen over time.
	quiet := func(t *testing.T, p *proc, want int) {
		t.Helper()
		time.Sleep(5 * debounce)
		if st := settled(t, p); st.Reloads.Requested != want {
			t.Fatalf("%d reloads, want %d: %+v", st.Reloads.Requested, want, st.Reloads)
		}
	}
	t.Run("current", func(t *testing.T) {
		t.Parallel()
		rel := t.TempDir()
		for _, v := range []string{"v1", "v2"} {
			if err := os.Mkdir(filepath.Join(rel, v), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rel, v, "app.conf"), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		current := filepath.Join(rel, "current")
		if err := os.Symlink("v1", current); err != nil {
			t.Fatal(err)
		}
		p, url := startDemo(t, mode{"pid1", true}, "--watch", current, "--watch-debounce", debounce.String())
		if err := os.Symlink("v2", current+".new"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(current+".new", current); err != nil {
			t.Fatal(err)
		}
		waitServed(t, url, "gen:2")
		quiet(t, p, 1)
		if err := os.WriteFile(filepath.Join(rel, "v2", "app.conf"), []byte("v2 edited"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitServed(t, url, "gen:3")
		quiet(t, p, 2)
	})
	t.Run("link-elsewhere", func(t *testing.T) {
		t.Parallel()
		conf := filepath.Join(t.TempDir(), "conf")
		if err := os.WriteFile(conf, []byte("a"), 0o644); err != nil {
			t.Fatal(err)
		}
		lnk := filepath.Join(t.TempDir(), "lnk")
		if err := os.Symlink(conf, lnk); err != nil {
			t.Fatal(err)
		}
		p, url := startDemo(t, mode{"pid1", true}, "--watch", lnk, "--watch-debounce", debounce.String())
		if err := os.WriteFile(conf, []byte("bb"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitServed(t, url, "gen:2")
		quiet(t, p, 1)
	})
	t.Run("two-paths", func(t *testing.T) {
		t.Parallel()
		vol := t.TempDir()
		if err := kubelet.Update(vol, map[string]string{"app.conf": "v0"}); err != nil {
			t.Fatal(err)
		}
		p, url := startDemo(t, mode{"pid1", true}, "--watch", vol, "--watch", filepath.Join(vol, "app.conf"), "--watch-debounce", debounce.String())
		if err := kubelet.Update(vol, map[string]string{"app.conf": "v1"}); err != nil {
			t.Fatal(err)
		}
		waitServed(t, url, "gen:2")
		quiet(t, p, 1)
	})
}

// TestWatchAtInotifyLimit: as PID 1 in a user namespace whose inotify
// instance limit is 0 (a node whose fs.inotify.max_user_instances is used
// up by other containers), --watch does not stop the application from
// serving: tini-hot warns, naming the limit, and tries again. An update
// made while nothing watches reloads once the limit is raised, and the
// updates after it reload too.
func TestWatchAtInotifyLimit(t *testing.T) {
	requireNamespaces(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		need(t, "nsenter (util-linux)")
	}
	vol := t.TempDir()
	if err := kubelet.Update(vol, map[string]string{"app.conf": "v0"}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	const limit = "/proc/sys/user/max_inotify_instances"
	p := startInit(t, initBin{"tini-hot", "unshare"}, mode{"pid1", true}, nil,
		"-U", "-r", "--", "sh", "-c", "echo 0 >"+limit+" && exec \"$@\"", "sh",
		tiniHot, "-l", "http=tcp://"+addr, "--ready", "notify", "--watch", vol, "--watch-debounce", "200ms", "--", demo)
	url := "http://" + addr + "/"
	waitServed(t, url, "gen:1")
	if !strings.Contains(p.stderr.String(), "fs.inotify.max_user_instances") {
		t.Fatalf("no warning naming the limit:\n%s", p.stderr)
	}
	if err := kubelet.Update(vol, map[string]string{"app.conf": "v1"}); err != nil {
		t.Fatal(err)
	}
	raise := exec.Command("nsenter", "-U", "-t", fmt.Sprint(p.initPid()), "sh", "-c", "echo 128 >"+limit)
	if out, err := raise.CombinedOutput(); err != nil {
		t.Fatalf("raise the limit: %v: %s", err, out)
	}
	waitServed(t, url, "gen:2")
	if err := kubelet.Update(vol, map[string]string{"app.conf": "v2"}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, url, "gen:3")
	if st := settled(t, p); st.Reloads.Requested != 2 {
		t.Fatalf("%d reloads, want 2: %+v", st.Reloads.Requested, st.Reloads)
	}
}

// TestCrashRestart: as PID 1, kill -9 of the serving generation with
// --restart on-failure starts a new generation on the held socket, and
// none of the requests sent after the kill fails.
func TestCrashRestart(t *testing.T) {
	p, url := startDemo(t, mode{"pid1", true}, "--restart", "on-failure")
	st := p.status()
	g1, _ := generation(st, 1)
	victim := hostPid(t, p.initPid(), g1.Pid)
	before := startLoad(url, 2, 2) // load across the kill: its failures are the crash's, not counted
	kill := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed generation to be reaped", func() (string, bool) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", victim))
		return "", os.IsNotExist(err)
	})
	l := startLoad(url, 6, 4)
	body := waitFor(t, "generation 2 to answer", func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil && strings.HasSuffix(body, "gen:2")
	})
	gap := time.Since(kill)
	time.Sleep(300 * time.Millisecond) // some load on the new generation: not a wait for an event
	l.finish(t)
	close(before.stop)
	before.wg.Wait()
	st = p.status()
	if st.Restarts != 1 {
		t.Errorf("%d restarts", st.Restarts)
	}
	t.Logf("kill -9 → %s answering after %v; after the kill %d requests, %d failed, longest %v; across it %d requests, %d failed",
		body, gap.Round(time.Millisecond), l.ok.Load()+l.failed.Load(), l.failed.Load(), time.Duration(l.longest.Load()).Round(time.Millisecond),
		before.ok.Load()+before.failed.Load(), before.failed.Load())
}

// TestCrashLoopGivesUp: an app that crashes 300 ms after every start is
// restarted, then tini-hot gives up with its status, 1, well within the
// minute the kubelet's back-off would take over after.
func TestCrashLoopGivesUp(t *testing.T) {
	start := time.Now()
	p := startInit(t, th(), mode{"pid1", true}, nil, "-l", "tcp://"+freeAddr(t), "--ready", "notify", "--restart", "on-failure",
		"--", "sh", "-c", "sleep 0.3; exit 1")
	code := p.wait()
	took := p.ended.Sub(start)
	restarts := strings.Count(p.stderr.String(), "serving generation ended: restarting")
	if code != 1 || restarts != upgrade.DefaultRestartLimit || !strings.Contains(p.stderr.String(), "giving up: the application crashed too often") {
		t.Fatalf("exit %d after %d restarts:\n%s", code, restarts, p.stderr)
	}
	if took > upgrade.DefaultRestartWindow {
		t.Fatalf("gave up after %v, more than the %v window", took, upgrade.DefaultRestartWindow)
	}
	t.Logf("crash loop: %d restarts, gave up with status %d after %v", restarts, code, took.Round(time.Millisecond))
}

// TestReloadDuringCrashLoop: with --restart on-failure, a reload made
// while the application crashes at every start exits 1 as soon as the
// generation started for it fails, while tini-hot still restarts it;
// aa4f58b answered only at give-up ("shutting down"), after every crash.
func TestReloadDuringCrashLoop(t *testing.T) {
	crash := filepath.Join(t.TempDir(), "crash")
	addr := freeAddr(t)
	p := startInit(t, th(), mode{"pid1", true}, nil, "-l", "http=tcp://"+addr, "--ready", "notify", "--restart", "on-failure",
		"--", "sh", "-c", `if [ -e "$0" ]; then sleep 0.3; exit 1; fi; exec "$1"`, crash, demo)
	waitServed(t, "http://"+addr+"/", "gen:1")
	if err := os.WriteFile(crash, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g1, _ := generation(p.status(), 1)
	if err := syscall.Kill(hostPid(t, p.initPid(), g1.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restart", func() (int, bool) { st := p.status(); return st.Restarts, st.Restarts > 0 })
	start := time.Now()
	out, code := p.reloadWithin(time.Minute)
	took := time.Since(start)
	if code != 1 || !regexp.MustCompile(`^tini-hot reload: generation \d+ exited with status 1 before ready$`).MatchString(out) {
		t.Fatalf("reload during the crash loop: %d %q, want 1 and the failed generation", code, out)
	}
	codeEnd := p.wait()
	t.Logf("reload answered %v after it was made: %q; tini-hot gave up %v later, exit %d", took.Round(time.Millisecond), out, p.ended.Sub(start.Add(took)).Round(time.Millisecond), codeEnd)
}

// TestReloadLeftovers: what an old generation leaves behind when its main
// process ends (a setsid child; a child that ignores SIGTERM) gets the
// drain signal then, and SIGKILL at the drain deadline: after 3 reloads
// only the serving generation's remain. Before, they lived on until the
// container's end, more with each reload.
func TestReloadLeftovers(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			p := startInit(t, initBin{"tini-hot", tiniHot}, m, nil, initArgs(m,
				"-l", "http=tcp://"+addr, "--ready", "notify", "--drain-timeout", "2s", "--kill-timeout", "1s", "--", "sh", "-c",
				`setsid sleep 600 & sh -c 'trap "" TERM; exec sleep 601' & exec "$0"`, demo)...)
			// left counts the processes below tini-hot running sleep N.
			left := func(n string) int { return running(p.initPid(), "sleep", n) }
			waitFor(t, "generation 1's two sleeps", func() ([2]int, bool) {
				n := [2]int{left("600"), left("601")}
				return n, n == [2]int{1, 1}
			})
			for i := 2; i <= 4; i++ {
				if out, code := p.reloadWithin(30*time.Second, "--wait-drained"); code != 0 || out != fmt.Sprintf("generation %d drained, generation %d serving", i-1, i) && out != fmt.Sprintf("generation %d serving", i) {
					t.Fatalf("reload %d: status %d: %s", i, code, out)
				}
			}
			waitFor(t, "the old generations' setsid sleeps to end", func() (int, bool) { n := left("600"); return n, n == 1 })
			waitFor(t, "the old generations' deaf sleeps to be killed at their drain deadline", func() (int, bool) { n := left("601"); return n, n == 1 })
			if !strings.Contains(p.stderr.String(), "drain timeout: killed what the generation left") {
				t.Errorf("no warning about the killed leftovers:\n%s", p.stderr)
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Errorf("exit %d after SIGTERM, want the demo's 0", code)
			}
		})
	}
}

// TestHungCheckEnded: generation 1's readiness check hangs, so generation 1
// is overdue; a reload replaces it, and once it has drained, the hung
// check it left (a child of tini-hot) is ended with it. Before, the check
// was taken for a live generation's own and lived on.
func TestHungCheckEnded(t *testing.T) {
	check := filepath.Join(t.TempDir(), "check")
	script := "#!/bin/sh\n[ \"$TINI_HOT_GENERATION\" = 1 ] && exec sleep 602\nexit 0\n"
	if err := os.WriteFile(check, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, _ := startDemo(t, mode{"pid1", true}, "--ready", "exec:"+check, "--ready-timeout", "1s", "--drain-timeout", "2s")
	hung := func() int { return running(p.initPid(), "sleep", "602") }
	waitFor(t, "generation 1's check to hang", func() (int, bool) { n := hung(); return n, n == 1 })
	waitFor(t, "generation 1 to be overdue", func() (string, bool) {
		return "", strings.Contains(p.stderr.String(), "first generation not ready; reloads go ahead")
	})
	if out, code := p.reloadWithin(30*time.Second, "--wait-drained"); code != 0 {
		t.Fatalf("reload: status %d: %s", code, out)
	}
	waitFor(t, "generation 1's hung check to end", func() (int, bool) { n := hung(); return n, n == 0 })
}
