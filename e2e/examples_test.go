package e2e

import (
	"net"
	"net/http"
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
		name, needs string
		command     []string
		// idle: a connection that never sends a request must not hold
		// the drain (gunicorn's sync workers wait for it until
		// --graceful-timeout).
		idle bool
	}{
		{"python", "python3", []string{"python3", filepath.Join(examples, "python/app.py")}, true},
		{"gunicorn", "gunicorn (Debian package gunicorn)", []string{"gunicorn", "--chdir", filepath.Join(examples, "gunicorn"), "-w", "2", "app:app"}, false},
		{"node", "node (Debian package nodejs) and systemd-notify (Debian package systemd)", []string{"node", filepath.Join(examples, "node/server.js")}, true},
	} {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			requireNamespaces(t)
			for _, prog := range []string{ex.command[0], "systemd-notify"} {
				if _, err := exec.LookPath(prog); err != nil && (prog != "systemd-notify" || ex.name == "node") {
					need(t, "%s", ex.needs)
				}
			}
			addr := freeAddr(t)
			url := "http://" + addr + "/"
			args := append([]string{"-l", "http=tcp://" + addr, "--ready", "notify", "--"}, ex.command...)
			p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, nil, args...)
			waitFor(t, ex.name+" to answer", func() (string, bool) {
				body, err := get(http.DefaultClient, url)
				return body, err == nil
			})
			if ex.idle {
				// Accepted by generation 1 and never used, as a client's
				// spare connection is (Go's transport keeps one): it
				// must not keep generation 1 from draining.
				c, err := net.Dial("tcp", addr)
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
