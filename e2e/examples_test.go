package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lateRequest: a request sent on a connection that serving generation n
// accepted before its drain began, and sent only after, is answered by
// generation n. A drain that closes every connection with no request in
// flight (the Node example did) loses it: the request was on its way.
func lateRequest(t *testing.T, p *proc, url string, n int) {
	t.Helper()
	g := p.waitGen(n, "serving")
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(addr)
	waitFor(t, "the connection to be accepted", func() (int, bool) {
		q := acceptQueue(t, port)
		return q, q == 0
	})
	if out, code := p.reload(); code != 0 {
		t.Fatalf("reload: status %d: %s", code, out)
	}
	draining := fmt.Sprintf("app: pid %d: draining", g.Pid)
	waitFor(t, "generation "+strconv.Itoa(n)+" to drain", func() (string, bool) {
		return draining, strings.Contains(p.stderr.String(), draining)
	})
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("GET /?late HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")); err != nil {
		t.Fatalf("request after the drain began, on a connection accepted before: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request after the drain began, on a connection accepted before: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("ospid:%d gen:%d", g.Pid, n); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
		t.Fatalf("late request: %s %q, want 200 %q", resp.Status, body, want)
	}
}

// acceptQueue is how many connections wait to be accepted on the TCP
// listeners of port: rx_queue of their LISTEN lines in /proc/net/tcp and
// tcp6.
func acceptQueue(t *testing.T, port string) int {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 5 || fields[3] != "0A" || !strings.HasSuffix(fields[1], want) {
				continue
			}
			_, rx, _ := strings.Cut(fields[4], ":")
			q, err := strconv.ParseInt(rx, 16, 64)
			if err != nil {
				t.Fatalf("%s: %q", f, line)
			}
			n += int(q)
		}
	}
	return n
}

// TestExamples runs each example of examples/ beyond Go as its comment
// says to, under load: a slow request that began before the first reload
// is answered by the generation that took it, 10 reloads (SIGHUP and
// `tini-hot reload` in turn) fail no request, every old generation exits
// by itself when told to drain (none is killed at --drain-timeout), even
// with a connection open that never sends a request, a request sent on
// a connection accepted before a drain began is answered (lateRequest),
// and SIGTERM ends the container with status 0.
func TestExamples(t *testing.T) {
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range []struct {
		name     string
		command  []string
		programs []string // what it needs, and the Debian packages they come from
		packages string
		// idle: a connection that never sends a request must not hold
		// the drain (gunicorn's sync workers wait for it until
		// --graceful-timeout).
		idle bool
	}{
		{"python", []string{"python3", filepath.Join(examples, "python/app.py")}, []string{"python3"}, "python3", true},
		{"gunicorn", []string{"gunicorn", "--chdir", filepath.Join(examples, "gunicorn"), "-w", "2", "app:app"}, []string{"gunicorn"}, "gunicorn", false},
		{"node", []string{"node", filepath.Join(examples, "node/server.js")}, []string{"node", "systemd-notify"}, "nodejs and systemd", true},
	} {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			requireNamespaces(t)
			for _, prog := range ex.programs {
				if _, err := exec.LookPath(prog); err != nil {
					need(t, "%s (Debian packages %s)", prog, ex.packages)
				}
			}
			p, url := startServer(t, mode{"pid1", true}, ex.command)
			if ex.idle {
				// Accepted by generation 1 and never used, as a client's
				// spare connection is (Go's transport keeps one): it
				// must not keep generation 1 from draining.
				c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			l := startLoad(url, 4, 4)
			slow, _ := slowRequest(t, url, 3, p.stderr.String)
			const reloads = 10
			upgradeN(t, p, url, reloads)
			if body := <-slow; !strings.HasSuffix(body, "gen:1") {
				t.Errorf("slow request that began before the reload: %q, want generation 1's answer", body)
			}
			st := settled(t, p)
			l.finish(t)
			if st.Reloads.Succeeded != reloads {
				t.Errorf("reloads: %+v, want %d succeeded", st.Reloads, reloads)
			}
			for _, g := range st.Generations {
				if g.State == "exited" && g.Exit != "exited with status 0" {
					t.Errorf("generation %d did not drain by itself: %s %s", g.Number, g.Exit, g.Reason)
				}
			}
			if ex.idle {
				lateRequest(t, p, url, reloads+1)
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
			t.Logf("%s: %d reloads under load, %d requests, %d failed, longest %v",
				ex.name, reloads, l.ok.Load()+l.failed.Load(), l.failed.Load(), time.Duration(l.longest.Load()).Round(time.Millisecond))
		})
	}
}
