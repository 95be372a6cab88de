package reaper

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// idleEnv makes the test binary an idle Go program that has subscribed to
// no signal: it prints "ready", then echoes every byte of its stdin.
const idleEnv = "REAPER_TEST_IDLE"

func TestMain(m *testing.M) {
	if os.Getenv(idleEnv) != "" {
		os.Stdout.WriteString("ready\n")
		b := make([]byte, 1)
		for {
			if _, err := os.Stdin.Read(b); err != nil {
				os.Exit(0)
			}
			os.Stdout.Write(b)
		}
	}
	os.Exit(m.Run())
}

// idle is the test binary started as an idle Go program.
type idle struct {
	t   *testing.T
	pid int
	in  io.WriteCloser
	out *bufio.Reader
}

func startIdle(t *testing.T) *idle {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), idleEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &idle{t: t, pid: cmd.Process.Pid, in: in, out: bufio.NewReader(out)}
	// Reaped here, with wait4, which also sees a stop; never by cmd.Wait.
	_ = cmd.Process.Release()
	t.Cleanup(func() {
		_ = unix.Kill(p.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(p.pid, &ws, 0, nil)
		_ = in.Close()
	})
	if line, err := p.out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("idle program: %q, %v", line, err)
	}
	return p
}

// delivered waits until sig is no longer pending for the process: the
// kernel has handed it to one of its threads.
func (p *idle) delivered(sig unix.Signal) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.mask("ShdPnd")&(1<<(sig-1)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%v still pending for %d after 10 s", sig, p.pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// caught reports whether the program has a handler for sig (SigCgt).
func (p *idle) caught(sig unix.Signal) bool {
	p.t.Helper()
	return p.mask("SigCgt")&(1<<(sig-1)) != 0
}

// mask reads a signal mask of /proc/PID/status.
func (p *idle) mask(key string) uint64 {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		p.t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), key+":")
	m, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 16, 64)
	if err != nil {
		p.t.Fatalf("%s of %d: %v", key, p.pid, err)
	}
	return m
}

// echoes reports whether the program still answers on its pipe.
func (p *idle) echoes() bool {
	if _, err := p.in.Write([]byte{'x'}); err != nil {
		return false
	}
	b, err := p.out.ReadByte()
	return err == nil && b == 'x'
}

// TestUnsubscribed checks what [Essential] says of the Go runtime: a Go
// program that has not subscribed to a forwardable signal dies or stops of
// each essential one, and drops every other (New leaves those to the
// background).
func TestUnsubscribed(t *testing.T) {
	p := startIdle(t)
	for _, sig := range Forwardable() {
		if slices.Contains(Essential(), sig) {
			continue
		}
		if err := unix.Kill(p.pid, sig); err != nil {
			t.Fatal(err)
		}
		p.delivered(sig)
		if !p.echoes() {
			t.Fatalf("%v ended a Go program that had not subscribed to it: add it to Essential", SignalName(sig))
		}
	}
	// 34 is not forwardable: the runtime gives it no handler, subscribed
	// or not, and it ends the program.
	t.Run("34", func(t *testing.T) {
		p := startIdle(t)
		if err := unix.Kill(p.pid, 34); err != nil {
			t.Fatal(err)
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(p.pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		if !ws.Signaled() || ws.Signal() != 34 {
			t.Fatalf("signal 34: wait status %#x, want killed by it (if the Go runtime catches it now, make it forwardable)", ws)
		}
	})
	for _, sig := range Essential() {
		if !slices.Contains(Forwardable(), sig) {
			t.Errorf("%v is essential but not forwardable", SignalName(sig))
		}
		t.Run(SignalName(sig), func(t *testing.T) {
			p := startIdle(t)
			if sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU {
				// Left at the default, which stops the process, but
				// the kernel discards it for an orphaned process group
				// (as under go test): check the disposition.
				if p.caught(sig) {
					t.Fatalf("the Go runtime catches %v: it would drop it, not stop", SignalName(sig))
				}
				return
			}
			if err := unix.Kill(p.pid, sig); err != nil {
				t.Fatal(err)
			}
			var ws unix.WaitStatus
			if _, err := unix.Wait4(p.pid, &ws, unix.WUNTRACED, nil); err != nil {
				t.Fatal(err)
			}
			if !ws.Exited() && !ws.Signaled() && !ws.Stopped() {
				t.Fatalf("wait status %#x", ws)
			}
		})
	}
}

// TestSubscribeRest sends an essential signal right after New: it must
// arrive, not end the test binary. The others arrive once SubscribeRest
// has run, which closes Subscribed, and not before (an unsubscribed one
// would end the test binary: none is sent before). A second call does
// nothing.
func TestSubscribeRest(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	receive := func(want unix.Signal) {
		t.Helper()
		select {
		case sig := <-r.Signals():
			if sig != want {
				t.Fatalf("got %v, want %v", sig, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v not received", want)
		}
	}
	if err := unix.Kill(unix.Getpid(), unix.SIGHUP); err != nil {
		t.Fatal(err)
	}
	receive(unix.SIGHUP)
	select {
	case <-r.Subscribed():
		t.Fatal("Subscribed closed before SubscribeRest")
	default:
	}
	r.SubscribeRest()
	select {
	case <-r.Subscribed():
	default:
		t.Fatal("Subscribed still open after SubscribeRest")
	}
	r.SubscribeRest()
	for _, sig := range []unix.Signal{unix.SIGUSR1, unix.SIGWINCH, 40, 64} {
		if err := unix.Kill(unix.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		receive(sig)
	}
}

// TestStopBeforeSubscribeRest: after Stop, SubscribeRest returns at once
// and subscribes to nothing; Stop does not wait for it.
func TestStopBeforeSubscribeRest(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.SubscribeRest()
	select {
	case <-r.Subscribed():
		t.Fatal("SubscribeRest after Stop closed Subscribed")
	default:
	}
}
