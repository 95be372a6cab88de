package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Histogram counts durations in seconds by upper bound, cumulatively, as
// a Prometheus histogram does.
type Histogram struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	// Counts[i] counts the observations of at most Bounds[i] seconds.
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
}

// durationBounds are the histograms' upper bounds, in seconds: from a
// fast app's readiness to a long drain.
var durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newHistogram() Histogram {
	return Histogram{Bounds: durationBounds, Counts: make([]uint64, len(durationBounds))}
}

func (h *Histogram) observe(d time.Duration) {
	v := d.Seconds()
	h.Count++
	h.Sum += v
	for i, b := range h.Bounds {
		if v <= b {
			h.Counts[i]++
		}
	}
}

// clone is a copy that shares nothing with h.
func (h Histogram) clone() Histogram {
	h.Counts = slices.Clone(h.Counts)
	return h
}

// Status describes the supervisor: the document `tini-hot status --json`
// prints.
type Status struct {
	Pid   int    `json:"pid"`
	State string `json:"state"`
	// Queued is the upgrade that reloads asked for while another was in
	// progress (or the first generation was starting), nil if none.
	Queued      *QueuedStatus      `json:"queued,omitempty"`
	Generations []GenerationStatus `json:"generations"`
	Listeners   []ListenerStatus   `json:"listeners"`
	Reloads     ReloadCounters     `json:"reloads"`
	// Restarts counts the generations started after the serving one
	// exited on its own (--restart).
	Restarts  int             `json:"restarts"`
	Container ContainerStatus `json:"container"`
	// Signals is SignalsAll once every forwardable signal is forwarded;
	// SignalsEssential in the first milliseconds, while only those that
	// would kill or stop tini-hot are (see reaper.New).
	Signals string `json:"signals"`
	// Reaped counts the processes reaped since start: the generations'
	// main processes, their readiness checks and every orphan.
	Reaped uint64 `json:"reaped"`
	// ReadySeconds is the time from start to ready of every generation
	// that became ready; DrainSeconds from the drain signal to the exit
	// of every generation that drained.
	ReadySeconds Histogram `json:"ready_seconds"`
	DrainSeconds Histogram `json:"drain_seconds"`
}

// The values of [Status.Signals].
const (
	SignalsAll       = "all"
	SignalsEssential = "essential"
)

// ContainerStatus is the memory cgroup tini-hot runs in: the
// container's, or outside a container whatever cgroup started it.
type ContainerStatus struct {
	// Cgroup is "v1", "v2" or "none".
	Cgroup string `json:"cgroup"`
	// Dir is the cgroup's directory, "" for none.
	Dir string `json:"dir,omitempty"`
	// MemoryLimitBytes is the limit, 0 for none.
	MemoryLimitBytes uint64 `json:"memory_limit_bytes"`
	// MemoryUsageBytes is the working set: usage minus inactive file
	// cache.
	MemoryUsageBytes uint64 `json:"memory_usage_bytes"`
	OOMKills         uint64 `json:"oom_kills"`
	// Error says why the figures could not be read.
	Error string `json:"error,omitempty"`
}

// GenerationUsage is what a live generation's process tree uses.
type GenerationUsage struct {
	// MemoryBytes is what a second generation would need next to it:
	// its processes' proportional share (PSS) of anonymous and shared
	// memory (shmem), so that a page several of them map counts once
	// (usage.Figures.MemoryBytes).
	MemoryBytes uint64  `json:"memory_bytes"`
	Processes   int     `json:"processes"`
	Threads     int     `json:"threads"`
	FDs         int     `json:"fds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
}

// QueuedStatus is an upgrade waiting to start.
type QueuedStatus struct {
	// Waiters counts the `tini-hot reload` commands waiting for it
	// (reloads by signal are not counted).
	Waiters int `json:"waiters"`
	// Reason says what it waits for.
	Reason string `json:"reason"`
}

// GenerationStatus is one generation of the application.
type GenerationStatus struct {
	Number int    `json:"number"`
	Pid    int    `json:"pid"`
	State  string `json:"state"`
	// Requested is when the reload it serves was asked for; Started
	// when it was forked; Ready when it said so (READY=1's arrival);
	// DrainSignal when it was told to drain; Ended when its main process
	// was reaped.
	Requested   *time.Time `json:"requested,omitempty"`
	Started     time.Time  `json:"started"`
	Ready       *time.Time `json:"ready,omitempty"`
	DrainSignal *time.Time `json:"drain_signal,omitempty"`
	Ended       *time.Time `json:"ended,omitempty"`
	// Exit is how the generation's main process ended ("exited with
	// status 0"); Reason why it failed, for a failed one.
	Exit   string `json:"exit,omitempty"`
	Reason string `json:"reason,omitempty"`
	// AppStatus is the last STATUS= the application sent.
	AppStatus string `json:"app_status,omitempty"`
	// OOMKilled: the OOM killer ended its main process.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// NoticesIgnored counts the notify messages that would have changed
	// something (READY=1, a new STATUS=) but came from processes outside
	// the generation, or from one reaped before it was asked about; the
	// log names their senders.
	NoticesIgnored int `json:"notices_ignored,omitempty"`
	// Slot is its sockets' slot when the listeners are steered
	// (TINI_HOT_SLOT); Queued what waits in them: TCP connections not
	// accepted yet, and 1 for UDP datagrams unread.
	Slot   *int `json:"slot,omitempty"`
	Queued int  `json:"queued,omitempty"`
	// What its processes use, while its main process lives.
	*GenerationUsage
}

// ListenerStatus is a held socket: its name and the address bound (with
// the port the kernel chose for port 0).
type ListenerStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Listening is false for a stream socket that a generation shut down
	// and that could not listen again (a unix socket); Restored counts
	// the times one listened again (see listen.Guard).
	Listening bool  `json:"listening"`
	Restored  int64 `json:"restored,omitempty"`
	// Mode is "steered" (a socket per slot, see SlotEnv) or "shared"
	// (one socket for every generation: unix sockets, and TCP or UDP
	// when the kernel refused steering, which Fallback explains).
	Mode     string `json:"mode"`
	Slots    int    `json:"slots,omitempty"`
	Fallback string `json:"fallback,omitempty"`
}

// ReloadCounters count upgrades since start.
type ReloadCounters struct {
	// Requested counts reload requests (signals and commands).
	Requested int `json:"requested"`
	// Coalesced counts requests folded into an upgrade already queued.
	Coalesced int `json:"coalesced"`
	Succeeded int `json:"succeeded"`
	// Failed counts upgrades whose new generation failed (or could not
	// be started); Refused the reloads refused before any start: while
	// the container terminates, or without memory for a second
	// generation.
	Failed  int `json:"failed"`
	Refused int `json:"refused"`
}

// Status reports the supervisor, its generations and, read outside the
// supervisor's loop, what the container and each live generation use.
func (s *Supervisor) Status(ctx context.Context) (Status, error) {
	var st Status
	if err := s.request(ctx, func() { st = s.status() }); err != nil {
		return st, err
	}
	// One reader at a time: a goroutine in a system call holds its thread,
	// and the runtime starts another for the rest, which fails at the
	// pids limit, and a Go program that cannot start a thread dies.
	// Measured with 40 clients at once, 5 times, in a container at its
	// pids limit: tini-hot died 3 times in 3 runs before this lock and
	// the threads reserved at start (procs.Reserve).
	s.reading.Lock()
	defer s.reading.Unlock()
	ps := s.sys.procs() // one snapshot for every generation
	for i, g := range st.Generations {
		if g.Ended != nil || g.State == stateFailed.String() {
			continue
		}
		f := s.sys.figures(ps.tree(g.Pid, g.Number, true))
		st.Generations[i].GenerationUsage = &GenerationUsage{MemoryBytes: f.MemoryBytes, Processes: f.Processes, Threads: f.Threads, FDs: f.FDs, CPUSeconds: f.CPUSeconds}
	}
	st.Container.Cgroup, st.Container.Dir = s.sys.cgroup()
	if m, err := s.sys.memory(); err != nil {
		st.Container.Error = err.Error()
	} else {
		st.Container.MemoryLimitBytes, st.Container.MemoryUsageBytes, st.Container.OOMKills = m.Limit, m.WorkingSet, m.OOMKills
	}
	return st, nil
}

// status reports the supervisor.
func (s *Supervisor) status() Status {
	st := Status{Pid: s.self, State: "running", Reloads: s.counters, Restarts: s.restarts, Reaped: s.reaped, ReadySeconds: s.readyTimes.clone(), DrainSeconds: s.drainTimes.clone(), Signals: SignalsAll}
	select {
	case <-s.r.Subscribed():
	default:
		st.Signals = SignalsEssential
	}
	switch {
	case s.closing():
		st.State = s.closedReason()
	case s.upgrading != nil:
		st.State = "upgrading"
	case s.replace != nil || (s.current.replacing && s.current.state == stateStarting):
		st.State = "restarting"
	}
	if s.pendingOn {
		st.Queued = &QueuedStatus{Waiters: len(s.pending), Reason: s.queuedReason()}
	}
	for _, g := range s.gens {
		gs := GenerationStatus{Number: g.number, Pid: g.pid, State: g.state.String(), Started: g.started, Reason: g.reason, AppStatus: g.appStatus, OOMKilled: g.oom, NoticesIgnored: g.ignored}
		gs.Requested, gs.Ready, gs.DrainSignal = timePtr(g.requested), timePtr(g.ready), timePtr(g.drainStart)
		if g.exited {
			t := g.ended
			gs.Ended, gs.Exit = &t, g.exit.String()
		}
		if g.slot != noSlot {
			slot := g.slot
			gs.Slot = &slot
			if !g.exited {
				gs.Queued = s.queued(g)
			}
		}
		st.Generations = append(st.Generations, gs)
	}
	for _, l := range s.opts.Listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.Spec.Name, Address: l.Addr(), Listening: l.Listening(), Restored: l.Restored(),
			Mode: l.Mode(), Slots: l.Slots(), Fallback: l.Fallback})
	}
	return st
}

// timePtr is t, or nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// queuedReason says what the queued upgrade waits for.
func (s *Supervisor) queuedReason() string {
	switch {
	case s.upgrading != nil:
		return fmt.Sprintf("waiting for generation %d to become ready", s.upgrading.number)
	case s.replace != nil:
		return "waiting for the restart to end: " + s.replace.why
	case s.current.replacing && s.firstStarting():
		return fmt.Sprintf("waiting for generation %d to become ready", s.current.number)
	case s.waitReason != "":
		return s.waitReason
	}
	return fmt.Sprintf("waiting for generation %d to become ready (or for --ready-timeout %v)", s.current.number, s.opts.ReadyTimeout)
}

// probe answers a readiness probe (see Supervisor.Probe).
func (s *Supervisor) probe(liveness bool) (int, error) {
	g := s.current
	switch {
	case liveness:
	case s.closing():
		return 0, errors.New("not ready: " + s.closedReason())
	case g.state != stateServing:
		return 0, fmt.Errorf("not ready: generation %d is %s", g.number, g.state)
	}
	return g.number, nil
}
