package reaper

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/sighold"
	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	cases := []struct {
		status unix.WaitStatus
		code   int
		text   string
	}{
		{0, 0, "exited with status 0"},
		{7 << 8, 7, "exited with status 7"},
		{unix.WaitStatus(unix.SIGTERM), 143, "killed by signal 15 (terminated)"},
		{unix.WaitStatus(unix.SIGKILL) | 0x80, 137, "killed by signal 9 (killed)"}, // with core flag
	}
	for _, c := range cases {
		e := Exit{Pid: 42, Status: c.status}
		if e.Code() != c.code || e.String() != c.text {
			t.Errorf("status %#x: Code %d String %q, want %d %q", uint32(c.status), e.Code(), e.String(), c.code, c.text)
		}
	}
}

func TestParseSignal(t *testing.T) {
	good := map[string]unix.Signal{
		"TERM": unix.SIGTERM, "SIGTERM": unix.SIGTERM, "sigterm": unix.SIGTERM, "hup": unix.SIGHUP,
		"15": unix.SIGTERM, "1": unix.SIGHUP, "64": unix.Signal(64), "SIG40": unix.Signal(40),
	}
	for in, want := range good {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "SIG", "NOPE", "SIGNOPE", "TERM ", "1.5"} {
		if got, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) = %v, want an error", bad, got)
		}
	}
}

// FuzzParseSignal: any input gives a signal in 1..64 or an error, and every
// signal's name reads back as itself.
func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"TERM", "sigkill", "15", "SIG64", "RTMIN", "SIG-3", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			return
		}
		if sig < 1 || sig > sigMax {
			t.Fatalf("ParseSignal(%q) = %d, out of range", s, sig)
		}
		if back, err := ParseSignal(SignalName(sig)); err != nil || back != sig {
			t.Fatalf("ParseSignal(SignalName(%d)) = %d, %v", sig, back, err)
		}
	})
}

func TestForwardable(t *testing.T) {
	sigs := Forwardable()
	for _, never := range []unix.Signal{unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGPROF, unix.SIGPIPE, 32, 33, 34} {
		if slices.Contains(sigs, never) {
			t.Errorf("%v is forwardable", never)
		}
	}
	for _, must := range []unix.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGUSR1, unix.SIGWINCH, unix.SIGTSTP, unix.SIGSEGV, 35, 64} {
		if !slices.Contains(sigs, must) {
			t.Errorf("%v is not forwardable", must)
		}
	}
}

// TestReap starts real children and collects their statuses from the
// one wait4 loop.
func TestReap(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	want := map[int]int{}
	for _, script := range []string{"exit 3", "kill -KILL $$", "exit 0"} {
		cmd := exec.Command("sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		want[cmd.Process.Pid] = map[string]int{"exit 3": 3, "kill -KILL $$": 137, "exit 0": 0}[script]
	}
	got := map[int]int{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case <-r.Reapable():
		case <-time.After(100 * time.Millisecond):
			// The test binary's own children may have ended before
			// New subscribed: poll as well.
		case <-deadline:
			t.Fatalf("reaped %v, want %v", got, want)
		}
		exits, _ := r.Reap()
		for _, e := range exits {
			got[e.Pid] = e.Code()
		}
	}
	for pid, code := range want {
		if got[pid] != code {
			t.Errorf("pid %d: code %d, want %d", pid, got[pid], code)
		}
	}
	if exits, children := r.Reap(); len(exits) != 0 || children {
		t.Errorf("after all exits: Reap() = %v, %v; want nothing and no children", exits, children)
	}
}

// TestTerminationNeverDropped fills the signal buffer with more signals
// than it holds, none consumed, then sends SIGTERM: it must still arrive.
func TestTerminationNeverDropped(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	r.SubscribeRest()
	// The Go runtime merges a signal still pending with the same one, so
	// send each only once the last has reached the channel.
	sigs := []unix.Signal{unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, 40, 41, 42}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; len(r.Signals()) < sighold.SignalsBuffer; i++ {
		before := len(r.Signals())
		if err := unix.Kill(unix.Getpid(), sigs[i%len(sigs)]); err != nil {
			t.Fatal(err)
		}
		for len(r.Signals()) == before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d signals buffered", len(r.Signals()))
		}
	}
	// Full: one more is dropped by os/signal.
	if err := unix.Kill(unix.Getpid(), unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case sig := <-r.Terminations():
		if sig != unix.SIGTERM {
			t.Fatalf("Terminations gave %v", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM lost behind a full signal buffer")
	}
}
