package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
)

// TestSignalInStartWindow: a signal that arrives once tini-hot's
// initialisers have run but before main has subscribed never ends the
// container with status 2. aa4f58b subscribed only in main, after its
// sockets were bound: the Go runtime, finding nobody subscribed, exited 2
// on SIGTERM, SIGHUP, SIGINT and SIGQUIT (4 of 4 here). Now they are held
// from an initialiser (internal/sighold) and handled once the supervisor
// runs: SIGTERM is a clean shutdown, SIGHUP a reload, SIGINT and SIGQUIT
// are forwarded to the application, as later.
//
// The window is made wide and certain with strace: tini-hot's first
// bind(2) (the Go runtime's probe of IPv6, on the way to binding its
// sockets, which it does before subscribing) is delayed by 2 s at its
// entry, and the signal is sent while strace shows tini-hot inside it.
// The application is sleep, which dies of a forwarded signal, or for
// SIGHUP the demo, whose generation 2 must answer.
func TestSignalInStartWindow(t *testing.T) {
	straceBin, err := exec.LookPath("strace")
	if err != nil {
		need(t, "strace (Debian package strace)")
	}
	requireNamespaces(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(reaper.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			trace := filepath.Join(t.TempDir(), "strace")
			addr := freeAddr(t)
			app := []string{"sleep", "60"}
			if sig == syscall.SIGHUP {
				app = []string{demo}
			}
			p := startInit(t, initBin{"strace", straceBin}, mode{"traced", false}, nil,
				append([]string{"-f", "-o", trace, "-e", "trace=bind", "-e", "inject=bind:delay_enter=2000000:when=1",
					"unshare", "-p", "-f", "--kill-child", "--mount-proc",
					tiniHot, "-l", "http=tcp://" + addr, "--ready", "notify", "--"}, app...)...)
			pid := waitFor(t, "tini-hot inside bind(2)", func() (int, bool) {
				if !strings.Contains(readFile(trace), "bind(") {
					return 0, false
				}
				for pid := range descendants(p.cmd.Process.Pid) {
					if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.HasPrefix(string(b), tiniHot+"\x00") {
						return pid, true
					}
				}
				return 0, false
			})
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatal(err)
			}
			want := 128 + int(sig) // forwarded (SIGTERM: drained): sleep dies of it
			if sig == syscall.SIGHUP {
				// A reload once the first generation is ready: the
				// demo answers from generation 2.
				url := "http://" + addr + "/"
				waitForWithin(t, time.Minute, "generation 2 to answer", func() (string, bool) {
					body, err := get(http.DefaultClient, url)
					return body, err == nil && strings.HasSuffix(body, "gen:2")
				})
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				want = 0 // the demo drains and exits 0
			}
			if code := p.wait(); code != want {
				t.Fatalf("%v in the start window: exit %d, want %d", sig, code, want)
			}
		})
	}
}
