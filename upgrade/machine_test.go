package upgrade

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// The state machine through the seam: every test below is a script of
// events (exits, signals, notices, requests, time passing) and what the
// supervisor must do about each.

// notifyOpts is the usual setup: readiness by READY=1.
func notifyOpts() Options {
	return Options{Ready: Readiness{Mode: ReadyNotify}, ReadyTimeout: 10 * time.Second, DrainTimeout: 30 * time.Second, KillTimeout: 5 * time.Second, GracePeriod: 30 * time.Second}
}

// serving starts a harness whose generation 1 (pid 100) serves.
func serving(t *testing.T, opts Options) *harness {
	t.Helper()
	h := newHarness(t, opts)
	h.ready(1, 100)
	h.wantState("serving")
	return h
}

func TestKillMargin(t *testing.T) {
	for grace, want := range map[time.Duration]time.Duration{
		100 * time.Millisecond: 50 * time.Millisecond,
		3 * time.Second:        300 * time.Millisecond,
		30 * time.Second:       time.Second,
		time.Hour:              time.Second,
	} {
		if got := KillMargin(grace); got != want {
			t.Errorf("KillMargin(%v) = %v, want %v", grace, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{ShutdownDelay: -time.Second},
		{ShutdownDelay: DefaultGracePeriod},
		{GracePeriod: time.Second, ShutdownDelay: 2 * time.Second},
	} {
		o.Command = []string{"app"}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "less than --grace-period") {
			t.Errorf("Validate(%+v) = %v", o, err)
		}
	}
	for _, o := range []Options{{}, {Command: []string{"app"}, KillTimeout: -1}, {Command: []string{"app"}, MaxDraining: -1},
		{Command: []string{"app"}, Restart: "sometimes"}, {Command: []string{"app"}, RestartLimit: -1}, {Command: []string{"app"}, OnLowMemory: "panic"}} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) succeeded", o)
		}
	}
	o := Options{Command: []string{"app"}, ShutdownDelay: 5 * time.Second}
	if err := o.Validate(); err != nil || o.GracePeriod != DefaultGracePeriod || o.MaxDraining != DefaultMaxDraining || o.Ready.String() != DefaultReadiness.String() {
		t.Fatalf("Validate = %v; %+v", err, o)
	}
}

// TestCoalescing: reloads during an upgrade, by command or signal, make
// one more upgrade, which serves every command waiting for it.
func TestCoalescing(t *testing.T) {
	h := serving(t, notifyOpts())
	a := h.reload(context.Background())
	h.wantState("serving", "starting")
	b, c := h.reload(context.Background()), h.reload(context.Background())
	for range 5 {
		h.signal(unix.SIGHUP)
	}
	if q := h.status().Queued; q == nil || q.Waiters != 2 || !strings.Contains(q.Reason, "generation 2") {
		t.Fatalf("queued: %+v", q)
	}
	h.noAnswer(a)
	mark := h.os.mark()
	h.ready(2, 101)
	if r := h.answer(a); r.gen != 2 || r.err != nil {
		t.Fatalf("first reload: %+v", r)
	}
	if !h.os.hit(100, unix.SIGTERM, mark) {
		t.Error("generation 1 was not told to drain")
	}
	h.wantState("draining", "serving", "starting")
	h.noAnswer(b)
	h.ready(3, 102)
	for _, w := range []<-chan result{b, c} {
		if r := h.answer(w); r.gen != 3 || r.err != nil {
			t.Fatalf("coalesced reload: %+v", r)
		}
	}
	if got := h.status().Reloads; got != (ReloadCounters{Requested: 8, Coalesced: 6, Succeeded: 2}) {
		t.Errorf("counters %+v", got)
	}
	if h.started() != 3 {
		t.Errorf("%d processes started, want 3 generations", h.started())
	}
}

// TestMaxDraining: with old generations still draining up to the bound,
// a reload waits, by command or by signal, and starts as soon as one of
// them has exited.
func TestMaxDraining(t *testing.T) {
	opts := notifyOpts()
	opts.MaxDraining = 2
	h := serving(t, opts)
	for gen := 2; gen <= 3; gen++ {
		h.upgrade(gen, 99+gen)
	}
	h.wantState("draining", "draining", "serving")
	r := h.reload(context.Background())
	h.signal(unix.SIGHUP)
	h.noAnswer(r)
	if h.started() != 3 {
		t.Errorf("%d started, want 3", h.started())
	}
	if q := h.status().Queued; q == nil || q.Waiters != 1 || q.Reason != "waiting for one of 2 draining generations to exit (--max-draining 2)" {
		t.Fatalf("queued: %+v", q)
	}
	// One drained (its deadline would do too): the queued reload goes.
	h.exits(true, exited(100, 0))
	h.wantState("exited", "draining", "serving", "starting")
	h.ready(4, 103)
	if res := h.answer(r); res.gen != 4 || res.err != nil {
		t.Fatalf("reload after a drain: %+v", res)
	}
	// The SIGHUP was coalesced into it: nothing more is queued.
	if st := h.status(); st.Queued != nil || st.Reloads.Coalesced != 1 || st.Reloads.Succeeded != 3 {
		t.Fatalf("after: %+v", st)
	}
	// A reload at the bound by signal alone is not lost either: generation
	// 2's drain deadline ends it, and the upgrade starts.
	h.signal(unix.SIGHUP)
	h.wantState("exited", "draining", "draining", "serving")
	h.advance(opts.DrainTimeout)
	h.exits(true, killed(101, unix.SIGKILL))
	h.ready(5, 104)
	h.wantState("exited", "exited", "draining", "draining", "serving")
}

// TestLeftovers: what an old generation leaves when its main process
// ends before the drain deadline (a worker, a daemon) gets the drain
// signal then, and SIGKILL at that deadline; so does what a failed one
// leaves (its readiness check, hung).
func TestLeftovers(t *testing.T) {
	opts := notifyOpts()
	h := serving(t, opts)
	h.os.mu.Lock()
	h.os.extra[1] = []int{150}
	h.os.extra[3] = []int{160}
	h.os.mu.Unlock()
	// deadline checks that pid gets SIGKILL after d and not before.
	deadline := func(pid int, d time.Duration) {
		t.Helper()
		mark := h.os.mark()
		h.advance(d - time.Millisecond)
		if h.os.hit(pid, unix.SIGKILL, mark) {
			t.Fatalf("%d killed before its generation's drain deadline", pid)
		}
		h.advance(time.Millisecond)
		if !h.os.hit(pid, unix.SIGKILL, mark) {
			t.Fatalf("%d not killed at its generation's drain deadline", pid)
		}
	}
	h.upgrade(2, 101)
	h.advance(10 * time.Second)
	mark := h.os.mark()
	h.exits(true, exited(100, 0)) // generation 1 drained, 20 s early
	if !h.os.hit(150, unix.SIGTERM, mark) {
		t.Error("what generation 1 left did not get the drain signal when it ended")
	}
	deadline(150, opts.DrainTimeout-10*time.Second)

	r := h.reload(context.Background())
	h.advance(opts.ReadyTimeout) // generation 3 fails, and is told to drain
	if res := h.answer(r); res.err == nil {
		t.Fatalf("reload to a generation never ready: %+v", res)
	}
	h.advance(5 * time.Second)
	mark = h.os.mark()
	h.exits(true, exited(102, 0))
	if !h.os.hit(160, unix.SIGTERM, mark) {
		t.Error("what failed generation 3 left did not get the drain signal when it ended")
	}
	deadline(160, opts.DrainTimeout-5*time.Second)
	h.wantState("exited", "serving", "failed")
}

// TestNoLeftoversNoSnapshot: when the supervisor's children are only live
// generations' main processes, an old generation's end costs no read of
// the process table, and arms nothing.
func TestNoLeftoversNoSnapshot(t *testing.T) {
	h := serving(t, notifyOpts())
	h.upgrade(2, 101)
	h.os.mu.Lock()
	h.os.kids = []int{101}
	before := h.os.snapshots
	h.os.mu.Unlock()
	h.exits(true, exited(100, 0))
	h.os.mu.Lock()
	took := h.os.snapshots - before
	h.os.kids = []int{101, 150} // a stranger now: looked for
	h.os.mu.Unlock()
	if took != 0 {
		t.Errorf("%d snapshots at the end of a generation that left nothing, want 0", took)
	}
	h.upgrade(3, 102)
	h.os.mu.Lock()
	before = h.os.snapshots
	h.os.mu.Unlock()
	h.exits(true, exited(101, 0))
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	if took := h.os.snapshots - before; took != 1 {
		t.Errorf("%d snapshots at the end of a generation with a stranger below tini-hot, want 1", took)
	}
}

// TestHungCheckEnded: the first generation's readiness check hangs, so it
// is overdue and a reload replaces it; once it has drained, its hung
// check, a child tini-hot started, gets the drain signal, and SIGKILL at
// the drain deadline.
func TestHungCheckEnded(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	h := newHarness(t, opts)
	h.advance(opts.ReadyTimeout) // generation 1 (100) overdue, its check (101) hung
	r := h.reload(context.Background())
	h.exits(true, exited(103, 0)) // generation 2 (102) ready by its check
	if res := h.answer(r); res.gen != 2 {
		t.Fatalf("reload: %+v", res)
	}
	h.os.mu.Lock()
	// The check is tini-hot's child, but not of its main thread: only
	// generation 2 is there.
	h.os.kids = []int{102}
	h.os.extra[1] = []int{101} // the check has generation 1's marker
	h.os.mu.Unlock()
	mark := h.os.mark()
	h.exits(true, exited(100, 0))
	if !h.os.hit(101, unix.SIGTERM, mark) {
		t.Error("the hung check of a drained generation did not get the drain signal")
	}
	h.advance(opts.DrainTimeout)
	if !h.os.hit(101, unix.SIGKILL, mark) {
		t.Error("the hung check of a drained generation was not killed at its deadline")
	}
}

// TestPidReuse: a generation's drain deadline never fires after it has
// exited, and a pid reused by a new generation is that generation's: its
// exit is not credited to the old one, and the old one's timer does not
// kill it.
func TestPidReuse(t *testing.T) {
	h := serving(t, notifyOpts())
	h.reload(context.Background())
	h.ready(2, 101)
	h.exits(true, exited(100, 0)) // generation 1 drained
	if g := h.gen(1); g.State != "exited" || g.Exit != "exited with status 0" {
		t.Fatalf("generation 1: %+v", g)
	}
	// Generation 3 gets generation 1's old pid.
	h.os.mu.Lock()
	h.os.reuse = []int{100}
	h.os.mu.Unlock()
	h.reload(context.Background())
	h.ready(3, 100)
	h.wantState("exited", "draining", "serving")
	mark := h.os.mark()
	// Past generation 1's drain deadline (30 s after its drain began).
	h.advance(31 * time.Second)
	if h.os.hit(100, unix.SIGKILL, mark) {
		t.Fatal("generation 1's drain deadline killed generation 3, which reuses its pid")
	}
	if !h.os.hit(101, unix.SIGKILL, mark) {
		t.Error("generation 2's own drain deadline did not kill it")
	}
	h.exits(true, killed(101, unix.SIGKILL))
	// Pid 100 ends: that is generation 3, the serving one.
	h.exits(true, exited(100, 7))
	if g := h.gen(1); g.Exit != "exited with status 0" {
		t.Errorf("generation 1's exit became %q", g.Exit)
	}
	if g := h.gen(3); g.Exit != "exited with status 7" {
		t.Errorf("generation 3's exit: %q", g.Exit)
	}
	h.exits(false)
	if e := h.ended(); e.Code() != 7 {
		t.Fatalf("exit %v, want generation 3's status 7", e)
	}
}

// TestExitOfReusedPidIgnored: the exit of an orphan that got the pid of
// a generation already reaped is nobody's.
func TestExitOfReusedPidIgnored(t *testing.T) {
	h := serving(t, notifyOpts())
	h.reload(context.Background())
	h.ready(2, 101)
	h.exits(true, exited(100, 0))
	h.exits(true, exited(100, 9)) // an orphan with the same pid
	if g := h.gen(1); g.Exit != "exited with status 0" {
		t.Fatalf("generation 1's exit: %q", g.Exit)
	}
	h.wantState("exited", "serving")
	h.running()
}

// TestBatchWithReusedPid: exits reaped in one batch are all matched before
// any is acted upon, so a generation started while handling the batch is
// not taken for one of its pids.
func TestBatchWithReusedPid(t *testing.T) {
	h := serving(t, notifyOpts())
	h.reload(context.Background()) // generation 2, pid 101
	h.signal(unix.SIGHUP)          // queued: generation 3 when 2 ends
	// Generation 2 fails before ready; generation 3 then gets pid 102,
	// which the same wait4 batch reaped from an orphan.
	h.exits(true, exited(101, 1), exited(102, 0))
	h.wantState("serving", "failed", "starting")
	if g := h.gen(3); g.Pid != 102 || g.Exit != "" {
		t.Fatalf("generation 3: %+v, want pid 102 and alive", g)
	}
}

// TestCheckForkFails: a readiness check that cannot be started fails the
// upgrade cleanly; later reloads are not stuck behind it.
func TestCheckForkFails(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	h := newHarness(t, opts)
	h.exits(true, exited(101, 0)) // generation 1's check passes
	h.wantState("serving")
	h.os.mu.Lock()
	h.os.failWhen = func(s launch.Spec) error {
		if s.Argv[0] == "check" {
			return errFork
		}
		return nil
	}
	h.os.mu.Unlock()
	res := h.answer(h.reload(context.Background()))
	if res.err == nil || !strings.Contains(res.err.Error(), "generation 2: readiness check: fork") {
		t.Fatalf("reload with a failing check: %+v", res)
	}
	h.wantState("serving", "failed")
	h.os.mu.Lock()
	h.os.failWhen = nil
	h.os.mu.Unlock()
	r := h.reload(context.Background())
	h.wantState("serving", "failed", "starting")
	h.do(func() {}) // generation 3 is pid 103, its check pid 104
	h.exits(true, exited(104, 0))
	if res := h.answer(r); res.gen != 3 {
		t.Fatalf("next reload: %+v", res)
	}
}

// TestServingExitsAsCheckPasses: the serving generation exits in the
// same batch of exits as the upgrading generation's readiness check
// passes. The exit is handled first, so the container ends as for the
// exit alone: the upgrade is abandoned, never handed over from a
// generation already gone (found by FuzzMachine: the ended generation
// was left "draining" for good).
func TestServingExitsAsCheckPasses(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	h := newHarness(t, opts)
	h.exits(true, exited(101, 0)) // generation 1's check passes
	r := h.reload(context.Background())
	h.wantState("serving", "starting") // generation 2 is pid 102, its check 103
	h.exits(true, exited(100, 3), exited(103, 0))
	if res := h.answer(r); res.err == nil {
		t.Fatalf("reload answered %+v, want an error: the container ends", res)
	}
	h.wantState("exited", "failed")
	h.exits(false, killed(102, unix.SIGTERM))
	if e := h.ended(); e.Pid != 100 || e.Code() != 3 {
		t.Errorf("Run's exit %+v, want generation 1's status 3", e)
	}
}

// TestFirstNeverReady: a reload while generation 1 starts waits for it;
// when generation 1 misses its ready timeout the reload goes ahead, and a
// generation that becomes ready replaces it.
func TestFirstNeverReady(t *testing.T) {
	h := newHarness(t, notifyOpts())
	r := h.reload(context.Background())
	gone, cancel := context.WithCancel(context.Background())
	abandoned := h.reload(gone)
	if q := h.status().Queued; q == nil || q.Waiters != 2 || !strings.Contains(q.Reason, "generation 1") {
		t.Fatalf("queued: %+v", q)
	}
	cancel()
	if res := h.answer(abandoned); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("abandoned reload: %+v", res)
	}
	h.until("the abandoned reload to be dropped", func(s *Supervisor) bool { return len(s.pending) == 1 })
	h.noAnswer(r)
	h.advance(10 * time.Second) // generation 1's ready timeout
	h.wantState("starting", "starting")
	if g := h.gen(1); g.Reason != "generation 1 not ready after 10s" {
		t.Errorf("generation 1: %+v", g)
	}
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 {
		t.Fatalf("reload: %+v", res)
	}
	h.wantState("draining", "serving")
}

// TestUpgradeReadyTimeout: a new generation not ready in time fails its
// reload, and the old one is untouched. The failed one may be serving
// already (apps accept before READY=1): it gets the drain signal, and
// SIGKILL only at the drain deadline, unless it ends first.
func TestUpgradeReadyTimeout(t *testing.T) {
	for _, exits := range []bool{false, true} {
		h := serving(t, notifyOpts())
		r := h.reload(context.Background())
		mark := h.os.mark()
		h.advance(10 * time.Second)
		if res := h.answer(r); res.err == nil || res.err.Error() != "generation 2 not ready after 10s" {
			t.Fatalf("reload: %+v", res)
		}
		if !h.os.hit(101, unix.SIGTERM, mark) || h.os.hit(101, unix.SIGKILL, mark) || h.os.hit(100, unix.SIGKILL, mark) || h.os.hit(100, unix.SIGTERM, mark) {
			t.Fatalf("signals at the failure: %+v %+v", h.os.kills, h.os.signals)
		}
		h.wantState("serving", "failed")
		if exits {
			h.exits(true, reaper.Exit{Pid: 101})
		}
		h.advance(29 * time.Second)
		if h.os.hit(101, unix.SIGKILL, mark) {
			t.Fatal("SIGKILL before the drain deadline")
		}
		h.advance(time.Second)
		if killed := h.os.hit(101, unix.SIGKILL, mark); killed == exits || h.os.hit(100, unix.SIGKILL, mark) {
			t.Fatalf("exited %v: SIGKILL at the drain deadline %v, want %v", exits, killed, !exits)
		}
		h.wantState("serving", "failed")
		if st := h.gen(2); st.Reason != "generation 2 not ready after 10s" {
			t.Fatalf("generation 2: %+v", st)
		}
	}
}

// TestForward: other signals go to the serving generation, or its group.
func TestForward(t *testing.T) {
	for _, group := range []bool{false, true} {
		opts := notifyOpts()
		opts.SignalGroup = group
		h := serving(t, opts)
		mark := h.os.mark()
		h.signal(unix.SIGUSR1)
		want := 100
		if group {
			want = -100
		}
		h.os.mu.Lock()
		got := h.os.kills[mark.kills:]
		h.os.mu.Unlock()
		if len(got) != 1 || got[0] != (sent{want, unix.SIGUSR1}) {
			t.Errorf("group %v: sent %+v, want SIGUSR1 to %d", group, got, want)
		}
	}
}

// TestNoticeFromOutside: READY=1 from a process outside the generation is
// ignored.
func TestNoticeFromOutside(t *testing.T) {
	h := newHarness(t, notifyOpts())
	h.ready(1, 4242)
	h.wantState("starting")
	h.ready(1, 100)
	h.wantState("serving")
}

// TestNoticeFlood: a notice that changes nothing (READY=1 once ready,
// the same STATUS, WATCHDOG=1) is not checked, so a process repeating
// itself costs no read of /proc; a stranger's notices are all counted
// and logged once per ignoredNoticeLogEvery, and a worker's STATUS and
// READY=1 still count.
func TestNoticeFlood(t *testing.T) {
	h := newHarness(t, notifyOpts())
	h.os.mu.Lock()
	h.os.extra[1] = []int{150} // a worker of generation 1
	h.os.mu.Unlock()
	var log syncbuf.Buffer
	h.do(func() { h.s.log = slog.New(slog.NewTextHandler(&log, nil)) })
	send := func(sender int, n notice) {
		h.do(func() { h.s.handleNotice(notifyEvent{gen: 1, sender: sender, notice: n}) })
	}
	asked := func() int {
		h.os.mu.Lock()
		defer h.os.mu.Unlock()
		return h.os.members
	}
	send(150, notice{ready: true, status: "up"})
	h.wantState("serving")
	for range 100 {
		send(150, notice{ready: true})
		send(150, notice{status: "up"})
		send(150, notice{}) // WATCHDOG=1, or anything tini-hot does not use
		send(100, notice{ready: true, status: "up"})
	}
	if n := asked(); n != 1 {
		t.Errorf("%d membership questions for 401 notices of which 1 changed something, want 1", n)
	}
	for i := range 1000 {
		send(4242, notice{status: strconv.Itoa(i)})
	}
	send(150, notice{status: "busy"})
	if st := h.gen(1).AppStatus; st != "busy" {
		t.Errorf("STATUS from the worker after the flood: %q", st)
	}
	if n := strings.Count(log.String(), "outside the generation ignored"); n != 1 {
		t.Errorf("%d warnings for 1,000 notices from outside in no time, want 1:\n%s", n, log.String())
	}
	h.advance(ignoredNoticeLogEvery)
	send(4242, notice{status: "x"})
	if n := strings.Count(log.String(), "ignored=1001"); n != 1 {
		t.Errorf("no second warning with the count once %v passed:\n%s", ignoredNoticeLogEvery, log.String())
	}
	if n := h.gen(1).NoticesIgnored; n != 1001 {
		t.Errorf("status counts %d notices ignored, want 1001", n)
	}
}

// TestNoticeBarrier: a barrier is released when the supervisor handles
// it, whatever generation it came for, and asks nothing about its sender.
func TestNoticeBarrier(t *testing.T) {
	h := newHarness(t, notifyOpts())
	for _, gen := range []int{1, 9} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		h.do(func() {
			h.s.handleNotice(notifyEvent{gen: gen, sender: 4242, notice: notice{barrier: true}, barrier: w})
		})
		if err := r.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("generation %d: the barrier's pipe read %v, want EOF: its fd still open", gen, err)
		}
		runtime.KeepAlive(w) // not closed by its finalizer meanwhile
	}
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	if h.os.members != 0 {
		t.Errorf("%d membership questions for barriers, want 0", h.os.members)
	}
}

// TestStatusOneSnapshot: Status reads the process table once, however
// many generations live (here one draining, one serving, one starting).
func TestStatusOneSnapshot(t *testing.T) {
	h := serving(t, notifyOpts())
	h.upgrade(2, 101)
	h.reload(context.Background())
	h.wantState("draining", "serving", "starting")
	h.os.mu.Lock()
	before := h.os.snapshots
	h.os.mu.Unlock()
	st, err := h.s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.os.mu.Lock()
	took := h.os.snapshots - before
	h.os.mu.Unlock()
	for _, g := range st.Generations {
		if g.GenerationUsage == nil {
			t.Fatalf("generation %d has no figures", g.Number)
		}
	}
	if took != 1 {
		t.Fatalf("Status took %d snapshots of the process table for 3 generations, want 1", took)
	}
}

// TestReleaseAfterReload: the memory a reload took is given back once the
// reload is over, done or failed: when its last draining generation has
// exited and nothing else starts. Not while one still drains, not for a
// reaped worker, not during the shutdown; at most once per releaseEvery,
// and then at its end.
func TestReleaseAfterReload(t *testing.T) {
	opts := notifyOpts()
	opts.MaxDraining = 2
	h := serving(t, opts)
	releases := h.wantReleases
	h.sync()
	releases(0)
	// Two reloads: generations 1 and 2 drain.
	for gen := 2; gen <= 3; gen++ {
		h.upgrade(gen, 99+gen)
	}
	releases(0)
	h.exits(true, exited(100, 0)) // generation 2 still drains
	releases(0)
	h.exits(true, exited(555, 0)) // no generation's
	releases(0)
	h.exits(true, exited(101, 0))
	releases(1)
	// Two more reloads over within releaseEvery: one release, at its end.
	for gen := 4; gen <= 5; gen++ {
		h.upgrade(gen, 99+gen)
		h.exits(true, exited(98+gen, 0))
	}
	releases(1)
	h.advance(releaseEvery - time.Millisecond)
	releases(1)
	h.advance(time.Millisecond)
	releases(2)
	h.advance(time.Hour)
	releases(2)
	// A failed reload: once its generation has exited.
	r := h.reload(context.Background())
	h.advance(10 * time.Second)
	if res := h.answer(r); res.err == nil {
		t.Fatal("generation 6 ready?")
	}
	releases(2)
	h.exits(true, exited(105, 0))
	releases(3)
	// The shutdown: nothing.
	h.signal(unix.SIGTERM)
	h.exits(false, exited(104, 0))
	h.ended()
	releases(3)
}

// TestReleaseAfterActivity: what is not a reload (a request, a notice, a
// reaped orphan, a forwarded signal) gives memory back SettleAfter after
// the first activity since the last release: once however much comes
// meanwhile, never while idle (no timer is left armed), not while a
// reload is in progress (its end releases, and that counts), not during
// the shutdown.
func TestReleaseAfterActivity(t *testing.T) {
	h := serving(t, notifyOpts()) // READY=1 was the first activity
	releases := func(want int) {
		t.Helper()
		h.sync()
		h.wantReleases(want)
	}
	ctx := context.Background()
	releases(0)
	h.advance(SettleAfter - time.Millisecond)
	releases(0)
	h.advance(time.Millisecond)
	releases(1)
	h.advance(time.Hour)
	releases(1)
	if n := h.clock.armed(); n != 0 {
		t.Fatalf("idle with %d timers armed", n)
	}

	// Requests, a second apart for a minute: one release per
	// SettleAfter, the first SettleAfter after the first request.
	for i := range 60 {
		switch i % 3 {
		case 0:
			_, _ = h.s.Probe(ctx, false)
		case 1:
			_, _ = h.s.Status(ctx)
		case 2:
			_, _ = h.s.Probe(ctx, true)
		}
		h.advance(time.Second)
	}
	releases(1 + 60/int(SettleAfter/time.Second))
	h.advance(time.Hour)
	releases(1 + 60/int(SettleAfter/time.Second))
	before := 1 + 60/int(SettleAfter/time.Second)

	// A reaped orphan, a forwarded signal, a notice: each is activity.
	for i, act := range []func(){
		func() { h.exits(true, exited(555, 0)) },
		func() { h.signal(unix.SIGUSR1) },
		func() {
			h.do(func() { h.s.onNotice(notifyEvent{gen: 1, sender: 100, notice: notice{status: "busy"}}) })
		},
	} {
		act()
		h.advance(SettleAfter)
		releases(before + i + 1)
	}
	before += 3

	// During a reload: nothing until its end, which releases once.
	r := h.reload(ctx)
	_, _ = h.s.Probe(ctx, false)
	h.advance(SettleAfter)
	releases(before)
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("reload: %+v", res)
	}
	h.advance(SettleAfter)
	releases(before) // generation 1 still drains
	h.exits(true, exited(100, 0))
	releases(before + 1)
	h.advance(time.Hour)
	releases(before + 1)
	if n := h.clock.armed(); n != 0 {
		t.Fatalf("idle after the reload with %d timers armed", n)
	}

	// The shutdown: nothing.
	_, _ = h.s.Probe(ctx, false)
	h.signal(unix.SIGTERM)
	h.advance(SettleAfter)
	releases(before + 1)
	h.exits(false, exited(101, 0))
	h.ended()
	h.wantReleases(before + 1)
}

// TestNoReleaseBeforeGrowth: activity gives memory back only once
// tini-hot's RssAnon has grown by firstCollectionAfter since the start (a
// first collection would cost the collector's lists, more than a little
// garbage is worth); a reload's end releases regardless; a figure that
// cannot be read does not hold releases back.
func TestNoReleaseBeforeGrowth(t *testing.T) {
	const start = 1400 << 10
	ctx := context.Background()
	lean := func(t *testing.T) *harness {
		h := newHarness(t, notifyOpts(), func(o *fakeOS) { o.own = start })
		h.ready(1, 100)
		h.wantState("serving")
		return h
	}
	own := func(h *harness, n uint64) {
		h.os.mu.Lock()
		h.os.own = n
		h.os.mu.Unlock()
	}
	activity := func(t *testing.T, h *harness, want int) {
		t.Helper()
		_, _ = h.s.Probe(ctx, false)
		_, _ = h.s.Status(ctx)
		h.advance(SettleAfter)
		h.sync()
		h.wantReleases(want)
	}
	t.Run("grown", func(t *testing.T) {
		h := lean(t)
		activity(t, h, 0) // READY=1 and this: nothing
		own(h, start+firstCollectionAfter-1)
		activity(t, h, 0)
		own(h, start+firstCollectionAfter)
		activity(t, h, 1)
		activity(t, h, 2)
	})
	t.Run("a reload's end", func(t *testing.T) {
		h := lean(t)
		h.upgrade(2, 101)
		h.exits(true, exited(100, 0))
		h.wantReleases(1)
	})
	t.Run("unreadable", func(t *testing.T) {
		h := lean(t)
		h.os.mu.Lock()
		h.os.ownErr = errors.New("no /proc")
		h.os.mu.Unlock()
		activity(t, h, 1)
	})
}

// TestFailingCheckTimers: a first generation whose readiness check never
// passes keeps running its check, every execRetry for good; the timers
// that have fired are not kept (they piled up, 4 a second, for the
// generation's life; FuzzMachine now bounds each generation's timers).
func TestFailingCheckTimers(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	h := newHarness(t, opts)
	pid := 101 // generation 1 is pid 100, its first check 101
	for range 1000 {
		h.exits(true, exited(pid, 1))
		h.advance(execRetry)
		pid++
	}
	var n int
	h.do(func() { n = len(h.s.current.timers) })
	if n > 2 {
		t.Errorf("%d timers kept for generation 1 after 1000 failed checks", n)
	}
	h.wantState("starting")
}

// TestReadyPendingAtTimeout: when the ready timeout fires while a datagram
// waits unread in the generation's notify socket (tini-hot was paused: a
// READY=1 sent in time and the timer resume together), the timeout waits
// for it to be read; a READY=1 then counts. A socket that stays busy is
// waited for at most readyGrace.
func TestReadyPendingAtTimeout(t *testing.T) {
	h := serving(t, notifyOpts())
	r := h.reload(context.Background())
	h.pending.Store(true)
	h.advance(10 * time.Second)
	h.wantState("serving", "starting")
	h.advance(readyGrace / 2)
	h.wantState("serving", "starting")
	h.pending.Store(false)
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("reload: %+v", res)
	}
	// A flood: still pending after readyGrace, the timeout fails it.
	r = h.reload(context.Background())
	h.pending.Store(true)
	h.advance(10*time.Second + readyGrace)
	if res := h.answer(r); res.err == nil || res.err.Error() != "generation 3 not ready after 10s" {
		t.Fatalf("reload with a busy socket: %+v", res)
	}
}

// TestNoticeBeforeTimer: a READY=1 read before the ready timeout's timer
// runs is handled first, whichever the loop would pick.
func TestNoticeBeforeTimer(t *testing.T) {
	for i := range 20 {
		h := serving(t, notifyOpts())
		r := h.reload(context.Background())
		h.do(func() { h.s.notices <- notifyEvent{gen: 2, sender: 101, notice: notice{ready: true}} })
		h.advance(10 * time.Second)
		if res := h.answer(r); res.gen != 2 || res.err != nil {
			t.Fatalf("run %d: reload: %+v", i, res)
		}
	}
}

// TestCheckEndedBeforeTimer: a readiness check that ended in time, whose
// exit is not reaped yet when the ready timeout's timer runs (tini-hot was
// paused), is reaped first: its success counts.
func TestCheckEndedBeforeTimer(t *testing.T) {
	opts := notifyOpts()
	opts.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	h := newHarness(t, opts)
	h.exits(true, exited(101, 0)) // generation 1 (100) ready by its check (101)
	r := h.reload(context.Background())
	// Generation 2 (102), its check (103) ended with 0, not reaped yet.
	h.do(func() { h.r.exits = []reaper.Exit{exited(103, 0)} })
	h.advance(opts.ReadyTimeout)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("reload: %+v", res)
	}
}

// TestForegroundFollowsService: on a terminal, the serving generation's
// process group has the foreground: the first one from its start, an
// upgrade's from its handover, a restart's from its start; a readiness
// check never. aa4f58b left it with generation 1's group, dead after the
// first reload: ^C of docker run -it reached nothing.
func TestForegroundFollowsService(t *testing.T) {
	o := restartOpts(RestartOnFailure)
	h := newHarness(t, o, func(os *fakeOS) { os.fg = 1 })
	fg := func() int {
		h.os.mu.Lock()
		defer h.os.mu.Unlock()
		return h.os.fg
	}
	if fg() != 100 {
		t.Fatalf("foreground %d, want generation 1's 100", fg())
	}
	h.ready(1, 100)
	r := h.reload(context.Background())
	if fg() != 100 {
		t.Fatalf("foreground %d before the handover, want 100", fg())
	}
	h.ready(2, 101)
	h.answer(r)
	if fg() != 101 {
		t.Fatalf("foreground %d after the handover, want generation 2's 101", fg())
	}
	h.exits(true, exited(100, 0))
	h.exits(true, exited(101, 1)) // crash: generation 3 (102) restarts
	if fg() != 102 {
		t.Fatalf("foreground %d after a restart, want generation 3's 102", fg())
	}
	// Someone else's group has it: left alone.
	h.ready(3, 102)
	h.os.mu.Lock()
	h.os.fg = 555
	h.os.mu.Unlock()
	r = h.reload(context.Background())
	h.ready(4, 103)
	h.answer(r)
	if fg() != 555 {
		t.Fatalf("foreground %d, want the application's own 555 left alone", fg())
	}
}
