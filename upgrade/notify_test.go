package upgrade

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseNotice(t *testing.T) {
	n := parseNotice([]byte("STATUS=warming up\nREADY=1\nMAINPID=3\nSTATUS=serving\n"))
	if !n.ready || n.stopping || n.status != "serving" {
		t.Errorf("parseNotice = %+v", n)
	}
	if n := parseNotice([]byte("READY=10\nSTOPPING=1")); n.ready || !n.stopping {
		t.Errorf("parseNotice = %+v", n)
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add([]byte("READY=1\nSTATUS=ok"))
	f.Add([]byte("\xff\nSTATUS=\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := parseNotice(b)
		if n.ready && !slices.Contains(strings.Split(string(b), "\n"), notifyReady) {
			t.Fatalf("ready without READY=1 in %q", b)
		}
	})
}

// serveNotify serves a new notify socket for generation gen until the
// test ends.
func serveNotify(t *testing.T, gen int) (*notifySocket, <-chan notifyEvent) {
	t.Helper()
	s, err := newNotifySocket("tini-hot-test-" + t.Name() + "-" + time.Now().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan notifyEvent, 1)
	done := make(chan struct{})
	go s.Serve(gen, out, done)
	t.Cleanup(func() { close(done); s.Close() })
	return s, out
}

// TestNotifySocket sends READY=1 the way sd_notify does and checks that
// the sender's pid comes with it.
func TestNotifySocket(t *testing.T) {
	s, out := serveNotify(t, 7)
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.Env(), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1\nSTATUS=up")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-out:
		if ev.gen != 7 || ev.sender != os.Getpid() || !ev.notice.ready || ev.notice.status != "up" {
			t.Errorf("event %+v, want generation 7 from pid %d", ev, os.Getpid())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notify event")
	}
}

// TestNotifyFdsDropped: fds attached to a notify message (sd_notify's
// FDSTORE=1, or any process of the generation) never land in tini-hot:
// the control buffer holds the sender's credentials and nothing more, so
// the kernel discards them.
func TestNotifyFdsDropped(t *testing.T) {
	s, out := serveNotify(t, 7)
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	to := &unix.SockaddrUnix{Name: s.Env()}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pipe, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(r.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	// fds counts this process's fds of the pipe sent: other fds may come
	// and go meanwhile (the runtime's, a previous test's closing).
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == pipe {
				n++
			}
		}
		return n
	}
	before := fds()
	rights := unix.UnixRights(int(r.Fd()), int(w.Fd()), int(r.Fd()), int(w.Fd()))
	for range 10 {
		if err := unix.Sendmsg(c, []byte("FDSTORE=1\nREADY=1"), rights, to, 0); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-out:
			if !ev.notice.ready || ev.sender != os.Getpid() {
				t.Fatalf("event %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no notify event")
		}
	}
	if after := fds(); after != before || before != 2 {
		t.Errorf("%d fds of the pipe after 10 messages carrying 4 of them each, %d before", after, before)
	}
}

// TestNotifyPaced: a sender in a loop is read at most notifyPaceCount
// datagrams per notifyPaceWindow, and loses nothing: its sends wait.
func TestNotifyPaced(t *testing.T) {
	s, out := serveNotify(t, 7)
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.Env(), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 3*notifyPaceCount + notifyPaceCount/2
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := c.Write([]byte("STATUS=" + strconv.Itoa(i))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	var first time.Time
	for i := range n {
		select {
		case ev := <-out:
			if ev.notice.status != strconv.Itoa(i) {
				t.Fatalf("datagram %d: STATUS=%s", i, ev.notice.status)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("datagram %d did not come", i)
		}
		if i == 0 {
			first = time.Now()
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// The out channel holds one event, so the first was taken before the
	// third was delivered, in the first window; the last is in the
	// fourth window at the earliest, which begins two full windows after
	// the second.
	if took := time.Since(first); took < 2*notifyPaceWindow {
		t.Fatalf("%d datagrams read in %v, want at least %v at %d per %v", n, took, 2*notifyPaceWindow, notifyPaceCount, notifyPaceWindow)
	}
}
