package upgrade

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tini-hot/tini-hot/internal/pace"
	"github.com/tini-hot/tini-hot/internal/wait"
)

func TestParseNotice(t *testing.T) {
	n := parseNotice([]byte("STATUS=warming up\nREADY=1\nMAINPID=3\nSTATUS=serving\n"))
	if !n.ready || n.stopping || n.status != "serving" {
		t.Errorf("parseNotice = %+v", n)
	}
	if n := parseNotice([]byte("READY=10\nSTOPPING=1")); n.ready || !n.stopping {
		t.Errorf("parseNotice = %+v", n)
	}
	// A barrier's message counts for nothing else (sd_notify(3)).
	if n := parseNotice([]byte("READY=1\nBARRIER=1\nSTATUS=x")); n != (notice{barrier: true}) {
		t.Errorf("parseNotice = %+v, want a barrier only", n)
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add([]byte("READY=1\nSTATUS=ok"))
	f.Add([]byte("\xff\nSTATUS=\xfe"))
	f.Add([]byte("BARRIER=1\nREADY=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := parseNotice(b)
		lines := strings.Split(string(b), "\n")
		if n.ready && !slices.Contains(lines, notifyReady) {
			t.Fatalf("ready without READY=1 in %q", b)
		}
		if n.barrier != slices.Contains(lines, notifyBarrier) || n.barrier && n != (notice{barrier: true}) {
			t.Fatalf("parseNotice(%q) = %+v", b, n)
		}
	})
}

// serveNotify serves a new notify socket for generation gen until the
// test ends, and returns its events and a sender that sends a message to
// it as sd_pid_notify_with_fds does: from an unconnected socket, with any
// fds attached.
func serveNotify(t *testing.T, gen int) (<-chan notifyEvent, func(msg string, fds ...int) error) {
	t.Helper()
	s, err := newNotifySocket("tini-hot-test-" + t.Name() + "-" + time.Now().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan notifyEvent, 1)
	done := make(chan struct{})
	go s.Serve(gen, out, done)
	t.Cleanup(func() { close(done); s.Close() })
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c) })
	to := &unix.SockaddrUnix{Name: s.Env()}
	return out, func(msg string, fds ...int) error {
		var rights []byte
		if len(fds) > 0 {
			rights = unix.UnixRights(fds...)
		}
		return unix.Sendmsg(c, []byte(msg), rights, to, 0)
	}
}

// TestNotifySocket sends READY=1 the way sd_notify does and checks that
// the sender's pid comes with it.
func TestNotifySocket(t *testing.T) {
	out, send := serveNotify(t, 7)
	if err := send("READY=1\nSTATUS=up"); err != nil {
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
// FDSTORE=1, or any process of the generation) never stay in tini-hot:
// the control buffer holds the sender's credentials and one fd, which is
// closed at once unless the message is a barrier, and the kernel
// discards the rest.
func TestNotifyFdsDropped(t *testing.T) {
	out, send := serveNotify(t, 7)
	r, w, fds := pipe(t)
	before := fds()
	for range 10 {
		if err := send("FDSTORE=1\nREADY=1", int(r.Fd()), int(w.Fd()), int(r.Fd()), int(w.Fd())); err != nil {
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

// pipe returns a pipe, closed at the test's end, and a function that
// counts this process's fds of it: other fds may come and go meanwhile
// (the runtime's, a previous test's closing).
func pipe(t *testing.T) (r, w *os.File, fds func() int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(r.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return r, w, func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == name {
				n++
			}
		}
		return n
	}
}

// TestNotifyFdsClosedWhenPaced: a generation that ends while its notify
// socket's reader waits for its pace leaves no fd in tini-hot: the fd
// the datagram read carried is closed. The reader used to return before
// it looked at the datagram's control data, and kept that fd for the
// container's life, one per generation ended so.
func TestNotifyFdsClosedWhenPaced(t *testing.T) {
	s, err := newNotifySocket("tini-hot-test-" + t.Name() + "-" + time.Now().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.pace = pace.Pacer{Count: 1, Window: time.Hour} // the second datagram waits
	out := make(chan notifyEvent, 1)
	done := make(chan struct{})
	returned := make(chan struct{})
	go func() { s.Serve(7, out, done); close(returned) }()
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	_, w, fds := pipe(t)
	send := func(msg string) {
		t.Helper()
		if err := unix.Sendmsg(c, []byte(msg), unix.UnixRights(int(w.Fd())), &unix.SockaddrUnix{Name: s.Env()}, 0); err != nil {
			t.Fatal(err)
		}
	}
	send("STATUS=1")
	(<-out).release()
	// The second, a barrier, whose fd tini-hot keeps until it is
	// handled: read, and held in the pace's wait.
	send("BARRIER=1")
	wait.Until(t, "the barrier to be read", func() bool { return s.held.Load() == 1 && s.queued() == 0 })
	close(done)
	<-returned
	if n := fds(); n != 2 {
		t.Fatalf("%d fds of the pipe after the reader returned, want 2 (the test's own)", n)
	}
}

// TestNotifyBarrier: BARRIER=1's fd comes with its event and stays open
// until the event is released, so that systemd-notify waits until its
// notices have been handled; any other fd it came with is closed at once.
func TestNotifyBarrier(t *testing.T) {
	out, send := serveNotify(t, 7)
	if err := send("READY=1"); err != nil {
		t.Fatal(err)
	}
	// As sd_notify_barrier: a pipe's write end goes with the barrier,
	// and the sender waits for its read end to hang up. A second pipe's
	// write end goes along, which the protocol forbids.
	var p, extra [2]int
	for _, fds := range []*[2]int{&p, &extra} {
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[0])
	}
	err := send("BARRIER=1", p[1], extra[1])
	unix.Close(p[1])
	unix.Close(extra[1])
	if err != nil {
		t.Fatal(err)
	}
	hungUp := func(fd int, wait time.Duration) bool {
		t.Helper()
		fds := []unix.PollFd{{Fd: int32(fd)}}
		n, err := unix.Poll(fds, int(wait/time.Millisecond))
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		return n == 1 && fds[0].Revents&unix.POLLHUP != 0
	}
	var evs []notifyEvent
	for range 2 {
		select {
		case ev := <-out:
			evs = append(evs, ev)
		case <-time.After(5 * time.Second):
			t.Fatal("no notify event")
		}
	}
	if !evs[0].notice.ready || evs[0].barrier != nil || !evs[1].notice.barrier || evs[1].barrier == nil {
		t.Fatalf("events %+v, want READY=1 then the barrier with its fd", evs)
	}
	if !hungUp(extra[0], 5*time.Second) {
		t.Error("the second fd of the barrier was kept")
	}
	if hungUp(p[0], 0) {
		t.Fatal("the barrier was released before its event was")
	}
	evs[1].release()
	if !hungUp(p[0], 5*time.Second) {
		t.Fatal("the barrier was not released with its event")
	}
}

// TestNotifyPaced: a sender in a loop is read at most notifyPaceCount
// datagrams per notifyPaceWindow, and loses nothing: its sends wait.
func TestNotifyPaced(t *testing.T) {
	out, send := serveNotify(t, 7)
	const n = 3*notifyPaceCount + notifyPaceCount/2
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := send("STATUS=" + strconv.Itoa(i)); err != nil {
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
