package upgrade

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// FuzzMachine runs the state machine on an arbitrary script: reloads by
// command and by signal, READY=1 from any generation's process or from a
// stranger, exits of any process in any order and in batches, pids
// reused, forks that fail, time jumps that fire every timer, prestop,
// probes, callers that give up, SIGTERM at any point, the container's
// memory changing. Whatever the script, after every event the supervisor
// answers, at most one generation serves, no signal goes to a pid already
// reaped, and what it keeps (generations, timers) stays bounded; at the end, SIGTERM and the
// exit of every process end Run within the grace period, and every reload
// asked for has been answered.
func FuzzMachine(f *testing.F) {
	for _, seed := range [][]byte{
		scriptOf([3]byte{0, 0, 0}, opReady, 5, opReload, 0, opReady, 0, opExit, 0, opAdvance, 7),
		scriptOf([3]byte{1, 1, 1}, opAdvance, 3, opReload, 0, opSIGHUP, 0, opAdvance, 4, opCancel, 0, opExit, 1, opSIGTERM, 0),
		scriptOf([3]byte{2, 2, 0}, opExit, 1, opExit, 0, opAdvance, 2, opReload, 0, opExit, 2, opAdvance, 8, opPrestop, 0),
		scriptOf([3]byte{3, 5, 2}, opReady, 5, opMemory, 3, opReload, 0, opReuse, 0, opReload, 0, opBatch, 0, opFork, 1, opReload, 0),
		scriptOf([3]byte{4, 4, 0}, opReady, 5, opWorker, 0, opReload, 1, opReady, 4, opOOM, 0, opExit, 17, opAdvance, 5, opProbe, 3),
		// TestServingExitsAsCheckPasses and TestRestartsForgotten.
		scriptOf([3]byte{2, 0, 0}, opExit, 4, opReload, 0, opBatch, 0, opExit, 1, opExit, 12, opBatch, 0),
		scriptOf([3]byte{7, 0, 0}, opReady, 5, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5,
			opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8,
			opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1,
			opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5,
			opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8, opExit, 1, opReady, 5, opAdvance, 8,
			opExit, 1, opReady, 5, opAdvance, 8),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) < 3 || len(script) > 400 {
			return
		}
		runScript(t, script)
	})
}

// scriptOf is a script with options bytes o and events, an op and its
// argument each.
func scriptOf(o [3]byte, events ...byte) []byte {
	b := o[:]
	for i := 0; i+1 < len(events); i += 2 {
		b = append(b, byte(slices.Index(opOf, events[i])), events[i+1])
	}
	return b
}

// The script's events: an op byte, then an argument byte.
const (
	opReload  = iota // by command; the argument's low bit: wait for the drain
	opSIGHUP         // the reload signal
	opReady          // READY=1 from the newest generation, the serving one, any, a worker or a stranger, by arg%8
	opExit           // the exit of one live process (see exit)
	opAdvance        // the clock moves by advanceBy[arg]
	opSIGTERM
	opPrestop
	opProbe   // a probe (arg%4 < 3) or a status request
	opCancel  // the oldest waiting reload's caller gives up
	opForward // a signal forwarded to the application
	opFork    // forks fail (arg odd) or work again
	opMemory  // the container's memory changes
	opReuse   // the next start gets a pid already reaped
	opBatch   // the exits up to the next opBatch (or another op) are reaped in one batch
	opOOM     // the container's OOM-kill count goes up
	opSIGINT
	opWorker // a process of a live generation starts a worker
	numOps
)

// opWeights makes scripts of random bytes mostly upgrades: every op
// appears, the ones that end the container rarely.
var opWeights = [numOps]int{opReload: 5, opSIGHUP: 3, opReady: 6, opExit: 4, opAdvance: 5, opReuse: 2,
	opSIGTERM: 1, opPrestop: 1, opProbe: 1, opCancel: 1, opForward: 1, opFork: 1, opMemory: 1, opBatch: 1, opOOM: 1, opSIGINT: 1, opWorker: 2}

// opOf maps a script byte to an op, by opWeights.
var opOf = func() []byte {
	var t []byte
	for op, w := range opWeights {
		for range w {
			t = append(t, byte(op))
		}
	}
	return t
}()

var advanceBy = []time.Duration{time.Millisecond, 50 * time.Millisecond, 250 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 11 * time.Second, 31 * time.Second, time.Minute}

// script is the state of one run: what the fakes hold, seen from outside.
type script struct {
	h       *harness
	t       *testing.T
	live    []int   // processes started and not reaped
	gone    []int   // pids reaped, in order (one a reused pid had each time)
	waiting []*call // reloads not answered yet
	calls   []*call // every reload asked for
	kills   int     // fakeOS.kills checked so far
	forks   bool    // forks fail
	ended   bool    // Run has returned, or is returning
	workers []int   // pids of the workers started (not in fakeOS.pids)
	// batch is the exits gathered while batching, reaped together.
	batch    []reaper.Exit
	batching bool
}

// call is a reload by command: its answer, and its caller giving up.
type call struct {
	res    chan result
	cancel context.CancelFunc
	got    *result // the answer, once taken from res
}

// scriptOptions reads the options from a script's first three bytes: the
// readiness and the restart policy; --max-draining, --on-low-memory and
// -g; the shutdown delay and a drain timeout short enough to fire.
func scriptOptions(b []byte) Options {
	o := Options{
		ReadyTimeout: 10 * time.Second,
		DrainTimeout: 30 * time.Second,
		KillTimeout:  5 * time.Second,
		GracePeriod:  30 * time.Second,
		MaxDraining:  1 + int(b[1]%3),
		OnLowMemory:  []LowMemory{LowMemoryRefuse, LowMemoryRestart, LowMemoryIgnore}[b[1]/3%3],
		Restart:      []RestartPolicy{RestartNever, RestartOnFailure, RestartAlways}[b[0]/3%3],
		SignalGroup:  b[1]&0x80 != 0,
	}
	switch b[0] % 3 {
	case 0:
		o.Ready = Readiness{Mode: ReadyNotify}
	case 1:
		o.Ready = Readiness{Mode: ReadyDelay, Delay: time.Second}
	case 2:
		o.Ready = Readiness{Mode: ReadyExec, Command: []string{"check"}}
	}
	if b[2]&1 != 0 {
		o.ShutdownDelay = 5 * time.Second
	}
	if b[2]&2 != 0 {
		o.DrainTimeout = 2 * time.Second
	}
	return o
}

// scriptFigures is what a script made the supervisor do.
type scriptFigures struct {
	events, generations, restarts int
	reloads                       ReloadCounters
}

// runScript runs script b, checking after every event, and ends it.
func runScript(t *testing.T, b []byte) scriptFigures {
	s := &script{t: t}
	s.h = newHarness(t, scriptOptions(b), func(o *fakeOS) {
		o.failWhen = func(launch.Spec) error {
			if s.forks {
				return errFork
			}
			return nil
		}
	})
	s.syncLive()
	var fig scriptFigures
	for i := 3; i+1 < len(b) && !s.ended; i += 2 {
		s.step(opOf[int(b[i])%len(opOf)], b[i+1])
		fig.events++
		s.do(func() { fig.generations, fig.restarts, fig.reloads = s.h.s.next-1, s.h.s.restarts, s.h.s.counters })
		if s.ended {
			break
		}
		s.check(fmt.Sprintf("after event %d (op %d, arg %d)", (i-3)/2, opOf[int(b[i])%len(opOf)], b[i+1]))
	}
	s.finale()
	return fig
}

// do runs f on the supervisor's goroutine, unless Run has returned, and
// reports whether it ran.
func (s *script) do(f func()) bool {
	if s.ended {
		return false
	}
	err := s.h.s.call(context.Background(), func() {
		f()
		s.ended = s.h.s.over
	})
	if err != nil {
		s.ended = true
		return false
	}
	return true
}

// signal delivers sig as the reaper would.
func (s *script) signal(sig unix.Signal) {
	s.do(func() { s.h.s.onSignal(sig) })
}

// advance moves the clock by d, firing every timer due on the way, each
// handled before the next.
func (s *script) advance(d time.Duration) {
	c := s.h.clock
	then := c.Now().Add(d)
	for t := c.next(then); t != nil && !s.ended; t = c.next(then) {
		t.f() // posts to the supervisor, or returns once Run has
		s.do(func() {})
	}
}

// syncLive adds the processes started since the last call.
func (s *script) syncLive() {
	s.h.os.mu.Lock()
	defer s.h.os.mu.Unlock()
	known := len(s.live) - len(s.workers) + len(s.gone)
	s.live = append(s.live, s.h.os.pids[known:]...)
}

// exit ends the live process that a picks: a&3 says how (status 0,
// status 3, SIGKILL, SIGSEGV); with a&4, among the processes but the
// serving generation's (whose end ends the container but with --restart);
// a>>3 is the index. The exit is reaped at once, or with the batch being
// gathered (opBatch).
func (s *script) exit(a byte) {
	pool := s.live
	if a&4 != 0 {
		var cur int
		s.do(func() { cur = s.h.s.current.pid })
		pool = slices.DeleteFunc(slices.Clone(s.live), func(p int) bool { return p == cur })
	}
	if len(pool) == 0 {
		return
	}
	pid := pool[int(a>>3)%len(pool)]
	s.live = slices.DeleteFunc(s.live, func(p int) bool { return p == pid })
	if j := slices.Index(s.workers, pid); j >= 0 {
		s.workers = slices.Delete(s.workers, j, j+1)
		s.h.os.mu.Lock()
		for gen, ws := range s.h.os.extra {
			s.h.os.extra[gen] = slices.DeleteFunc(ws, func(p int) bool { return p == pid })
		}
		s.h.os.mu.Unlock()
	} else {
		s.gone = append(s.gone, pid)
	}
	e := []reaper.Exit{exited(pid, 0), exited(pid, 3), killed(pid, unix.SIGKILL), killed(pid, unix.SIGSEGV)}[a&3]
	s.batch = append(s.batch, e)
	if !s.batching {
		s.flush()
	}
}

// flush reaps the exits gathered, in one batch.
func (s *script) flush() {
	if len(s.batch) > 0 {
		s.reapBatch(len(s.live) > 0, s.batch...)
	}
	s.batch = nil
}

// reapBatch makes the reaper report es, with children left or not.
func (s *script) reapBatch(children bool, es ...reaper.Exit) {
	s.do(func() {
		s.h.r.exits, s.h.r.children = es, children
		s.h.s.onReapable()
	})
}

func (s *script) step(op, arg byte) {
	h := s.h
	if op != opExit && op != opBatch {
		s.flush()
	}
	switch op {
	case opReload:
		ctx, cancel := context.WithCancel(context.Background())
		c := &call{res: make(chan result, 1), cancel: cancel}
		var before int
		s.do(func() { before = h.s.counters.Requested })
		go func() {
			gen, err := h.s.Reload(ctx, arg%2 == 1, "fuzz")
			c.res <- result{gen, err}
		}()
		for taken := false; !taken && !s.ended; {
			s.do(func() { taken = h.s.counters.Requested > before })
			time.Sleep(50 * time.Microsecond)
		}
		s.waiting = append(s.waiting, c)
		s.calls = append(s.calls, c)
	case opSIGHUP:
		s.signal(unix.SIGHUP)
	case opReady:
		var gen, pid int
		s.do(func() {
			switch arg % 8 {
			case 5:
				gen = h.s.current.number
			case 6, 7:
				gen = int(arg) % (h.s.next + 1)
			default:
				gen = h.s.next - 1 // the newest
			}
			for _, g := range h.s.gens {
				if g.number == gen {
					pid = g.pid
				}
			}
		})
		switch arg % 8 {
		case 7:
			pid = 99999 // a stranger
		case 4:
			h.os.mu.Lock()
			if ws := h.os.extra[gen]; len(ws) > 0 {
				pid = ws[int(arg)%len(ws)] // a worker of its own
			}
			h.os.mu.Unlock()
		}
		s.do(func() {
			h.s.onNotice(notifyEvent{gen: gen, sender: pid, at: h.clock.Now(), notice: notice{ready: true}})
		})
	case opExit:
		s.exit(arg)
	case opAdvance:
		s.advance(advanceBy[int(arg)%len(advanceBy)])
	case opSIGTERM:
		// Rarer than its weight: it ends the script's interesting part.
		if arg%4 == 0 {
			s.signal(unix.SIGTERM)
		} else {
			s.signal(unix.SIGUSR2)
		}
	case opPrestop:
		if arg%4 == 0 {
			_, _ = h.s.Prestop(context.Background(), arg%8 == 4) // or its cancel
		}
	case opProbe:
		if arg%4 == 3 {
			_, _ = h.s.Status(context.Background())
		} else {
			_, _ = h.s.Probe(context.Background(), arg%2 == 1)
		}
	case opCancel:
		if len(s.waiting) > 0 {
			c := s.waiting[0]
			c.cancel()
			// Its answer, or the cancel's error once the supervisor has
			// been told to forget it.
			select {
			case r := <-c.res:
				c.got = &r
				s.waiting = s.waiting[1:]
			case <-time.After(10 * time.Second):
				s.t.Fatal("a cancelled reload did not return")
			}
		}
	case opForward:
		s.signal(unix.SIGUSR1)
	case opFork:
		s.forks = arg%2 == 1
	case opMemory:
		h.os.setMemory(128, uint64(arg%4)*40, 0)
		var pid int
		s.do(func() { pid = h.s.current.pid })
		h.os.setAnon(pid, uint64(arg/4%3)*40)
	case opReuse:
		// The kernel gives a pid again once it is reaped, never while
		// its process lives (or another start already has it).
		h.os.mu.Lock()
		for _, pid := range s.gone[min(int(arg), len(s.gone)):] {
			if !slices.Contains(s.live, pid) && !slices.Contains(h.os.reuse, pid) {
				h.os.reuse = append(h.os.reuse, pid)
				break
			}
		}
		h.os.mu.Unlock()
	case opBatch:
		if s.batching {
			s.flush()
		}
		s.batching = !s.batching
	case opOOM:
		h.os.mu.Lock()
		h.os.mem.OOMKills++
		h.os.mu.Unlock()
	case opSIGINT:
		s.signal(unix.SIGINT)
	case opWorker:
		var gen int
		s.do(func() {
			var live []*generation
			for _, g := range h.s.gens {
				if !g.exited {
					live = append(live, g)
				}
			}
			if len(live) > 0 {
				gen = live[int(arg)%len(live)].number
			}
		})
		if gen > 0 {
			h.os.mu.Lock()
			pid := h.os.nextPid
			h.os.nextPid++
			h.os.extra[gen] = append(h.os.extra[gen], pid)
			h.os.mu.Unlock()
			s.workers = append(s.workers, pid)
			s.live = append(s.live, pid)
		}
	}
	s.do(func() {})
	s.syncLive()
	s.collect()
}

// collect takes the answers that have come.
func (s *script) collect() {
	s.waiting = slices.DeleteFunc(s.waiting, func(c *call) bool {
		select {
		case r := <-c.res:
			c.got = &r
			return true
		default:
			return false
		}
	})
}

// check asserts what must hold after any event.
func (s *script) check(when string) {
	t, h := s.t, s.h
	t.Helper()
	var serving, kept, live int
	s.do(func() {
		kept = len(h.s.gens)
		for _, g := range h.s.gens {
			if g.state == stateServing {
				serving++
			}
			if !g.exited {
				live++
			}
			if g.exited && g.state != stateExited && g.state != stateFailed {
				t.Errorf("%s: generation %d exited in state %s", when, g.number, g.state)
			}
			if len(g.timers) > 4 {
				t.Errorf("%s: generation %d keeps %d timers", when, g.number, len(g.timers))
			}
		}
		if h.s.current == nil {
			t.Errorf("%s: no current generation", when)
		}
	})
	if serving > 1 {
		t.Fatalf("%s: %d generations serving", when, serving)
	}
	if kept > keepEnded+live+1 {
		t.Fatalf("%s: %d generations kept, %d of them live", when, kept, live)
	}
	// Every reload not answered is still held by the supervisor: one
	// lost would leave its caller (tini-hot reload, a hook) waiting for
	// good. An answer may be on its way to the caller: poll.
	var held int
	for i := 0; ; i++ {
		s.collect()
		s.do(func() { held = heldWaiters(h.s) })
		if held == len(s.waiting) || s.ended {
			break
		}
		if i == 1000 {
			t.Fatalf("%s: %d reloads waiting, %d held by the supervisor", when, len(s.waiting), held)
		}
		time.Sleep(time.Millisecond)
	}
	// A signal by pid only ever reaches a process not reaped yet.
	h.os.mu.Lock()
	kills := h.os.kills[s.kills:]
	s.kills = len(h.os.kills)
	h.os.mu.Unlock()
	for _, k := range kills {
		pid := max(k.pid, -k.pid)
		if !slices.Contains(s.live, pid) {
			t.Fatalf("%s: %v sent to %d, which is not a live process (live %v)", when, k.sig, k.pid, s.live)
		}
	}
	// Timers: a handful per live generation, and a few of the
	// supervisor's own.
	if armed := h.clock.armed(); armed > 4*live+8 {
		t.Fatalf("%s: %d timers armed for %d live generations", when, armed, live)
	}
}

// heldWaiters counts the reloads s will answer: queued, waiting for a
// generation to be ready or to drain, or for a restart.
func heldWaiters(s *Supervisor) int {
	seen := map[*waiter]bool{}
	add := func(ws []*waiter) {
		for _, w := range ws {
			if w != nil && !w.done {
				seen[w] = true
			}
		}
	}
	add(s.pending)
	for _, g := range s.gens {
		add(g.waiters)
		add(g.drainWaiters)
	}
	if s.replace != nil {
		add(s.replace.waiters)
	}
	return len(seen)
}

// finale terminates the container: SIGTERM, then time passes and every
// process exits. Run must return within the grace period (and a poll
// interval), and every reload must have its answer.
func (s *script) finale() {
	t, h := s.t, s.h
	s.batching = false
	s.flush()
	s.signal(unix.SIGTERM)
	s.syncLive()
	for i := 0; i < 40 && !s.ended; i++ {
		s.check(fmt.Sprintf("finale step %d", i))
		s.advance(time.Second)
		if s.ended {
			break
		}
		s.syncLive()
		// The processes take their time, then all end.
		if i >= 5 {
			if len(s.live) == 0 {
				s.reapBatch(false)
			} else {
				s.batching = true
				for range s.live {
					s.exit(0)
				}
				s.batching = false
				s.flush()
			}
		}
	}
	if !s.ended {
		t.Fatalf("Run did not return within 40 s of SIGTERM; live %v", s.live)
	}
	e := h.ended()
	if !slices.Contains(s.gone, e.Pid) {
		t.Errorf("Run's exit %+v is no reaped process's", e)
	}
	for _, c := range s.calls {
		c.cancel()
		if c.got != nil {
			continue
		}
		select {
		case r := <-c.res:
			if r.err == nil && r.gen == 0 {
				t.Errorf("reload answered generation 0 without an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a reload is still waiting after Run returned")
		}
	}
	for _, c := range s.calls {
		if c.got != nil && c.got.err == nil && c.got.gen == 0 {
			t.Errorf("reload answered generation 0 without an error")
		}
	}
}

// TestMachineScripts runs FuzzMachine's checks on pseudo-random scripts,
// the same ones every run, so that the test command explores more than
// the fuzz seeds.
func TestMachineScripts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 300
	if testing.Short() {
		n = 30
	}
	var sum scriptFigures
	long := 0
	for i := range n {
		b := make([]byte, 3+2*(10+rng.IntN(150)))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			f := runScript(t, b)
			sum.events += f.events
			sum.generations += f.generations
			sum.restarts += f.restarts
			sum.reloads.Requested += f.reloads.Requested
			sum.reloads.Succeeded += f.reloads.Succeeded
			sum.reloads.Failed += f.reloads.Failed
			sum.reloads.Refused += f.reloads.Refused
			sum.reloads.Coalesced += f.reloads.Coalesced
			if f.events >= 50 {
				long++
			}
		})
	}
	t.Logf("%d scripts, %d of 50 events or more: %+v", n, long, sum)
	// The scripts must reach what they are for: long runs, upgrades that
	// succeed and that fail, restarts.
	if want := n / 10; long < want || sum.reloads.Succeeded < want || sum.reloads.Failed < want || sum.restarts < want {
		t.Errorf("the scripts explored too little: %d long, %+v, want each at least %d", long, sum, want)
	}
}
