package upgrade

import (
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/internal/usage"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// The fakes behind the seam: processes that exist only as pids, a clock
// that moves only when the test says, and a reaper that reports the exits
// the test makes up. Every event reaches the supervisor through its own
// loop, one at a time, so each test is a deterministic script.

// fakeClock is a clock with timers that fire when advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// next takes the earliest timer due by then, if any, and moves the clock
// to it.
// armed counts the timers neither fired nor stopped.
func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tm := range c.timers {
		if !tm.stopped {
			n++
		}
	}
	return n
}

func (c *fakeClock) next(then time.Time) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	for i, t := range c.timers {
		if t.stopped {
			continue
		}
		if t.at.After(then) {
			break
		}
		c.timers = append(c.timers[:i:i], c.timers[i+1:]...)
		t.stopped = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		return t
	}
	c.now = then
	return nil
}

// fakeOS is the processes: every start gets the next pid (or one the test
// chose), signals are recorded.
type fakeOS struct {
	mu        sync.Mutex
	snapshots int // process-table snapshots taken
	members   int // membership questions asked
	releases  int // calls of release
	nextPid   int
	reuse     []int // pids the next starts get, first first
	starts    []launch.Spec
	pids      []int
	failWhen  func(launch.Spec) error
	kills     []sent        // by pid (the main process or its group)
	signals   []sent        // through the process table
	extra     map[int][]int // more processes of generation N
	others    []int         // processes below the supervisor not in any generation
	// kids, when set, are the processes the supervisor adopted; otherwise
	// every process of the fake table is, exited or not.
	kids []int
	// The container's memory, what it was when the cgroup was opened,
	// and each pid's anonymous memory.
	mem    usage.Memory
	opened usage.Memory
	anon   map[int]uint64
	// own is the supervisor's own RssAnon (0, unknown, by default), or
	// ownErr why it cannot be read.
	own    uint64
	ownErr error
	// fg is the terminal's foreground process group; 0: no terminal.
	fg int
	// holders are the pids that hold a socket, by inode (listen.Holders).
	holders map[uint64][]int
}

func (o *fakeOS) holdersOf(inodes []uint64) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int
	for _, ino := range inodes {
		out = append(out, o.holders[ino]...)
	}
	return out
}

func (o *fakeOS) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.releases++
}

func (o *fakeOS) ownAnon() (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.own, o.ownErr
}

func (o *fakeOS) memory() (usage.Memory, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mem, nil
}

func (o *fakeOS) openedMemory() (usage.Memory, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opened, nil
}

func (o *fakeOS) figures(ps []proctree.Process) usage.Figures {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := usage.Figures{Processes: len(ps), Threads: len(ps)}
	for _, p := range ps {
		f.MemoryBytes += o.anon[p.Pid]
	}
	return f
}

// setMemory sets the container's limit, working set and OOM kills, in
// MiB for the first two.
func (o *fakeOS) setMemory(limit, workingSet, oomKills uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mem = usage.Memory{Limit: limit << 20, WorkingSet: workingSet << 20, OOMKills: oomKills}
}

// setAnon gives pid n MiB of anonymous memory.
func (o *fakeOS) setAnon(pid int, n uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.anon[pid] = n << 20
}

type sent struct {
	pid int
	sig unix.Signal
}

func (o *fakeOS) start(spec launch.Spec) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failWhen != nil {
		if err := o.failWhen(spec); err != nil {
			return 0, err
		}
	}
	pid := o.nextPid
	if len(o.reuse) > 0 {
		pid, o.reuse = o.reuse[0], o.reuse[1:]
	} else {
		o.nextPid++
	}
	o.starts = append(o.starts, spec)
	o.pids = append(o.pids, pid)
	if spec.Foreground && o.fg != 0 {
		o.fg = pid
	}
	return pid, nil
}

// foreground is launch.PassForeground on a fake terminal: a start with
// Foreground takes it too (see start).
func (o *fakeOS) foreground(from, to int) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fg == 0 || o.fg != from {
		return false, nil
	}
	o.fg = to
	return true, nil
}

func (o *fakeOS) kill(pid int, sig unix.Signal) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kills = append(o.kills, sent{pid, sig})
	return nil
}

// procs is a snapshot: it reads the fake table when asked, and counts
// the snapshots taken.
func (o *fakeOS) procs() procs {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.snapshots++
	return fakeProcs{o}
}

// member reads the fake table, and counts the questions asked.
func (o *fakeOS) member(gen, pid, sender int) bool {
	o.mu.Lock()
	o.members++
	o.mu.Unlock()
	return slices.ContainsFunc(o.tree(pid, gen, true), func(p proctree.Process) bool { return p.Pid == sender })
}

func (o *fakeOS) adopted() ([]int, error) {
	if o.kids != nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		return slices.Clone(o.kids), nil
	}
	var out []int
	for _, p := range o.othersList() {
		out = append(out, p.Pid)
	}
	return out, nil
}

type fakeProcs struct{ o *fakeOS }

func (f fakeProcs) tree(pid, gen int, mainAlive bool) []proctree.Process {
	return f.o.tree(pid, gen, mainAlive)
}

func (f fakeProcs) others() []proctree.Process { return f.o.othersList() }

func (o *fakeOS) tree(pid, gen int, mainAlive bool) []proctree.Process {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []proctree.Process
	if mainAlive {
		out = append(out, proctree.Process{Pid: pid})
	}
	for _, p := range o.extra[gen] {
		out = append(out, proctree.Process{Pid: p})
	}
	return out
}

func (o *fakeOS) othersList() []proctree.Process {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []proctree.Process
	for _, p := range o.others {
		out = append(out, proctree.Process{Pid: p})
	}
	for _, ps := range o.extra {
		for _, p := range ps {
			out = append(out, proctree.Process{Pid: p})
		}
	}
	for _, p := range o.pids {
		out = append(out, proctree.Process{Pid: p})
	}
	return out
}

func (o *fakeOS) signal(ps []proctree.Process, sig unix.Signal) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		o.signals = append(o.signals, sent{p.Pid, sig})
	}
	return len(ps)
}

// hit reports whether pid got sig, by pid or through the process table,
// since mark (an index into kills and signals).
func (o *fakeOS) hit(pid int, sig unix.Signal, from mark) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.kills[from.kills:] {
		if (s.pid == pid || s.pid == -pid) && s.sig == sig {
			return true
		}
	}
	for _, s := range o.signals[from.signals:] {
		if s.pid == pid && s.sig == sig {
			return true
		}
	}
	return false
}

type mark struct{ kills, signals int }

func (o *fakeOS) mark() mark {
	o.mu.Lock()
	defer o.mu.Unlock()
	return mark{len(o.kills), len(o.signals)}
}

// fakeNotifier is a notify socket that never delivers: the test sends
// notices itself. pending, when set, says a datagram waits in it.
type fakeNotifier struct{ pending *atomic.Bool }

func (fakeNotifier) Env() string                                    { return "@fake" }
func (fakeNotifier) Serve(int, chan<- notifyEvent, <-chan struct{}) {}
func (fakeNotifier) Close() error                                   { return nil }
func (n fakeNotifier) Pending() bool                                { return n.pending != nil && n.pending.Load() }

// fakeReaper reports the exits the test queued; its channels never fire
// (the test drives reaping through the loop itself).
type fakeReaper struct {
	never    chan os.Signal
	exits    []reaper.Exit // owned by the supervisor's goroutine
	children bool
	all      []unix.Signal // SignalAll calls
}

func (r *fakeReaper) Reapable() <-chan os.Signal     { return r.never }
func (r *fakeReaper) Terminations() <-chan os.Signal { return r.never }
func (r *fakeReaper) Signals() <-chan os.Signal      { return r.never }
func (r *fakeReaper) Reap() ([]reaper.Exit, bool) {
	e := r.exits
	r.exits = nil
	return e, r.children
}
func (r *fakeReaper) Subscribed() <-chan struct{} { return subscribed }

// subscribed is closed: a fake reaper forwards every signal from the
// start.
var subscribed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *fakeReaper) SignalAll(sig unix.Signal) (int, error) {
	r.all = append(r.all, sig)
	return 1, nil
}
