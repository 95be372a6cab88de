package upgrade

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tini-hot/tini-hot/internal/listen"
)

// Steered sockets (see internal/listen and internal/steer): each TCP and
// UDP listener is a reuseport group of one socket per slot, and each
// generation gets one slot's sockets. The kernel sends new connections
// (and new QUIC flows) to the serving generation's slot only.
//
//   - The first generation has slot 0. A generation that replaces one
//     that ended (a restart) takes its slot, with whatever is queued
//     there. An upgrade's new generation takes the lowest free slot: no
//     generation of it is alive and no process other than tini-hot
//     holds its sockets (an escaped process of an old generation keeps
//     its slot out of use, and gets nothing new). Before it is given out
//     again, whatever waits in it (a connection whose handshake ended
//     after its generation stopped accepting) is reset, so that the
//     client learns at once, and datagrams are dropped; the log says
//     how many.
//   - At the handover (READY=1) the program sends every new connection
//     to the new generation's slot. The old generation gets its drain
//     signal once its slots' queues are empty (checked every
//     queueCheck), or queueWait after the handover at the latest: what
//     was queued to it is its to accept.

// SlotEnv is the application's slot number, when its listeners are
// steered: the first byte of the QUIC connection IDs it chooses.
const SlotEnv = "TINI_HOT_SLOT"

// queueCheck is how often the old generation's queues are looked at after
// a handover; queueWait bounds the wait (the drain timeout if shorter).
const (
	queueCheck = 10 * time.Millisecond
	queueWait  = 5 * time.Second
)

// noSlot is the slot of a generation without steered listeners.
const noSlot = -1

// steered reports whether any listener has a socket per slot.
func (s *Supervisor) steered() bool {
	for _, l := range s.opts.Listeners {
		if l.Steered() {
			return true
		}
	}
	return false
}

// slots is how many slots the steered listeners have.
func (s *Supervisor) slots() int {
	n := 0
	for _, l := range s.opts.Listeners {
		n = max(n, l.Slots())
	}
	return n
}

// pickSlot chooses the slot of the generation about to start.
func (s *Supervisor) pickSlot() (int, error) {
	if !s.steered() {
		return noSlot, nil
	}
	if s.current == nil {
		return 0, nil // the first generation: steered there since bind
	}
	if s.current.exited {
		return s.current.slot, nil // a restart: in its predecessor's place
	}
	used := map[int]bool{}
	for _, g := range s.gens {
		if !g.exited && g.slot != noSlot {
			used[g.slot] = true
		}
	}
	var held []string
	for slot := range s.slots() {
		if used[slot] {
			continue
		}
		if pids := s.sys.holders(listen.Inodes(s.opts.Listeners, slot)); len(pids) > 0 {
			held = append(held, fmt.Sprintf("slot %d by pid %v", slot, pids))
			continue
		}
		s.flush(slot)
		return slot, nil
	}
	if len(held) > 0 {
		return noSlot, fmt.Errorf("no free socket slot: processes of earlier generations still hold their sockets (%v)", held)
	}
	return noSlot, fmt.Errorf("no free socket slot: %d generations alive", len(used))
}

// flush empties slot's sockets before a new generation gets them.
func (s *Supervisor) flush(slot int) {
	for _, l := range s.opts.Listeners {
		n, err := l.Flush(slot)
		if err != nil {
			s.log.Warn("socket slot not emptied", "listener", l.Spec.Name, "slot", slot, "err", err)
		}
		if n > 0 {
			s.log.Warn("socket slot emptied before reuse: queued after its generation stopped taking them", "listener", l.Spec.Name, "slot", slot, "dropped", n)
		}
	}
}

// slotEnv is the environment that tells a generation its slot.
func slotEnv(slot int) []string {
	if slot == noSlot {
		return nil
	}
	return []string{SlotEnv + "=" + strconv.Itoa(slot)}
}

// steer points the steering programs at the serving generation's slot,
// and QUIC flows at every live generation's.
func (s *Supervisor) steer() {
	if !s.steered() || s.current == nil || s.current.slot == noSlot {
		return
	}
	var live []int
	for _, g := range s.gens {
		if !g.exited && g.slot != noSlot {
			live = append(live, g.slot)
		}
	}
	for _, l := range s.opts.Listeners {
		if err := l.Steer(s.current.slot, live); err != nil {
			s.log.Error("listener not steered", "listener", l.Spec.Name, "err", err)
		}
	}
}

// queued is what waits in g's slot of the listeners whose queue the
// handover waits for (TCP, plain UDP; not QUIC, whose flows stay with g).
func (s *Supervisor) queued(g *generation) int {
	n := 0
	for _, l := range s.opts.Listeners {
		if g.slot == noSlot || l.Spec.Flows == listen.FlowsQUIC {
			continue
		}
		if q, err := l.Queued(g.slot); err == nil {
			n += q
		}
	}
	return n
}

// handOff drains old, the generation the new serving one replaced: with
// steered sockets once what is queued in its slot has been taken (see
// above).
func (s *Supervisor) handOff(old *generation) {
	if old.slot == noSlot || !s.steered() {
		s.drain(old)
		return
	}
	old.state, old.handedOff = stateDraining, s.sys.now()
	limit := min(queueWait, s.opts.DrainTimeout)
	var check func()
	check = func() {
		if old.exited {
			return
		}
		// At the end (the serving generation gone) nothing waits: the
		// end spares a draining generation until its own deadline, which
		// the drain arms.
		waited := s.sys.now().Sub(old.handedOff)
		if q := s.queued(old); q > 0 && waited < limit && !s.finishing {
			old.arm(s.after(queueCheck, check))
			return
		} else if q > 0 {
			s.log.Warn("drain signal before the old generation took what was queued to it", "generation", old.number, "queued", q, "waited", waited.Round(time.Millisecond))
		}
		s.drain(old)
	}
	old.arm(s.after(queueCheck, check))
}
