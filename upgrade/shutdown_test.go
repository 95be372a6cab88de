package upgrade

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAbortOnSIGTERM: SIGTERM during an upgrade answers its reload, drains
// both generations, and the container ends with the serving one's status
// once both have exited.
func TestAbortOnSIGTERM(t *testing.T) {
	h := serving(t, notifyOpts())
	r := h.reload(context.Background())
	queued := h.reload(context.Background())
	mark := h.os.mark()
	h.signal(unix.SIGTERM)
	if res := h.answer(r); res.err == nil || res.err.Error() != "generation 2: upgrade aborted: shutting down" {
		t.Fatalf("upgrade's reload: %+v", res)
	}
	if res := h.answer(queued); res.err == nil || res.err.Error() != "shutting down (SIGTERM received)" {
		t.Fatalf("queued reload: %+v", res)
	}
	if !h.os.hit(100, unix.SIGTERM, mark) || !h.os.hit(101, unix.SIGTERM, mark) {
		t.Fatalf("drain signals: %+v", h.os.kills)
	}
	// Generation 2 turning ready now changes nothing.
	h.ready(2, 101)
	h.wantState("draining", "draining")
	if _, err := h.s.Probe(context.Background(), false); err == nil || err.Error() != "not ready: shutting down (SIGTERM received)" {
		t.Errorf("probe: %v", err)
	}
	h.exits(true, exited(101, 0))
	h.running()
	h.exits(false, killed(100, unix.SIGTERM))
	if e := h.ended(); e.Code() != 143 {
		t.Errorf("exit %v, want generation 1's 143", e)
	}
}

// TestPrestop: prestop refuses reloads and fails probes while the
// application serves on, and starts the grace period's clock.
func TestPrestop(t *testing.T) {
	opts := notifyOpts()
	opts.GracePeriod = 10 * time.Second
	h := serving(t, opts)
	r := h.reload(context.Background())
	queued := h.reload(context.Background())
	if gen, err := h.s.Prestop(context.Background(), false); err != nil || gen != 1 {
		t.Fatalf("prestop: %d %v", gen, err)
	}
	if res := h.answer(queued); res.err == nil || res.err.Error() != "termination announced by prestop" {
		t.Fatalf("queued reload at prestop: %+v", res)
	}
	// The upgrade in progress goes on.
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 {
		t.Fatalf("reload in progress at prestop: %+v", res)
	}
	if res := h.answer(h.reload(context.Background())); res.err == nil || !strings.Contains(res.err.Error(), "prestop") {
		t.Fatalf("reload after prestop: %+v", res)
	}
	if _, err := h.s.Probe(context.Background(), false); err == nil || err.Error() != "not ready: termination announced by prestop" {
		t.Fatalf("probe after prestop: %v", err)
	}
	if _, err := h.s.Probe(context.Background(), true); err != nil {
		t.Fatalf("liveness after prestop: %v", err)
	}
	h.advance(4 * time.Second)
	h.signal(unix.SIGTERM)
	// Deadline: prestop + 10s - 1s margin, i.e. 5s after SIGTERM.
	h.advance(4900 * time.Millisecond)
	if len(h.r.all) != 0 {
		t.Fatalf("killed before the deadline: %v", h.r.all)
	}
	h.advance(200 * time.Millisecond)
	var all []unix.Signal
	h.do(func() { all = h.r.all })
	if len(all) == 0 || all[0] != unix.SIGKILL {
		t.Fatalf("at the deadline: SignalAll %v, want SIGKILL", all)
	}
}

// TestNoUpgradeDuringCleanup: once the serving generation has exited, a
// generation starting becomes nothing, even when its readiness delay
// passes, and the reload queued behind it never starts.
func TestNoUpgradeDuringCleanup(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyDelay, Delay: time.Second}
	h := newHarness(t, opts)
	h.advance(time.Second)
	h.wantState("serving")
	r := h.reload(context.Background())
	h.signal(unix.SIGHUP)
	h.exits(true, exited(100, 3)) // the serving generation ends
	if res := h.answer(r); res.err == nil {
		t.Fatalf("reload of an abandoned upgrade: %+v", res)
	}
	h.advance(2 * time.Second) // generation 2's readiness delay
	h.wantState("exited", "failed")
	if h.started() != 2 {
		t.Fatalf("%d started: an upgrade ran during the cleanup", h.started())
	}
	var pending bool
	h.do(func() { pending = h.s.pendingOn })
	if pending {
		t.Error("a reload is still queued")
	}
	if res := h.answer(h.reload(context.Background())); res.err == nil || !strings.Contains(res.err.Error(), "the application has exited") {
		t.Errorf("reload during the cleanup: %+v", res)
	}
	h.exits(false, killed(101, unix.SIGTERM))
	if e := h.ended(); e.Code() != 3 {
		t.Fatalf("exit %v, want the serving generation's 3", e)
	}
}

// TestOlderKeepDrainDeadline: when the serving generation exits while an
// older one drains, the older one keeps its drain deadline instead of the
// leftovers' kill timeout, and the container ends with the serving
// generation's status.
func TestOlderKeepDrainDeadline(t *testing.T) {
	h := serving(t, notifyOpts())
	h.reload(context.Background())
	h.ready(2, 101) // generation 1 drains until 30 s from now
	h.os.mu.Lock()
	h.os.extra[1] = []int{200} // a worker of generation 1
	h.os.others = []int{300}   // an orphan of nobody's
	h.os.mu.Unlock()
	mark := h.os.mark()
	h.advance(time.Second)
	h.exits(true, exited(101, 4)) // generation 2, serving, exits
	if !h.os.hit(300, unix.SIGTERM, mark) {
		t.Error("the orphan did not get SIGTERM")
	}
	h.advance(10 * time.Second) // past the 5 s kill timeout
	if !h.os.hit(300, unix.SIGKILL, mark) {
		t.Error("the orphan did not get SIGKILL at the kill timeout")
	}
	for _, pid := range []int{100, 200} {
		if h.os.hit(pid, unix.SIGTERM, mark) || h.os.hit(pid, unix.SIGKILL, mark) {
			t.Fatalf("generation 1's process %d was signalled before its drain deadline", pid)
		}
	}
	h.advance(20 * time.Second) // generation 1's deadline
	if !h.os.hit(100, unix.SIGKILL, mark) || !h.os.hit(200, unix.SIGKILL, mark) {
		t.Fatal("generation 1 was not killed at its drain deadline")
	}
	h.exits(false, killed(100, unix.SIGKILL))
	if e := h.ended(); e.Code() != 4 {
		t.Fatalf("exit %v, want the serving generation's 4", e)
	}
}

// TestPrestopWithdrawn: a prestop no SIGTERM follows within the grace
// period is withdrawn: probe passes and reloads are taken again (aa4f58b:
// unready and refusing reloads for good). prestop --cancel withdraws at
// once; there is nothing to cancel after SIGTERM or without a prestop.
func TestPrestopWithdrawn(t *testing.T) {
	opts := notifyOpts()
	opts.GracePeriod = 10 * time.Second
	h := serving(t, opts)
	if _, err := h.s.Prestop(context.Background(), true); err == nil || err.Error() != "no prestop to cancel" {
		t.Fatalf("cancel without prestop: %v", err)
	}
	if _, err := h.s.Prestop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	h.advance(9 * time.Second)
	if _, err := h.s.Probe(context.Background(), false); err == nil {
		t.Fatal("ready again within the grace period")
	}
	h.advance(time.Second)
	if gen, err := h.s.Probe(context.Background(), false); err != nil || gen != 1 {
		t.Fatalf("probe after a prestop with no SIGTERM: %d %v", gen, err)
	}
	r := h.reload(context.Background())
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("reload after the prestop was withdrawn: %+v", res)
	}
	if _, err := h.s.Prestop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if gen, err := h.s.Prestop(context.Background(), true); err != nil || gen != 2 {
		t.Fatalf("prestop --cancel: %d %v", gen, err)
	}
	if _, err := h.s.Probe(context.Background(), false); err != nil {
		t.Fatalf("probe after prestop --cancel: %v", err)
	}
	// After SIGTERM: nothing is withdrawn.
	if _, err := h.s.Prestop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	h.signal(unix.SIGTERM)
	if _, err := h.s.Prestop(context.Background(), true); err == nil || !strings.Contains(err.Error(), "SIGTERM") {
		t.Fatalf("cancel after SIGTERM: %v", err)
	}
	h.advance(opts.GracePeriod)
	if _, err := h.s.Probe(context.Background(), false); err == nil {
		t.Fatal("ready after SIGTERM")
	}
}
