package listen

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/freeport"
	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// guarded binds spec and guards it, logging to the returned buffer.
func guarded(t *testing.T, spec string) (*Listener, *Guarded, *syncbuf.Buffer) {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Bind(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var out syncbuf.Buffer
	g, err := Guard([]*Listener{l}, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return l, g, &out
}

// dupFd is a generation's copy of l's socket.
func dupFd(t *testing.T, l *Listener) int {
	t.Helper()
	fd, err := unix.Dup(l.Fd())
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// shutDown does what a generation's runtime may do to its copy of the
// shared socket.
func shutDown(t *testing.T, l *Listener) {
	t.Helper()
	dup := dupFd(t, l)
	defer unix.Close(dup)
	if err := unix.Shutdown(dup, unix.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
}

// within polls cond for up to 10 s.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestGuardRelistens: a generation's shutdown(2) of the shared TCP socket
// stops it for everyone; the guard makes it listen again on the same
// address, and says so.
func TestGuardRelistens(t *testing.T) {
	// Unguarded, the socket stays shut: what the guard is for.
	s, _ := Parse("tcp://" + freeAddr(t))
	bare, err := Bind(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	shutDown(t, bare)
	if c, err := net.DialTimeout("tcp", s.Address, time.Second); err == nil {
		c.Close()
		t.Fatal("an unguarded socket still accepts after shutdown(2)")
	}

	addr := freeAddr(t)
	l, g, out := guarded(t, "web=tcp://"+addr)
	for round := 1; round <= 3; round++ {
		shutDown(t, l)
		// The warning is the guard's last step: the socket listens, and
		// is counted, before it is written.
		within(t, "the warning", func() bool { return strings.Count(out.String(), "listening again") >= round })
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		c.Close()
		if !l.Listening() || l.Restored() != int64(round) {
			t.Fatalf("round %d: listening %v, restored %d times", round, l.Listening(), l.Restored())
		}
		if n := strings.Count(out.String(), "listening again"); n != round || g.wakes.Load() != int64(round) {
			t.Fatalf("round %d: %d wake-ups, %d warnings in the log:\n%s", round, g.wakes.Load(), n, out)
		}
	}
	if !strings.Contains(out.String(), "listener=web") || !strings.Contains(out.String(), "level=WARN") {
		t.Errorf("log:\n%s", out)
	}
}

// TestGuardPortZero: a port the kernel chose is given up with the
// listening state; the socket listens again, elsewhere, and the log says
// so as an error.
func TestGuardPortZero(t *testing.T) {
	l, _, out := guarded(t, "tcp://127.0.0.1:0")
	shutDown(t, l)
	within(t, "the error", func() bool { return strings.Contains(out.String(), "on another port") })
	if !l.Listening() || !strings.Contains(out.String(), "level=ERROR") {
		t.Errorf("listening %v; log:\n%s", l.Listening(), out)
	}
}

// TestGuardUnix: a unix socket cannot listen again; the guard says so
// once, as an error naming it.
func TestGuardUnix(t *testing.T) {
	l, g, out := guarded(t, "app=unix://"+filepath.Join(t.TempDir(), "app.sock"))
	if !l.Listening() {
		t.Fatal("a unix socket bound is not listening")
	}
	shutDown(t, l)
	within(t, "the error", func() bool { return strings.Contains(out.String(), "cannot listen again") })
	time.Sleep(50 * time.Millisecond) // a repeat would come at once
	if l.Listening() || l.Restored() != 0 {
		t.Errorf("a unix socket shut down: listening %v, restored %d times", l.Listening(), l.Restored())
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || g.wakes.Load() != 1 || !strings.Contains(out.String(), "listener=app") {
		t.Errorf("%d wake-ups; log:\n%s", g.wakes.Load(), out)
	}
}

// TestGuardQuiet: connections do not wake the guard, and Close ends it.
func TestGuardQuiet(t *testing.T) {
	addr := freeAddr(t)
	l, g, out := guarded(t, "tcp://"+addr)
	// Accepted by a generation's copy, or left in the queue: neither
	// wakes the guard.
	ln, err := net.FileListener(os.NewFile(uintptr(dupFd(t, l)), "generation"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range 50 {
		if i%2 == 0 {
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Close()
				}
			}()
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	g.Close()
	if !l.Listening() || out.String() != "" || g.wakes.Load() != 0 {
		t.Errorf("listening %v, %d wake-ups; log:\n%s", l.Listening(), g.wakes.Load(), out)
	}
}
