package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExamples runs each example of examples/ beyond Go as its comment
// says to, under load: a slow request that began before the first reload
// is answered by the generation that took it, 10 reloads (SIGHUP and
// `tini-hot reload` in turn) fail no request, every old generation exits
// by itself when told to drain (none is killed at --drain-timeout), even
// with a connection open that never sends a request, and SIGTERM ends the
// container with status 0.
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
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
			t.Logf("%s: %d reloads under load, %d requests, %d failed, longest %v",
				ex.name, reloads, l.ok.Load()+l.failed.Load(), l.failed.Load(), time.Duration(l.longest.Load()).Round(time.Millisecond))
		})
	}
}
