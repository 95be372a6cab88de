package upgrade

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func restartOpts(p RestartPolicy) Options {
	o := notifyOpts()
	o.Restart = p
	return o
}

// TestRestartOnFailure: a crash of the serving generation starts a new one
// at once; probe fails until it is ready; leftovers of the crashed one get
// the drain signal; an exit 0 ends the container under on-failure.
func TestRestartOnFailure(t *testing.T) {
	h := serving(t, restartOpts(RestartOnFailure))
	h.os.extra[1] = []int{150} // a worker the crash leaves behind
	mark := h.os.mark()
	h.exits(true, killed(100, unix.SIGKILL))
	h.wantState("exited", "starting")
	if !h.os.hit(150, unix.SIGTERM, mark) {
		t.Error("the crashed generation's leftover was not told to drain")
	}
	st := h.status()
	if st.State != "restarting" || st.Restarts != 1 {
		t.Fatalf("status %s, %d restarts", st.State, st.Restarts)
	}
	if _, err := h.s.probe(false); err == nil {
		t.Fatal("probe ready while nothing serves")
	}
	// A reload meanwhile waits for the restarted generation.
	r := h.reload(context.Background())
	h.ready(2, 101)
	h.wantState("exited", "serving", "starting")
	h.ready(3, 102)
	if res := h.answer(r); res.gen != 3 {
		t.Fatalf("reload: %+v", res)
	}
	if gen, err := h.s.probe(false); err != nil || gen != 3 {
		t.Fatalf("probe %d %v", gen, err)
	}
	h.exits(true, exited(101, 0)) // generation 2 drained
	h.exits(false, exited(102, 0))
	if e := h.ended(); e.Code() != 0 {
		t.Fatalf("exit %d", e.Code())
	}
}

// TestRestartAlways restarts after an exit 0 too; never (the default) ends
// the container, as tini.
func TestRestartAlways(t *testing.T) {
	h := serving(t, restartOpts(RestartAlways))
	h.exits(true, exited(100, 0))
	h.wantState("exited", "starting")
	h2 := serving(t, notifyOpts())
	h2.exits(false, exited(100, 3))
	if e := h2.ended(); e.Code() != 3 {
		t.Fatalf("never: exit %d", e.Code())
	}
}

// TestRestartBackoff: crashes at every start back off 0, 250 ms, 500 ms,
// 1 s, 2 s; the sixth crash within the window gives up with the
// application's status.
func TestRestartBackoff(t *testing.T) {
	h := newHarness(t, restartOpts(RestartOnFailure))
	pid := 100
	for i, wait := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second} {
		h.advance(300 * time.Millisecond)
		h.exits(true, exited(pid, 1))
		if wait > 0 {
			h.advance(wait - time.Millisecond)
			if h.started() != i+1 {
				t.Fatalf("restart %d before its %v back-off", i+1, wait)
			}
			h.advance(time.Millisecond)
		}
		if h.started() != i+2 {
			t.Fatalf("restart %d not started after %v", i+1, wait)
		}
		pid++
	}
	h.advance(300 * time.Millisecond)
	h.exits(false, exited(pid, 1))
	if e := h.ended(); e.Code() != 1 {
		t.Fatalf("exit %d", e.Code())
	}
	// After a quiet window, crashes are forgiven.
	h2 := serving(t, restartOpts(RestartOnFailure))
	for pid := 100; pid < 110; pid++ {
		h2.exits(true, exited(pid, 1))
		h2.advance(DefaultRestartWindow)
		h2.ready(pid-98, pid+1)
	}
	if st := h2.status(); st.Restarts != 10 {
		t.Fatalf("%d restarts", st.Restarts)
	}
}

// TestSIGTERMDuringBackoff: SIGTERM between a crash and its restart ends
// at once, with the crash's status; nothing more starts.
func TestSIGTERMDuringBackoff(t *testing.T) {
	h := serving(t, restartOpts(RestartOnFailure))
	h.exits(true, exited(100, 2))
	h.exits(true, exited(101, 2)) // back-off 250 ms
	h.do(func() { h.r.children = false })
	h.signal(unix.SIGTERM)
	if e := h.ended(); e.Code() != 2 {
		t.Fatalf("exit %d", e.Code())
	}
	if h.started() != 2 {
		t.Fatalf("%d started", h.started())
	}
}

// TestCrashDuringUpgrade: the upgrade in progress takes over; its reload
// is answered when it is ready.
func TestCrashDuringUpgrade(t *testing.T) {
	h := serving(t, restartOpts(RestartOnFailure))
	r := h.reload(context.Background())
	h.exits(true, killed(100, unix.SIGSEGV))
	h.wantState("exited", "starting")
	if q := h.status(); q.State != "restarting" || h.started() != 2 {
		t.Fatalf("state %s, %d started", q.State, h.started())
	}
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("reload: %+v", res)
	}
	if c := h.status().Reloads; c.Succeeded != 1 || !strings.Contains(h.status().State, "running") {
		t.Fatalf("counters %+v", c)
	}
}

// TestRestartsForgotten: a container that restarts its application for
// good keeps only the last ended generations, as upgrades do (found by
// FuzzMachine: every crashed generation was kept, one more per crash).
func TestRestartsForgotten(t *testing.T) {
	h := serving(t, restartOpts(RestartAlways))
	for pid := 100; pid < 100+3*keepEnded; pid++ {
		h.exits(true, exited(pid, 1))
		h.ready(pid-99+1, pid+1)
		h.advance(time.Minute) // out of the restart window: no back-off
	}
	st := h.status()
	if n := len(st.Generations); n != keepEnded+1 {
		t.Fatalf("%d generations kept after %d restarts, want the %d last ended and the serving one", n, 3*keepEnded, keepEnded)
	}
	if g := st.Generations[len(st.Generations)-1]; g.State != "serving" || g.Number != 3*keepEnded+1 {
		t.Errorf("last generation %+v, want %d serving", g, 3*keepEnded+1)
	}
}

// TestReloadDuringCrashLoop: a reload made while the application crashes
// at every start is answered as soon as the generation started for it
// fails, not at the end of the crash loop (aa4f58b: only at give-up, 23 s
// and 4 crashed generations later here). Generation 2, a restart started
// before the reload, crashes: the reload waits for the next start of the
// command, generation 3, whose crash answers it. Another reload made
// during a back-off is served by the next restart's readiness.
func TestReloadDuringCrashLoop(t *testing.T) {
	h := serving(t, restartOpts(RestartOnFailure))
	h.exits(true, exited(100, 1)) // generation 2 starts at once
	r := h.reload(context.Background())
	h.advance(100 * time.Millisecond)
	h.exits(true, exited(101, 1)) // generation 3 in 250 ms
	h.noAnswer(r)
	h.advance(250 * time.Millisecond)
	if h.started() != 3 {
		t.Fatalf("%d started", h.started())
	}
	h.noAnswer(r)
	h.advance(100 * time.Millisecond)
	h.exits(true, exited(102, 1))
	res := h.answer(r)
	if res.err == nil || res.err.Error() != "generation 3 exited with status 1 before ready" {
		t.Fatalf("reload: %+v", res)
	}
	// During the back-off of 500 ms: the next start serves it.
	r2 := h.reload(context.Background())
	h.advance(500 * time.Millisecond)
	h.ready(4, 103)
	if res := h.answer(r2); res.gen != 4 || res.err != nil {
		t.Fatalf("reload during the back-off: %+v", res)
	}
	if c := h.status().Reloads; c.Requested != 2 || c.Failed != 1 || c.Succeeded != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestReloadAtGiveUp: a reload waiting when the restarts give up is
// answered with why.
func TestReloadAtGiveUp(t *testing.T) {
	o := restartOpts(RestartOnFailure)
	o.RestartLimit = 1
	h := serving(t, o)
	h.exits(true, exited(100, 1))
	r := h.reload(context.Background())
	h.exits(false, exited(101, 4))
	res := h.answer(r)
	if res.err == nil || !strings.Contains(res.err.Error(), "shutting down (the application crashed 2 times within 1m0s; generation 2 exited with status 4)") {
		t.Fatalf("reload: %+v", res)
	}
	if e := h.ended(); e.Code() != 4 {
		t.Fatalf("exit %d", e.Code())
	}
}

// TestUpgradeTakesOverThenCrashes: the serving generation crashes during
// an upgrade, the upgrade's generation takes over, then crashes before
// ready: its reload is answered at once (aa4f58b: never, it waited for
// the container's end).
func TestUpgradeTakesOverThenCrashes(t *testing.T) {
	h := serving(t, restartOpts(RestartOnFailure))
	r := h.reload(context.Background())
	h.exits(true, exited(100, 1))
	h.wantState("exited", "starting")
	h.exits(true, killed(101, unix.SIGSEGV))
	res := h.answer(r)
	if res.err == nil || res.err.Error() != "generation 2 killed by signal 11 (segmentation fault) before ready" {
		t.Fatalf("reload: %+v", res)
	}
}

// TestRestartWindowTooShort: a window shorter than the back-off of
// --restart-limit restarts is refused: more crashes than the limit could
// never fit in it, and the restarts would never give up (aa4f58b took
// 1ns: 466 restarts in 60 s, never backing off).
func TestRestartWindowTooShort(t *testing.T) {
	if d := restartBackoffs(DefaultRestartLimit); d != 3750*time.Millisecond {
		t.Fatalf("back-off of %d restarts: %v", DefaultRestartLimit, d)
	}
	if d := restartBackoffs(1 << 40); d != math.MaxInt64 {
		t.Fatalf("back-off of 2^40 restarts: %v, want saturated", d)
	}
	for _, c := range []struct {
		window time.Duration
		ok     bool
	}{{time.Nanosecond, false}, {3750 * time.Millisecond, false}, {3751 * time.Millisecond, true}, {DefaultRestartWindow, true}} {
		o := Options{Command: []string{"app"}, Restart: RestartOnFailure, RestartWindow: c.window}
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("--restart-window %v: %v", c.window, err)
		}
	}
	o := Options{Command: []string{"app"}, RestartWindow: time.Nanosecond} // never restarts: any window
	if err := o.Validate(); err != nil {
		t.Errorf("--restart never with a 1ns window: %v", err)
	}
}

// TestExpectedExitNoCrash: an exit status remapped to success (tini -e)
// is no crash under on-failure.
func TestExpectedExitNoCrash(t *testing.T) {
	o := restartOpts(RestartOnFailure)
	o.Expected = map[int]bool{7: true}
	h := serving(t, o)
	h.exits(false, exited(100, 7))
	if e := h.ended(); e.Code() != 7 || h.started() != 1 {
		t.Fatalf("exit %d after %d starts, want the application's 7 and no restart", e.Code(), h.started())
	}
}

// TestReloadSignalRefused: a reload signal that never reaches tini-hot is
// a usage error, naming why.
func TestReloadSignalRefused(t *testing.T) {
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGTERM, unix.SIGURG, unix.SIGPIPE, unix.SIGPROF, 32, 33, 34} {
		o := Options{Command: []string{"app"}, ReloadSignal: sig}
		if err := o.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--reload-signal ") {
			t.Errorf("--reload-signal %v: %v", sig, err)
		}
	}
	for _, sig := range []unix.Signal{unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, 35, 64, NoReloadSignal} {
		o := Options{Command: []string{"app"}, ReloadSignal: sig}
		if err := o.Validate(); err != nil {
			t.Errorf("--reload-signal %v: %v", sig, err)
		}
	}
}
