package upgrade

import (
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/listen"
	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/internal/usage"
	"github.com/tini-hot/tini-hot/reaper"
	"golang.org/x/sys/unix"
)

// sys is the supervisor's private seam to the operating system: starting
// and signalling processes, the process table, notify sockets and the
// clock. Unit tests put fakes behind it and drive the state machine in
// milliseconds, without processes; the real one is osSys.
type sys struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) (stop func() bool)
	start     func(launch.Spec) (pid int, err error)
	// kill signals a pid, or a process group when pid is negative. It is
	// only used for a generation's main process not yet reaped, whose
	// pid cannot have been reused: only the supervisor reaps.
	kill   func(pid int, sig unix.Signal) error
	notify func(name string) (notifier, error)
	// procs takes a snapshot of the process table: one read of /proc
	// serves every question asked of it.
	procs func() procs
	// member reports whether process sender belongs to generation gen,
	// whose main process pid is alive.
	member func(gen, pid, sender int) bool
	// adopted lists the children of the supervisor's main thread, which
	// adopts orphans; only it reaps them, so the list is whole when read
	// between two reaps (proctree.Adopted).
	adopted func() ([]int, error)
	// foreground gives the terminal's foreground to process group to
	// when process group from has it (launch.PassForeground).
	foreground func(from, to int) (bool, error)
	// signal sends sig to each of ps that is still the same process and
	// returns how many.
	signal func(ps []proctree.Process, sig unix.Signal) int
	// cgroup is the memory cgroup's version ("v1", "v2", "none") and
	// directory ("" for none); memory reads its memory now; opened is what was read when the
	// cgroup was found (see usage.Deferred: at the first of these calls).
	cgroup func() (version, dir string)
	memory func() (usage.Memory, error)
	opened func() (usage.Memory, error)
	// figures reads what ps use.
	figures func(ps []proctree.Process) usage.Figures
	// release gives the memory tini-hot's Go runtime holds but does not
	// use back to the system, in the background; a call while one runs
	// does nothing. anon reads tini-hot's own anonymous resident memory.
	release func()
	anon    func() (uint64, error)
	// holders lists the processes other than tini-hot that have a
	// socket of inodes open (listen.Holders).
	holders func(inodes []uint64) []int
}

// procs is a snapshot of the process table.
type procs interface {
	// tree lists the live processes of generation gen, whose main
	// process is pid (mainAlive: not reaped yet).
	tree(pid, gen int, mainAlive bool) []proctree.Process
	// others lists every process left below the supervisor.
	others() []proctree.Process
}

// table is the real procs: a snapshot as seen by the supervisor, pid
// self; init says whether it is PID 1 of its namespace. A snapshot that
// failed is empty.
type table struct {
	t    proctree.Table
	self int
	init bool
}

func (t table) tree(pid, gen int, mainAlive bool) []proctree.Process {
	return t.t.Generation(t.self, pid, mainAlive, generationMarker(gen))
}

func (t table) others() []proctree.Process {
	if t.init {
		// Every process of the namespace, including ones entered from
		// outside it (kubectl exec), whose parent is not in it.
		return t.t.Others(t.self)
	}
	return t.t.Descendants(t.self)
}

// notifier is a generation's NOTIFY_SOCKET.
type notifier interface {
	// Env is the NOTIFY_SOCKET value.
	Env() string
	// Serve delivers the socket's notices to out, tagged with gen, until
	// the socket is closed or done is.
	Serve(gen int, out chan<- notifyEvent, done <-chan struct{})
	// Pending reports whether a datagram waits in the socket, not yet
	// read by Serve.
	Pending() bool
	Close() error
}

// reaperAPI is what the supervisor uses of a *reaper.Reaper.
type reaperAPI interface {
	Reapable() <-chan os.Signal
	Terminations() <-chan os.Signal
	Signals() <-chan os.Signal
	Reap() (exits []reaper.Exit, children bool)
	SignalAll(sig unix.Signal) (int, error)
	Subscribed() <-chan struct{}
}

// osSys is the real seam for a supervisor with pid self in container c;
// init says whether it is PID 1 of its namespace.
func osSys(self int, init bool, c *usage.Container) sys {
	var releasing atomic.Bool
	return sys{
		now: time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
		start: launch.Start,
		kill:  unix.Kill,
		notify: func(name string) (notifier, error) {
			return newNotifySocket(name)
		},
		procs: func() procs {
			t, _ := proctree.Snapshot() // on error: nil, an empty table
			return table{t: t, self: self, init: init}
		},
		member: newMembers(self).member,
		adopted: func() ([]int, error) {
			return proctree.Adopted(self)
		},
		signal:     proctree.SignalAll,
		foreground: launch.PassForeground,
		cgroup:     func() (string, string) { return c.Version(), c.Dir() },
		memory:     c.Memory,
		opened:     c.Opened,
		figures: func(ps []proctree.Process) usage.Figures {
			pids := make([]int, len(ps))
			for i, p := range ps {
				pids[i] = p.Pid
			}
			return usage.Processes(pids)
		},
		release: func() {
			if releasing.CompareAndSwap(false, true) {
				go func() {
					defer releasing.Store(false)
					debug.FreeOSMemory() // a full collection, then every free page returned
				}()
			}
		},
		anon:    usage.OwnAnon,
		holders: listen.Holders,
	}
}

// members answers which generation a process belongs to, for its notify
// messages. A process that sends notices by the thousand (its STATUS
// after each request, say) must not cost tini-hot a look at its
// ancestors each time: a process is judged at its first notice
// (proctree.Member: a read of /proc per level below tini-hot) and the
// verdict kept for its life, by generation, pid and start time: then a
// notice costs one read of /proc/PID/stat, and a pid that was reused is
// asked about anew. A process of the generation that leaves its tree
// later (double-forked, its environment cleared) still counts: it was
// the generation's own.
type members struct {
	self  int
	read  func(pid int) (proctree.Process, error)
	judge func(p proctree.Process, self, pid int, marker string) bool
	mu    sync.Mutex
	known map[memberKey]bool
}

type memberKey struct {
	gen, pid int
	start    uint64
}

// membersKept bounds the verdicts kept: a few KiB. When full, they are
// all dropped, and asked about anew.
const membersKept = 256

func newMembers(self int) *members {
	return &members{self: self, read: proctree.Read, judge: proctree.Member, known: map[memberKey]bool{}}
}

func (m *members) member(gen, pid, sender int) bool {
	p, err := m.read(sender)
	if err != nil {
		return false // it has ended, and been reaped
	}
	key := memberKey{gen, sender, p.Start}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.known[key]; ok {
		return v
	}
	v := m.judge(p, m.self, pid, generationMarker(gen))
	if len(m.known) >= membersKept {
		clear(m.known)
	}
	m.known[key] = v
	return v
}
