package upgrade

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// harness runs a Supervisor on the fakes.
type harness struct {
	t     *testing.T
	s     *Supervisor
	clock *fakeClock
	os    *fakeOS
	r     *fakeReaper
	exit  chan reaper.Exit
	// pending makes every notify socket say a datagram waits in it.
	pending atomic.Bool
}

// newHarness starts a supervisor with opts (Command defaults to "app")
// whose first generation gets pid 100; setup prepares the fake system
// before it starts.
func newHarness(t *testing.T, opts Options, setup ...func(*fakeOS)) *harness {
	t.Helper()
	if opts.Command == nil {
		opts.Command = []string{"app"}
	}
	opts.Env = []string{}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h := &harness{
		t:     t,
		clock: &fakeClock{now: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		os:    &fakeOS{nextPid: 100, extra: map[int][]int{}, anon: map[int]uint64{}},
		r:     &fakeReaper{never: make(chan os.Signal), children: true},
		exit:  make(chan reaper.Exit, 1),
	}
	sys := sys{
		now:        h.clock.Now,
		afterFunc:  h.clock.AfterFunc,
		start:      h.os.start,
		kill:       h.os.kill,
		notify:     func(string) (notifier, error) { return fakeNotifier{&h.pending}, nil },
		procs:      h.os.procs,
		member:     h.os.member,
		adopted:    h.os.adopted,
		signal:     h.os.signal,
		foreground: h.os.foreground,
		cgroup:     func() (string, string) { return "v2", "/sys/fs/cgroup" },
		memory:     h.os.memory,
		opened:     h.os.openedMemory,
		figures:    h.os.figures,
		release:    h.os.release,
		anon:       h.os.ownAnon,
		holders:    h.os.holdersOf,
	}
	for _, f := range setup {
		f(h.os)
	}
	s, err := newSupervisor(opts, h.r, sys, 1)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	go func() {
		e, err := s.Run()
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		h.exit <- e
	}()
	h.sync()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			// End the loop: every process gone.
			h.do(func() { h.r.children = false; s.finishing = true; s.over = true })
		}
	})
	return h
}

// do runs f on the supervisor's goroutine and waits until it has run.
func (h *harness) do(f func()) {
	h.t.Helper()
	if err := h.s.call(context.Background(), f); err != nil {
		h.t.Fatalf("supervisor gone: %v", err)
	}
}

// sync waits until everything sent to the supervisor has been handled.
func (h *harness) sync() { h.do(func() {}) }

// advance moves the clock by d, firing every timer due on the way, in
// order, each handled before the next.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	then := h.clock.Now().Add(d)
	for t := h.clock.next(then); t != nil; t = h.clock.next(then) {
		t.f()
		h.sync()
	}
}

// signal delivers sig as the reaper would.
func (h *harness) signal(sig unix.Signal) {
	h.do(func() { h.s.onSignal(sig) })
}

// exits makes the reaper report these exits, in one batch, with children
// left or not.
func (h *harness) exits(children bool, es ...reaper.Exit) {
	h.do(func() {
		h.r.exits, h.r.children = es, children
		h.s.onReapable()
	})
}

// exited is pid's exit with code, or by signal when sig is set.
func exited(pid, code int) reaper.Exit {
	return reaper.Exit{Pid: pid, Status: unix.WaitStatus(code << 8)}
}

func killed(pid int, sig unix.Signal) reaper.Exit {
	return reaper.Exit{Pid: pid, Status: unix.WaitStatus(sig)}
}

// notify delivers READY=1 from gen's main process.
func (h *harness) ready(gen, pid int) {
	h.do(func() { h.s.onNotice(notifyEvent{gen: gen, sender: pid, notice: notice{ready: true}}) })
}

// reload starts a reload and returns its answer channel once the
// supervisor has taken it.
func (h *harness) reload(ctx context.Context) <-chan result {
	h.t.Helper()
	out := make(chan result, 1)
	var before int
	h.do(func() { before = h.s.counters.Requested })
	go func() {
		gen, err := h.s.Reload(ctx, false, "test")
		out <- result{gen, err}
	}()
	h.until("the reload to be taken", func(s *Supervisor) bool { return s.counters.Requested > before })
	return out
}

// until polls cond on the supervisor's goroutine for up to 10 s: for
// what another goroutine sends, whose arrival no barrier marks.
func (h *harness) until(what string, cond func(*Supervisor) bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		h.do(func() { ok = cond(h.s) })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// upgrade reloads to generation gen, whose process pid says READY=1, and
// fails the test unless the reload answers gen.
func (h *harness) upgrade(gen, pid int) {
	h.t.Helper()
	r := h.reload(context.Background())
	h.ready(gen, pid)
	if res := h.answer(r); res.gen != gen || res.err != nil {
		h.t.Fatalf("reload to generation %d: %+v", gen, res)
	}
}

// answer waits for a reload's answer.
func (h *harness) answer(c <-chan result) result {
	h.t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("no answer to the reload")
		return result{}
	}
}

// noAnswer checks that a reload is still waiting.
func (h *harness) noAnswer(c <-chan result) {
	h.t.Helper()
	h.sync()
	select {
	case r := <-c:
		h.t.Fatalf("reload answered %+v, want it still waiting", r)
	default:
	}
}

// status is the supervisor's status.
func (h *harness) status() Status {
	var st Status
	h.do(func() { st = h.s.status() })
	return st
}

// gen is generation n's status.
func (h *harness) gen(n int) GenerationStatus {
	h.t.Helper()
	for _, g := range h.status().Generations {
		if g.Number == n {
			return g
		}
	}
	h.t.Fatalf("no generation %d in %+v", n, h.status().Generations)
	return GenerationStatus{}
}

// wantState checks the state of each generation, by number from 1.
func (h *harness) wantState(states ...string) {
	h.t.Helper()
	var got []string
	for _, g := range h.status().Generations {
		got = append(got, g.State)
	}
	if !slices.Equal(got, states) {
		h.t.Fatalf("generation states %v, want %v", got, states)
	}
}

// wantReleases fails the test unless the supervisor has given memory
// back want times.
func (h *harness) wantReleases(want int) {
	h.t.Helper()
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	if h.os.releases != want {
		h.t.Fatalf("%d releases, want %d", h.os.releases, want)
	}
}

// ended waits for Run to return and gives its exit.
func (h *harness) ended() reaper.Exit {
	h.t.Helper()
	select {
	case e := <-h.exit:
		return e
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return")
		return reaper.Exit{}
	}
}

// running checks that Run has not returned.
func (h *harness) running() {
	h.t.Helper()
	h.sync()
}

// started is the number of processes started (generations and checks).
func (h *harness) started() int {
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	return len(h.os.starts)
}

var errFork = errors.New("fork: resource temporarily unavailable")
