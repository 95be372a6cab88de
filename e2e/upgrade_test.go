package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/hotapp"
	"github.com/tini-hot/tini-hot/internal/freeport"
	"github.com/tini-hot/tini-hot/upgrade"
)

// freeAddr is a loopback address with a port free right now (see
// freeport: not from the ephemeral range, which load clients take from).
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// get fetches url with c and returns the body.
func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// slowRequests numbers the slow requests, so that each is told apart in
// the server's log.
var slowRequests atomic.Int64

// slowRequest asks url for an answer after secs seconds (?sleep=) and
// returns once the server has logged that the request started (log
// returns the server's output so far), with the line that says so. The
// body comes on the channel when it comes, or "error: ..." when it fails.
func slowRequest(t *testing.T, url string, secs int, log func() string) (<-chan string, string) {
	t.Helper()
	id := fmt.Sprintf("id=%d", slowRequests.Add(1))
	answer := make(chan string, 1)
	go func() {
		body, err := get(&http.Client{Timeout: time.Minute}, fmt.Sprintf("%s?sleep=%d&%s", url, secs, id))
		if err != nil {
			body = "error: " + err.Error()
		}
		answer <- body
	}()
	line := waitFor(t, "the server to log the slow request "+id, func() (string, bool) {
		for _, l := range strings.Split(log(), "\n") {
			if strings.Contains(l, "&"+id+" started") {
				return l, true
			}
		}
		return "", false
	})
	return answer, line
}

// startDemo runs the demo server under tini-hot on a fresh port.
func startDemo(t *testing.T, m mode, flags ...string) (*proc, string) {
	t.Helper()
	return startServer(t, m, []string{demo}, flags...)
}

// startServer runs the HTTP server command under tini-hot with flags,
// its socket on a fresh port and --ready notify, and returns once it
// answers, with its URL.
func startServer(t *testing.T, m mode, command []string, flags ...string) (*proc, string) {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"-l", "http=tcp://" + addr, "--ready", "notify"}, flags...)
	args = append(append(args, "--"), command...)
	p := startInit(t, initBin{"tini-hot", tiniHot}, m, nil, args...)
	url := "http://" + addr + "/"
	waitFor(t, command[0]+" to answer", func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil
	})
	return p, url
}

// status asks tini-hot for its status through `tini-hot status --json`,
// waiting for the control socket if tini-hot has only just started.
func (p *proc) status() upgrade.Status {
	p.t.Helper()
	var last string
	st, ok := waitForOK(func() (upgrade.Status, bool) {
		out, err := exec.Command(tiniHot, "status", "--json", "--control", p.control).CombinedOutput()
		var st upgrade.Status
		if err == nil {
			err = json.Unmarshal(out, &st)
		}
		last = fmt.Sprintf("%v: %s", err, out)
		return st, err == nil
	})
	if !ok {
		p.t.Fatalf("tini-hot status: %s", last)
	}
	return st
}

// reload runs `tini-hot reload`; it returns the output and exit status.
func (p *proc) reload(args ...string) (string, int) {
	cmd := exec.Command(tiniHot, append([]string{"reload", "--control", p.control}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), exitCode(err)
}

// reloadResult is what `tini-hot reload` printed, and its exit status.
type reloadResult struct {
	out  string
	code int
}

// reloadAsync runs p.reload in the background and gives its result.
func (p *proc) reloadAsync() <-chan reloadResult {
	c := make(chan reloadResult, 1)
	go func() {
		out, code := p.reload()
		c <- reloadResult{out, code}
	}()
	return c
}

// generation returns the state of generation n.
func generation(st upgrade.Status, n int) (upgrade.GenerationStatus, bool) {
	for _, g := range st.Generations {
		if g.Number == n {
			return g, true
		}
	}
	return upgrade.GenerationStatus{}, false
}

// TestSeedDemo is the article's demo: a slow request started before
// SIGHUP finishes on the old pid, requests after it get the new pid, and
// the old generation is gone afterwards.
func TestSeedDemo(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			p, url := startDemo(t, m)
			first, _ := get(http.DefaultClient, url)
			slow, started := slowRequest(t, url, 3, p.stderr.String)
			if !strings.Contains(started, "generation 1:") {
				t.Fatalf("slow request taken by: %q", started)
			}
			p.signal(syscall.SIGHUP)
			var last string
			t.Cleanup(func() {
				if t.Failed() {
					out, _ := exec.Command(tiniHot, "status", "--control", p.control).CombinedOutput()
					t.Logf("last answer: %s; status:\n%s", last, out)
				}
			})
			second := waitFor(t, "a new generation", func() (string, bool) {
				body, err := get(http.DefaultClient, url)
				last = fmt.Sprintf("%q %v", body, err)
				return body, err == nil && body != first
			})
			if !strings.HasSuffix(second, "gen:2") {
				t.Fatalf("after SIGHUP: %q, want generation 2", second)
			}
			for i := 0; i < 20; i++ {
				if body, err := get(http.DefaultClient, url); err != nil || body != second {
					t.Fatalf("request %d after SIGHUP: %q, %v; want %q", i, body, err, second)
				}
			}
			if got := <-slow; got != first {
				t.Fatalf("slow request: %q, want the old generation's %q", got, first)
			}
			waitFor(t, "generation 1 to exit", func() (string, bool) {
				g, ok := generation(p.status(), 1)
				return g.State, ok && g.State == "exited" && g.Exit == "exited with status 0"
			})
			t.Logf("%s: slow request answered by %q, new requests by %q", m.name, first, second)
		})
	}
}

// load runs HTTP clients until stop is closed and counts answers.
type load struct {
	ok, failed atomic.Int64
	// longest is the longest request, in nanoseconds.
	longest atomic.Int64
	mu      sync.Mutex
	errs    []string
	gens    map[string]bool
	wg      sync.WaitGroup
	stop    chan struct{}
}

// startLoad starts fresh clients that open a new connection per request
// and keepAlive clients that reuse theirs.
func startLoad(url string, fresh, keepAlive int) *load {
	l := &load{stop: make(chan struct{}), gens: map[string]bool{}}
	run := func(c *http.Client) {
		defer l.wg.Done()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			start := time.Now()
			body, err := get(c, url)
			for d := int64(time.Since(start)); ; {
				if old := l.longest.Load(); d <= old || l.longest.CompareAndSwap(old, d) {
					break
				}
			}
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 10 {
					kind := "fresh"
					if !c.Transport.(*http.Transport).DisableKeepAlives {
						kind = "keep-alive"
					}
					l.errs = append(l.errs, kind+": "+err.Error())
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
			l.mu.Lock()
			l.gens[body[strings.Index(body, "gen:"):]] = true
			l.mu.Unlock()
		}
	}
	for i := 0; i < fresh; i++ {
		l.wg.Add(1)
		go run(&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}})
	}
	for i := 0; i < keepAlive; i++ {
		l.wg.Add(1)
		go run(&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}})
	}
	return l
}

// halt stops the clients and waits for them.
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// finish halts the load and fails the test if any request failed.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.halt()
	if l.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed; first errors: %q", l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
}

// upgradeN upgrades the demo behind p n times, alternating SIGHUP and
// `tini-hot reload`, and waits after each until the new generation
// answers on url.
func upgradeN(t *testing.T, p *proc, url string, n int) {
	t.Helper()
	for i := 2; i <= n+1; i++ {
		if i%2 == 0 {
			p.signal(syscall.SIGHUP)
		} else if out, code := p.reload(); code != 0 {
			t.Fatalf("reload %d: status %d: %s", i, code, out)
		}
		want := fmt.Sprintf("gen:%d", i)
		waitFor(t, want+" to answer", func() (string, bool) {
			body, err := get(http.DefaultClient, url)
			return body, err == nil && strings.HasSuffix(body, want)
		})
	}
}

// TestZeroDrop upgrades 30 times under load, alternating SIGHUP and
// `tini-hot reload`: no request may fail and every generation answers.
func TestZeroDrop(t *testing.T) {
	const upgrades = 30
	p, url := startDemo(t, mode{"pid1", true})
	l := startLoad(url, 6, 4)
	start := time.Now()
	upgradeN(t, p, url, upgrades)
	took := time.Since(start)
	l.finish(t)
	st := p.status()
	if st.Reloads.Succeeded != upgrades || st.Reloads.Failed != 0 {
		t.Errorf("reload counters %+v, want %d succeeded", st.Reloads, upgrades)
	}
	for i := 2; i <= upgrades+1; i++ {
		if !l.gens[fmt.Sprintf("gen:%d", i)] {
			t.Errorf("no load request was answered by generation %d", i)
		}
	}
	t.Logf("%d upgrades in %v under load: %d requests, %d failed", upgrades, took.Round(time.Millisecond), l.ok.Load()+l.failed.Load(), l.failed.Load())
}

// TestFailedUpgrade: a new generation that exits 1 at start fails the
// reload with the reason; the old one serves on; a later reload works.
func TestFailedUpgrade(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail")
	addr := freeAddr(t)
	url := "http://" + addr + "/"
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, []string{"FAIL=" + flag},
		"-l", "tcp://"+addr, "--ready", "notify", "--", "sh", "-c", `[ -e "$FAIL" ] && exit 1; exec "$0"`, demo)
	first := waitFor(t, "the demo", func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil
	})
	l := startLoad(url, 2, 2)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := p.reload()
	if code == 0 || !strings.Contains(out, "generation 2 exited with status 1 before ready") {
		t.Fatalf("failing reload: status %d, %q; want non-zero and the reason", code, out)
	}
	if body, err := get(http.DefaultClient, url); err != nil || body != first {
		t.Fatalf("after the failed reload: %q, %v; want %q", body, err, first)
	}
	os.Remove(flag)
	if out, code := p.reload(); code != 0 || out != "generation 3 serving" {
		t.Fatalf("second reload: status %d, %q", code, out)
	}
	l.finish(t)
	st := p.status()
	if g, _ := generation(st, 2); g.State != "failed" {
		t.Errorf("generation 2: %+v, want failed", g)
	}
	if st.Reloads.Failed != 1 || st.Reloads.Succeeded != 1 {
		t.Errorf("counters %+v", st.Reloads)
	}
}

// TestFailedUpgradeAnswers: a new generation that serves but never passes
// its readiness check fails its reload at --ready-timeout. Meanwhile it
// took requests from the shared socket (--shared-sockets: steered, a
// generation gets none before it is ready), as every application does
// before it is ready; they are answered (it gets the drain signal, not
// SIGKILL), and no client of either generation fails.
func TestFailedUpgradeAnswers(t *testing.T) {
	dir := t.TempDir()
	check := filepath.Join(dir, "ready.sh")
	if err := os.WriteFile(check, []byte("#!/bin/sh\n[ \"$TINI_HOT_GENERATION\" = 1 ]\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	url := "http://" + addr + "/"
	p := startInit(t, th(), mode{"pid1", true}, nil,
		"-l", "tcp://"+addr, "--shared-sockets", "--ready", "exec:"+check, "--ready-timeout", "5s", "--", demo)
	p.waitGen(1, "serving")
	l := startLoad(url, 4, 2)
	done := make(chan string, 1)
	go func() { out, code := p.reload(); done <- fmt.Sprintf("%d %s", code, out) }()
	p.waitGen(2, "starting")
	// Slow requests (longer than the ready timeout) until generation 2
	// takes one; generation 1 answers the others.
	var onGen2 <-chan string
	var onGen1 []<-chan string
	for i := 0; onGen2 == nil; i++ {
		if i == 40 {
			t.Fatalf("generation 2 took none of 40 slow requests; status: %+v", p.status())
		}
		answer, line := slowRequest(t, url, 7, p.stderr.String)
		if strings.Contains(line, "generation 2:") {
			onGen2 = answer
		} else {
			onGen1 = append(onGen1, answer)
		}
	}
	if got := <-done; !strings.HasPrefix(got, "1 ") || !strings.Contains(got, "generation 2 not ready after 5s") {
		t.Fatalf("reload: %q, want status 1 and the reason", got)
	}
	if got := <-onGen2; !strings.HasSuffix(got, "gen:2") {
		t.Fatalf("the slow request generation 2 took: %q, want its answer", got)
	}
	for _, c := range onGen1 {
		if got := <-c; !strings.HasSuffix(got, "gen:1") {
			t.Fatalf("a slow request on generation 1: %q", got)
		}
	}
	g := waitFor(t, "generation 2 to end", func() (upgrade.GenerationStatus, bool) {
		g, _ := generation(p.status(), 2)
		return g, g.Exit != ""
	})
	if g.State != "failed" || g.Exit != "exited with status 0" {
		t.Errorf("generation 2: %+v, want failed, and drained (status 0), not killed", g)
	}
	l.finish(t)
	st := p.status()
	if st.Reloads.Failed != 1 || st.Reloads.Succeeded != 0 {
		t.Errorf("counters %+v", st.Reloads)
	}
	t.Logf("generation 2 answered its slow request after failing; load: %d requests, %d failed", l.ok.Load()+l.failed.Load(), l.failed.Load())
}

// TestStubbornGeneration: an old generation that ignores the drain signal
// and has a setsid grandchild is killed, whole tree, at the drain
// deadline.
func TestStubbornGeneration(t *testing.T) {
	dir := t.TempDir()
	script := `trap "" TERM; setsid sh -c 'trap "" TERM; echo $$ > "$OUT.$TINI_HOT_GENERATION"; exec sleep 1000' & while :; do sleep 1; done`
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"subreaper", false}, []string{"OUT=" + filepath.Join(dir, "gc")},
		"--ready", "delay:100ms", "--drain-timeout", "1s", "--", "sh", "-c", script)
	gc1 := filepath.Join(dir, "gc.1")
	waitFor(t, "the grandchild", func() (string, bool) { return "", readFile(gc1) != "" })
	waitFor(t, "generation 1 serving", func() (string, bool) {
		g, _ := generation(p.status(), 1)
		return "", g.State == "serving"
	})
	main1, _ := generation(p.status(), 1)
	var gc int
	fmt.Sscan(readFile(gc1), &gc)
	start := time.Now()
	if out, code := p.reload(); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	waitFor(t, "generation 1 and its setsid grandchild to be killed", func() (string, bool) {
		return "", !alive(main1.Pid) && !alive(gc)
	})
	took := time.Since(start)
	if took < time.Second {
		t.Errorf("killed after %v, before the 1s drain deadline", took)
	}
	if g, _ := generation(p.status(), 1); g.Exit != "killed by signal 9 (killed)" {
		t.Errorf("generation 1 ended: %q", g.Exit)
	}
	t.Logf("stubborn generation and setsid grandchild gone %v after the reload", took.Round(time.Millisecond))
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestUnixListener hands a unix socket over across a reload and removes
// its file at exit.
func TestUnixListener(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, nil,
		"-l", "unix://"+sock, "--ready", "notify", "--", demo)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	first := waitFor(t, "the demo on the unix socket", func() (string, bool) {
		body, err := get(c, "http://unix/")
		return body, err == nil
	})
	// Until the old generation has drained it may still accept a
	// connection; once reload --wait-drained returns, only the new one
	// is there.
	if out, code := p.reload("--wait-drained"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	if body, err := get(c, "http://unix/"); err != nil || body == first || !strings.HasSuffix(body, "gen:2") {
		t.Fatalf("after reload: %q, %v", body, err)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left: %v", err)
	}
}

func init() { registerHelper("udp", helperUDP) }

// helperUDP answers every datagram on fd 3 with "gen:N", after READY=1.
func helperUDP() int {
	f := os.NewFile(3, "udp")
	pc, err := net.FilePacketConn(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_ = hotapp.Notify("READY=1")
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	}()
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return 1
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s gen:%s", buf[:n], os.Getenv("TINI_HOT_GENERATION"))), from)
	}
}

// TestUDPListener hands a UDP socket over across a reload.
func TestUDPListener(t *testing.T) {
	addr := freeAddr(t)
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, nil,
		append([]string{"-l", "udp://" + addr, "--ready", "notify", "--"}, helperCmd("udp")...)...)
	ask := func() (string, bool) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return "", false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = c.Write([]byte("ping"))
		b := make([]byte, 64)
		n, err := c.Read(b)
		return string(b[:n]), err == nil
	}
	if got := waitFor(t, "a UDP answer", ask); got != "ping gen:1" {
		t.Fatalf("answer %q", got)
	}
	if out, code := p.reload("--wait-drained"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	if got := waitFor(t, "a UDP answer", ask); got != "ping gen:2" {
		t.Fatalf("after reload: %q, want generation 2", got)
	}
}

// TestExecReadiness: with --ready exec:CMD a new generation serves only
// once CMD exits 0; CMD gets the generation's pid and number.
func TestExecReadiness(t *testing.T) {
	dir := t.TempDir()
	check := filepath.Join(dir, "ready.sh")
	script := "#!/bin/sh\necho \"$TINI_HOT_GENERATION $TINI_HOT_PID\" >> \"$DIR/checks\"\n[ -e \"$DIR/ready.$TINI_HOT_GENERATION\" ]\n"
	if err := os.WriteFile(check, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready.1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, []string{"DIR=" + dir},
		"-l", "tcp://"+addr, "--ready", "exec:"+check, "--", demo)
	waitFor(t, "generation 1 serving", func() (string, bool) {
		g, _ := generation(p.status(), 1)
		return "", g.State == "serving"
	})
	done := make(chan string, 1)
	go func() { out, code := p.reload(); done <- fmt.Sprintf("%d %s", code, out) }()
	// The check runs and fails until ready.2 exists.
	waitFor(t, "two failed checks of generation 2", func() (int, bool) {
		n := 0
		for _, line := range strings.Split(readFile(filepath.Join(dir, "checks")), "\n") {
			if strings.HasPrefix(line, "2 ") {
				n++
			}
		}
		return n, n >= 2
	})
	if g, _ := generation(p.status(), 2); g.State != "starting" {
		t.Fatalf("generation 2 is %s before its check passed", g.State)
	}
	// (Generation 2 already accepts from the shared socket; what waits
	// for the check is the drain of generation 1.)
	if g, _ := generation(p.status(), 1); g.State != "serving" {
		t.Fatalf("generation 1 is %s before generation 2's check passed", g.State)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready.2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "0 generation 2 serving" {
		t.Fatalf("reload: %s", got)
	}
	g, _ := generation(p.status(), 2)
	if !strings.Contains(readFile(filepath.Join(dir, "checks")), fmt.Sprintf("2 %d\n", g.Pid)) {
		t.Errorf("checks did not get generation 2's pid %d:\n%s", g.Pid, readFile(filepath.Join(dir, "checks")))
	}
}

// TestDemoScript runs the README's first command, examples/demo.sh: the
// slow request is answered by generation 1's pid, the request after the
// reload by generation 2's, and the script cleans up after itself.
func TestDemoScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		need(t, "curl (Debian package curl), which examples/demo.sh uses")
	}
	cmd := exec.Command("sh", "examples/demo.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "SLOW=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh examples/demo.sh: %v\n%s", err, out)
	}
	var old, new string
	for _, line := range strings.Split(string(out), "\n") {
		if _, after, ok := strings.Cut(line, "slow request, began before the reload: "); ok {
			old = after
		}
		if _, after, ok := strings.Cut(line, "new request, after the reload:"); ok {
			new = strings.TrimSpace(after)
		}
	}
	if !strings.HasSuffix(old, "gen:1") || !strings.HasSuffix(new, "gen:2") || strings.Fields(old)[0] == strings.Fields(new)[0] {
		t.Fatalf("old %q, new %q; output:\n%s", old, new, out)
	}
	if !strings.Contains(string(out), "tini-hot exited with status 0") {
		t.Errorf("tini-hot did not exit 0:\n%s", out)
	}
	t.Logf("demo: slow request %q, new request %q", old, new)
}
