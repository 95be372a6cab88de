package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/hotapp"
)

// sockets are the two ways tini-hot hands its TCP and UDP sockets over:
// steered (a socket per generation, the default) and shared
// (--shared-sockets, the control).
var sockets = []struct {
	name  string
	flags []string
}{
	{"steered", nil},
	{"shared", []string{"--shared-sockets"}},
}

// bySockets runs run once per way of handing sockets over, in parallel,
// and logs what each returned side by side once both are done: the
// steered figures beside their control.
func bySockets(t *testing.T, title string, run func(t *testing.T, name string, flags []string) string) {
	var (
		mu      sync.Mutex
		results = map[string]string{}
	)
	t.Cleanup(func() { t.Logf("%s: %v", title, results) })
	for _, sm := range sockets {
		t.Run(sm.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, sm.name, sm.flags)
			mu.Lock()
			results[sm.name] = res
			mu.Unlock()
		})
	}
}

func init() { registerHelper("escaper", helperEscaper) }

// helperEscaper is a hotapp server that answers "gen:N". Generation 1
// also starts an escaped process: setsid, with no environment (so that
// nothing ties it to its generation), holding the listener's socket, fd
// 3, which accepts every connection it gets and resets it unanswered. It
// outlives its generation, until the container ends.
func helperEscaper() int {
	if os.Getenv("ESCAPER_THIEF") == "1" {
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "thief:", err)
			return 1
		}
		for {
			c, err := l.Accept()
			if err != nil {
				// EMFILE, a socket shut down under it: try again, without
				// spinning on a CPU the test's load needs.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	if os.Getenv("TINI_HOT_GENERATION") == "1" {
		thief := exec.Command(os.Args[0])
		thief.Env = []string{helperEnv + "=escaper", "ESCAPER_THIEF=1"}
		thief.ExtraFiles = []*os.File{os.NewFile(3, "listener")}
		thief.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := thief.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "thief:", err)
			return 1
		}
		if err := os.WriteFile(os.Getenv("THIEF_PID"), []byte(strconv.Itoa(thief.Process.Pid)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ls := oneListener()
	if ls == nil {
		return 2
	}
	return serveGen(ls, hotapp.Options{})
}

// TestEscapedProcess: a process that keeps an old generation's socket
// and never closes it gets no new connection once the next generation
// serves, and its slot is not given to a later generation. With shared
// sockets (the control), it takes part of them and resets them.
func TestEscapedProcess(t *testing.T) {
	for _, sm := range sockets {
		t.Run(sm.name, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			pidFile := t.TempDir() + "/thief"
			args := append(append([]string{"-l", "http=tcp://" + addr, "--ready", "notify"}, sm.flags...), "--")
			p := startInit(t, th(), mode{"pid1", true}, []string{"THIEF_PID=" + pidFile}, append(args, helperCmd("escaper")...)...)
			p.waitGen(1, "serving")
			// Its pid in the namespace, and so its host pid.
			nsPid := waitFor(t, "the escaped process", func() (string, bool) {
				pid := strings.TrimSpace(readFile(pidFile))
				_, err := strconv.Atoi(pid)
				return pid, err == nil
			})
			thief := waitFor(t, "the escaped process's host pid", func() (int, bool) {
				for pid := range descendants(p.cmd.Process.Pid) {
					if f := strings.Fields(statusField(t, pid, "NSpid")); len(f) == 2 && f[1] == nsPid {
						return pid, true
					}
				}
				return 0, false
			})
			if out, code := p.reloadWithin(time.Minute, "--wait-drained"); code != 0 {
				t.Fatalf("reload: %d %s", code, out)
			}
			if !alive(thief) {
				t.Fatal("the escaped process did not outlive its generation")
			}
			fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			failed := 0
			for range 100 {
				if body, err := get(fresh, "http://"+addr+"/"); err != nil || body != "gen:2" {
					if failed == 0 {
						t.Logf("first failure: %q, %v", body, err)
					}
					failed++
				}
			}
			t.Logf("%s sockets: %d of 100 new connections after the handover failed (the escaped process took them)", sm.name, failed)
			if sm.name == "shared" {
				if failed == 0 {
					t.Error("the control lost nothing: the escaped process never held the socket")
				}
				return
			}
			if failed != 0 {
				t.Fatalf("%d of 100 new connections failed, want 0", failed)
			}
			// Slot 0 is still held: the next generation gets another.
			if out, code := p.reloadWithin(time.Minute); code != 0 {
				t.Fatalf("second reload: %d %s", code, out)
			}
			st := p.status()
			g3, _ := generation(st, 3)
			if g3.Slot == nil || *g3.Slot == 0 {
				t.Fatalf("generation 3 has slot %v, want one the escaped process does not hold", g3.Slot)
			}
			if len(st.Listeners) != 1 || st.Listeners[0].Mode != "steered" {
				t.Fatalf("listeners %+v, want one steered", st.Listeners)
			}
			for range 20 {
				if body, err := get(fresh, "http://"+addr+"/"); err != nil || body != "gen:3" {
					t.Fatalf("after the second reload: %q, %v", body, err)
				}
			}
		})
	}
}

func init() { registerHelper("slowaccept", helperSlowAccept) }

// slowListener accepts one connection every interval.
type slowListener struct {
	net.Listener
	interval time.Duration
}

func (l slowListener) Accept() (net.Conn, error) {
	time.Sleep(l.interval)
	return l.Listener.Accept()
}

// helperSlowAccept answers "gen:N"; generation 1 accepts one connection
// every 100 ms, and writes "queued" to $MARK once it has seen
// $SLOW_REQUESTS connections wait (it counts the requests it answers).
func helperSlowAccept() int {
	ls := oneListener()
	if ls == nil {
		return 2
	}
	if os.Getenv("TINI_HOT_GENERATION") == "1" {
		ls[0].Listener = slowListener{ls[0].Listener, 100 * time.Millisecond}
	}
	return serveGen(ls, hotapp.Options{})
}

// TestDrainWaitsForQueue: connections already queued to the old
// generation's socket at the handover are its to accept: it gets the
// drain signal only once they are taken, and none is reset. Its slow
// accept loop takes 100 ms per connection.
func TestDrainWaitsForQueue(t *testing.T) {
	addr := freeAddr(t)
	p := startInit(t, th(), mode{"pid1", true}, nil,
		append([]string{"-l", "http=tcp://" + addr, "--ready", "notify", "--"}, helperCmd("slowaccept")...)...)
	p.waitGen(1, "serving")
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[string]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			body, err := get(c, "http://"+addr+"/")
			if err != nil {
				body = err.Error()
			}
			mu.Lock()
			answers[body]++
			mu.Unlock()
		}()
	}
	// Most of them wait in generation 1's accept queue.
	waitFor(t, "connections queued to generation 1", func() (int, bool) {
		g, _ := generation(p.status(), 1)
		return g.Queued, g.Queued >= n/2
	})
	if out, code := p.reloadWithin(time.Minute, "--wait-drained"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	wg.Wait()
	if answers["gen:1"] != n {
		t.Fatalf("answers %v, want all %d from generation 1", answers, n)
	}
	g1, _ := generation(p.status(), 1)
	if g1.DrainSignal == nil {
		t.Fatal("generation 1 never got the drain signal")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestGunicornReloads: 40 reloads of Debian's gunicorn under load.
// gunicorn's workers that are still booting when their master gets
// SIGTERM miss it and go on accepting from the socket they share with
// every generation, until gunicorn kills them with connections in hand:
// shared sockets (the control) lose requests that way, steered ones
// must not.
func TestGunicornReloads(t *testing.T) {
	gunicorn, testdata := needGunicorn(t)
	bySockets(t, "gunicorn, 40 reloads under load", func(t *testing.T, name string, flags []string) string {
		addr := freeAddr(t)
		url := "http://" + addr + "/"
		args := append(append([]string{"-l", "http=tcp://" + addr, "--ready", "notify"}, flags...),
			"--", gunicorn, "--chdir", testdata, "-w", "2", "wsgiapp:app")
		p := startInit(t, initBin{"tini-hot", tiniHot}, mode{"pid1", true}, nil, args...)
		waitFor(t, "gunicorn to answer", func() (string, bool) {
			body, err := get(http.DefaultClient, url)
			return body, err == nil
		})
		l := startLoad(url, 4, 4)
		for i := 2; i <= 41; i++ {
			out, code := p.reloadWithin(2 * time.Minute)
			if code != 0 || out != fmt.Sprintf("generation %d serving", i) {
				l.halt()
				t.Fatalf("reload %d: status %d: %s", i, code, out)
			}
		}
		settled(t, p)
		l.halt()
		total, failed := l.ok.Load()+l.failed.Load(), l.failed.Load()
		t.Logf("%s sockets: 40 reloads, %d requests, %d failed; first errors: %q", name, total, failed, l.errs)
		if name == "steered" && failed != 0 {
			t.Fatalf("%d of %d requests failed, want 0", failed, total)
		}
		return fmt.Sprintf("%d requests, %d failed", total, failed)
	})
}
