package sighold

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain runs the test binary as a program that holds, gets SIGINT,
// and releases (SIGHOLD_RELEASE=1): it must then die of SIGINT, as it
// would have without Hold.
func TestMain(m *testing.M) {
	if os.Getenv("SIGHOLD_RELEASE") == "1" {
		Hold()
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		for deadline := time.Now().Add(10 * time.Second); len(signals) == 0; {
			if time.Now().After(deadline) {
				os.Exit(3) // never held
			}
			time.Sleep(time.Millisecond)
		}
		Release()
		time.Sleep(10 * time.Second)
		os.Exit(4) // still alive
	}
	os.Exit(m.Run())
}

// TestHoldTake: what arrives while held waits in the channels Take
// returns, SIGTERM apart from the others; Take hands them over once.
func TestHoldTake(t *testing.T) {
	Hold()
	Hold() // does nothing
	_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	term, sigs := Take()
	if term == nil || sigs == nil {
		t.Fatal("Take after Hold returned nothing")
	}
	defer Release()
	for _, want := range []struct {
		c   chan os.Signal
		sig syscall.Signal
	}{{sigs, syscall.SIGHUP}, {term, syscall.SIGTERM}} {
		select {
		case s := <-want.c:
			if s != want.sig {
				t.Fatalf("got %v, want %v", s, want.sig)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v not held", want.sig)
		}
	}
	if a, b := Take(); a != nil || b != nil {
		t.Fatal("Take gave the channels twice")
	}
	if cap(term) != termBuffer || cap(sigs) != SignalsBuffer {
		t.Fatalf("buffers %d, %d", cap(term), cap(sigs))
	}
	// Still subscribed after Take: the taker's now.
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case <-term:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM not delivered after Take")
	}
	signalStop(term, sigs)
}

// TestRelease: a signal held, then released, ends the process as it would
// have without Hold.
func TestRelease(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SIGHOLD_RELEASE=1")
	err := cmd.Run()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("held SIGINT, released: %v, want killed by SIGINT", err)
	}
}

// TestReleaseNothingHeld: Release without Hold, or twice, does nothing.
func TestReleaseNothingHeld(t *testing.T) {
	Release()
	Release()
}
