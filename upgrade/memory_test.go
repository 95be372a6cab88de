package upgrade

import (
	"context"
	"github.com/tini-hot/tini-hot/internal/usage"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// memoryHarness serves generation 1 (pid 100, 120 MiB of anonymous
// memory) in a container with the given limit and working set, in MiB.
func memoryHarness(t *testing.T, mode LowMemory, limit, workingSet uint64) *harness {
	t.Helper()
	opts := notifyOpts()
	opts.OnLowMemory = mode
	h := serving(t, opts)
	h.os.setMemory(limit, workingSet, 0)
	h.os.setAnon(100, 120)
	return h
}

// TestLowMemoryRefuse: a second generation that does not fit is refused
// with the figures; nothing starts and generation 1 serves on.
func TestLowMemoryRefuse(t *testing.T) {
	h := memoryHarness(t, LowMemoryRefuse, 200, 130)
	res := h.answer(h.reload(context.Background()))
	want := "not enough memory for a second generation: limit 200 MiB, working set 130 MiB, need 120 MiB (the anonymous and shared memory of generation 1); raise the container's memory limit or set --on-low-memory restart"
	if res.err == nil || res.err.Error() != want {
		t.Fatalf("reload: %+v, want %q", res, want)
	}
	if h.started() != 1 {
		t.Fatalf("%d started", h.started())
	}
	h.wantState("serving")
	if c := h.status().Reloads; c.Refused != 1 || c.Failed != 0 {
		t.Fatalf("counters %+v", c)
	}
	// The limit is read again at each reload: after a resize it fits.
	h.os.setMemory(400, 130, 0)
	h.upgrade(2, 101)
	// ignore upgrades whatever the figures.
	h2 := memoryHarness(t, LowMemoryIgnore, 200, 190)
	r := h2.reload(context.Background())
	h2.wantState("serving", "starting")
	h2.ready(2, 101)
	if res := h2.answer(r); res.gen != 2 {
		t.Fatalf("ignore: %+v", res)
	}
}

// TestLowMemoryWaitsForDrain: a reload that would fit once the draining
// generations are gone waits for them, and one that would not even then
// is refused.
func TestLowMemoryWaitsForDrain(t *testing.T) {
	h := memoryHarness(t, LowMemoryRefuse, 1000, 100)
	h.upgrade(2, 101)
	// Generation 1 drains with 120 MiB; generation 2 holds 120 MiB too.
	h.os.setAnon(101, 120)
	h.os.setMemory(300, 240, 0)
	r := h.reload(context.Background())
	h.noAnswer(r)
	if q := h.status().Queued; q == nil || !strings.Contains(q.Reason, "waiting for 1 draining generations to exit") {
		t.Fatalf("queued: %+v", q)
	}
	h.os.setMemory(300, 120, 0)
	h.exits(true, exited(100, 0))
	h.ready(3, 102)
	if res := h.answer(r); res.gen != 3 || res.err != nil {
		t.Fatalf("after the drain: %+v", res)
	}
	// Generation 2 drains (120 MiB), generation 3 needs 200: it cannot fit
	// even with generation 2 gone.
	h.os.setAnon(102, 200)
	h.os.setMemory(300, 290, 0)
	res := h.answer(h.reload(context.Background()))
	if res.err == nil || !strings.Contains(res.err.Error(), "need 200 MiB") {
		t.Fatalf("reload that never fits: %+v", res)
	}
}

// TestLowMemoryRestart: the upgrade drains generation 1 fully, then starts
// generation 2; reloads meanwhile wait, and are served by generation 2,
// started after them (not by one more restart, a gap in service more);
// probe fails while nothing serves.
func TestLowMemoryRestart(t *testing.T) {
	h := memoryHarness(t, LowMemoryRestart, 200, 130)
	mark := h.os.mark()
	r := h.reload(context.Background())
	if !h.os.hit(100, unix.SIGTERM, mark) || h.started() != 1 {
		t.Fatal("generation 1 not drained first")
	}
	h.wantState("draining")
	if st := h.status(); st.State != "restarting" {
		t.Fatalf("state %s", st.State)
	}
	if _, err := h.s.probe(false); err == nil {
		t.Fatal("probe ready while nothing serves")
	}
	later := h.reload(context.Background())
	h.noAnswer(r)
	h.exits(true, exited(100, 0))
	h.wantState("exited", "starting")
	h.running()
	h.os.setAnon(101, 120)
	h.ready(2, 101)
	if res := h.answer(r); res.gen != 2 || res.err != nil {
		t.Fatalf("restart: %+v", res)
	}
	if res := h.answer(later); res.gen != 2 || res.err != nil {
		t.Fatalf("reload queued during the restart: %+v", res)
	}
	if c := h.status().Reloads; c.Requested != 2 || c.Succeeded != 1 || c.Coalesced != 1 {
		t.Fatalf("counters %+v", c)
	}
	h.wantState("exited", "serving")
}

// TestLowMemoryRestartFails: when the new generation fails, the command
// is started again, once; the container is not left with nothing.
func TestLowMemoryRestartFails(t *testing.T) {
	h := memoryHarness(t, LowMemoryRestart, 200, 130)
	r := h.reload(context.Background())
	h.exits(true, exited(100, 0))
	h.exits(true, exited(101, 3))
	if res := h.answer(r); res.err == nil || !strings.Contains(res.err.Error(), "generation 2 exited with status 3 before ready; starting the command again") {
		t.Fatalf("failed restart: %+v", res)
	}
	h.wantState("exited", "failed", "starting")
	h.ready(3, 102)
	h.wantState("exited", "failed", "serving")
	if c := h.status().Reloads; c.Failed != 1 || c.Succeeded != 0 {
		t.Fatalf("counters %+v", c)
	}
	// A ready timeout fails it too; the second try, like a first
	// generation, ends the container when it exits.
	h2 := memoryHarness(t, LowMemoryRestart, 200, 130)
	h2.reload(context.Background())
	h2.exits(true, exited(100, 0))
	mark := h2.os.mark()
	h2.advance(notifyOpts().ReadyTimeout)
	if !h2.os.hit(101, unix.SIGKILL, mark) {
		t.Fatal("generation 2 not killed at its ready timeout")
	}
	h2.running()
	h2.exits(true, killed(101, unix.SIGKILL))
	h2.wantState("exited", "failed", "starting")
	h2.exits(false, exited(102, 7))
	if e := h2.ended(); e.Code() != 7 {
		t.Fatalf("exit %d", e.Code())
	}
}

// TestOOMNamed: a generation killed by SIGKILL while the container's OOM
// kill count went up is named; the exit status stays 137. A SIGKILL
// without it is not.
func TestOOMNamed(t *testing.T) {
	h := memoryHarness(t, LowMemoryRefuse, 1000, 100)
	h.upgrade(2, 101)
	h.exits(true, killed(100, unix.SIGKILL)) // tini-hot's or an operator's
	if g := h.gen(1); g.OOMKilled {
		t.Fatalf("generation 1: %+v", g)
	}
	h.upgrade(3, 102)
	h.os.setMemory(128, 127, 1)
	h.exits(true, killed(101, unix.SIGKILL))
	if g := h.gen(2); !g.OOMKilled || g.Reason != "generation 2 (pid 101) killed by the OOM killer (limit 128 MiB)" {
		t.Fatalf("generation 2: %+v", g)
	}
	// The OOM killer strikes generation 3, draining, and a reload reads
	// the memory before that exit is reaped: the kill is still named.
	h.os.setMemory(1000, 100, 1)
	h.upgrade(4, 103)
	h.os.setMemory(1000, 100, 2)
	h.reload(context.Background())
	h.exits(true, killed(102, unix.SIGKILL))
	if g := h.gen(3); !g.OOMKilled {
		t.Fatalf("generation 3, OOM-killed before a reload read the memory: %+v", g)
	}
	h.os.setMemory(128, 127, 3)
	h.exits(false, killed(103, unix.SIGKILL), killed(104, unix.SIGKILL))
	if e := h.ended(); e.Code() != 137 {
		t.Fatalf("exit %d", e.Code())
	}
}

// TestOOMBeforeStart: the OOM kills counted when the cgroup was opened,
// before the start, are the baseline: a SIGKILL of generation 1 with no
// kill since is not named.
func TestOOMBeforeStart(t *testing.T) {
	h := newHarness(t, notifyOpts(), func(o *fakeOS) {
		o.opened = usage.Memory{Limit: 128 << 20, WorkingSet: 100 << 20, OOMKills: 2}
		o.mem = o.opened
	})
	h.ready(1, 100)
	h.upgrade(2, 101)
	h.exits(true, killed(100, unix.SIGKILL))
	if g := h.gen(1); g.OOMKilled {
		t.Fatalf("generation 1, SIGKILLed after 2 OOM kills before the start: %+v", g)
	}
	h.os.setMemory(128, 127, 3)
	h.exits(false, killed(101, unix.SIGKILL))
	if e := h.ended(); e.Code() != 137 {
		t.Fatalf("exit %d", e.Code())
	}
}

// TestFigures: status counts reaped processes and observes ready and
// drain times in its histograms.
func TestFigures(t *testing.T) {
	h := newHarness(t, notifyOpts())
	h.advance(30 * 1e6) // 30 ms
	h.ready(1, 100)
	asked := h.clock.Now()
	r := h.reload(context.Background())
	h.advance(2 * 1e9) // 2 s
	h.ready(2, 101)
	h.answer(r)
	// The reload's timings: asked and forked at once, ready 2 s later,
	// and the old generation told to drain at that moment.
	g1, g2 := h.gen(1), h.gen(2)
	if g1.Requested != nil || *g2.Requested != asked || g2.Started != asked || *g2.Ready != asked.Add(2e9) || *g1.DrainSignal != *g2.Ready || g2.DrainSignal != nil {
		t.Fatalf("timings: %+v / %+v", g1, g2)
	}
	h.advance(7 * 1e9)
	h.exits(true, exited(100, 0), exited(555, 0))
	st, err := h.s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Reaped != 2 || st.ReadySeconds.Count != 2 || st.ReadySeconds.Sum != 2.03 || st.DrainSeconds.Count != 1 || st.DrainSeconds.Sum != 7 {
		t.Fatalf("figures: reaped %d ready %+v drain %+v", st.Reaped, st.ReadySeconds, st.DrainSeconds)
	}
	// le 0.05 holds the 30 ms start, le 2.5 both.
	if st.ReadySeconds.Counts[3] != 1 || st.ReadySeconds.Counts[8] != 2 || st.DrainSeconds.Counts[9] != 0 || st.DrainSeconds.Counts[10] != 1 {
		t.Fatalf("buckets %v / %v", st.ReadySeconds.Counts, st.DrainSeconds.Counts)
	}
	if g := st.Generations[1]; g.GenerationUsage == nil || g.Processes != 1 || st.Generations[0].GenerationUsage != nil {
		t.Fatalf("generation figures: %+v", st.Generations)
	}
	if st.Container.Cgroup != "v2" {
		t.Fatalf("container %+v", st.Container)
	}
}
