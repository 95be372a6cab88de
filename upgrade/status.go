package upgrade

import (
	"errors"
	"fmt"
	"time"
)

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
	Number  int        `json:"number"`
	Pid     int        `json:"pid"`
	State   string     `json:"state"`
	Started time.Time  `json:"started"`
	Ready   *time.Time `json:"ready,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Exit is how the generation's main process ended ("exited with
	// status 0"); Reason why it failed, for a failed one.
	Exit   string `json:"exit,omitempty"`
	Reason string `json:"reason,omitempty"`
	// AppStatus is the last STATUS= the application sent.
	AppStatus string `json:"app_status,omitempty"`
}

// ListenerStatus is a held socket: its name and the address bound (with
// the port the kernel chose for port 0).
type ListenerStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// ReloadCounters count upgrades since start.
type ReloadCounters struct {
	// Requested counts reload requests (signals and commands).
	Requested int `json:"requested"`
	// Coalesced counts requests folded into an upgrade already queued.
	Coalesced int `json:"coalesced"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// status reports the supervisor.
func (s *Supervisor) status() Status {
	st := Status{Pid: s.self, State: "running", Reloads: s.counters}
	switch {
	case s.closing():
		st.State = s.closedReason()
	case s.upgrading != nil:
		st.State = "upgrading"
	}
	if s.pendingOn {
		st.Queued = &QueuedStatus{Waiters: len(s.pending), Reason: s.queuedReason()}
	}
	for _, g := range s.gens {
		gs := GenerationStatus{Number: g.number, Pid: g.pid, State: g.state.String(), Started: g.started, Reason: g.reason, AppStatus: g.appStatus}
		if !g.ready.IsZero() {
			t := g.ready
			gs.Ready = &t
		}
		if g.exited {
			t := g.ended
			gs.Ended, gs.Exit = &t, g.exit.String()
		}
		st.Generations = append(st.Generations, gs)
	}
	for _, l := range s.opts.Listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.Spec.Name, Address: l.Addr()})
	}
	return st
}

// queuedReason says what the queued upgrade waits for.
func (s *Supervisor) queuedReason() string {
	if g := s.upgrading; g != nil {
		return fmt.Sprintf("waiting for generation %d to become ready", g.number)
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
