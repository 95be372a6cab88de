package upgrade

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/listen"
)

// steeredListener binds a real steered TCP listener of 4 slots on
// loopback, for the supervisor under the fakes.
func steeredListener(t *testing.T) *listen.Listener {
	t.Helper()
	l, err := listen.Bind(listen.Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if !l.Steered() {
		t.Fatalf("not steered: %s", l.Fallback)
	}
	return l
}

// steeredHarness is a supervisor on the fakes with one steered listener,
// its first generation (pid 100) ready.
func steeredHarness(t *testing.T) (*harness, *listen.Listener) {
	t.Helper()
	l := steeredListener(t)
	h := newHarness(t, Options{Ready: Readiness{Mode: ReadyNotify}, Listeners: []*listen.Listener{l}})
	h.ready(1, 100)
	return h, l
}

// handedOffWithQueue is steeredHarness upgraded to generation 2 (pid 101)
// while a connection waits in generation 1's slot; m marks the signals
// sent before the upgrade.
func handedOffWithQueue(t *testing.T) (*harness, *listen.Listener, mark) {
	t.Helper()
	h, l := steeredHarness(t)
	queueOne(t, l, 0)
	m := h.os.mark()
	h.upgrade(2, 101)
	return h, l, m
}

// slotOf is the TINI_HOT_SLOT of the i-th process started.
func (h *harness) slotOf(i int) string {
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	for _, kv := range h.os.starts[i].Env {
		if v, ok := strings.CutPrefix(kv, SlotEnv+"="); ok {
			return v
		}
	}
	return ""
}

// queueOne makes a connection that waits in the accept queue of whatever
// slot is serving, until the test ends.
func queueOne(t *testing.T, l *listen.Listener, slot int) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(l.Addr(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _ := l.Queued(slot); n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing queued in slot %d", slot)
		}
	}
}

// TestSteeredSlots: the first generation has slot 0, an upgrade's the
// lowest free one; a slot held by a process outside tini-hot is not
// given out; each generation's slot is in its environment and status.
func TestSteeredSlots(t *testing.T) {
	h, l := steeredHarness(t)
	h.upgrade(2, 101)
	h.advance(queueCheck)
	h.exits(false, exited(100, 0)) // generation 1 drained
	// An escaped process still holds slot 0's socket.
	h.os.mu.Lock()
	h.os.holders = map[uint64][]int{listen.Inodes([]*listen.Listener{l}, 0)[0]: {555}}
	h.os.mu.Unlock()
	h.upgrade(3, 102)
	if got := []string{h.slotOf(0), h.slotOf(1), h.slotOf(2)}; !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("slots %v, want 0, 1, then 2 (0 is held)", got)
	}
	h.advance(queueCheck)
	h.exits(false, exited(101, 0))
	h.os.mu.Lock()
	h.os.holders = nil
	h.os.mu.Unlock()
	h.upgrade(4, 103) // slot 0 free again
	if got := h.slotOf(3); got != "0" {
		t.Fatalf("generation 4: slot %s, want 0", got)
	}
	if g := h.gen(4); g.Slot == nil || *g.Slot != 0 {
		t.Fatalf("status of generation 4: slot %v", g.Slot)
	}
	if st := h.status(); st.Listeners[0].Mode != listen.ModeSteered || st.Listeners[0].Slots != 4 {
		t.Fatalf("listener status %+v", st.Listeners[0])
	}
}

// TestSteeredNoFreeSlot: with every slot taken, a reload fails and says
// which processes hold them.
func TestSteeredNoFreeSlot(t *testing.T) {
	h, l := steeredHarness(t)
	h.os.mu.Lock()
	h.os.holders = map[uint64][]int{}
	for slot := 1; slot < 4; slot++ {
		h.os.holders[listen.Inodes([]*listen.Listener{l}, slot)[0]] = []int{600 + slot}
	}
	h.os.mu.Unlock()
	res := h.answer(h.reload(t.Context()))
	if res.err == nil || !strings.Contains(res.err.Error(), "no free socket slot") || !strings.Contains(res.err.Error(), "603") {
		t.Fatalf("reload: %+v, want no free slot, naming the holders", res)
	}
}

// TestDrainAfterQueue: the old generation gets its drain signal only once
// its slot's accept queue is empty, checked every queueCheck.
func TestDrainAfterQueue(t *testing.T) {
	h, l, m := handedOffWithQueue(t)
	h.advance(3 * queueCheck)
	if h.os.hit(100, DefaultDrainSignal, m) {
		t.Fatal("drain signal with a connection still queued to generation 1")
	}
	if g := h.gen(1); g.State != "draining" || g.Queued != 1 || g.DrainSignal != nil {
		t.Fatalf("generation 1: %+v, want draining, 1 queued, no drain signal yet", g)
	}
	// Generation 1 accepts it.
	if _, err := l.Flush(0); err != nil {
		t.Fatal(err)
	}
	h.advance(queueCheck)
	if !h.os.hit(100, DefaultDrainSignal, m) {
		t.Fatal("no drain signal once the queue is empty")
	}
}

// TestDrainAfterQueueBounded: a queue that never empties delays the drain
// signal by queueWait at most.
func TestDrainAfterQueueBounded(t *testing.T) {
	h, _, m := handedOffWithQueue(t)
	h.advance(queueWait - queueCheck)
	if h.os.hit(100, DefaultDrainSignal, m) {
		t.Fatal("drain signal before queueWait")
	}
	h.advance(2 * queueCheck)
	if !h.os.hit(100, DefaultDrainSignal, m) {
		t.Fatal("no drain signal at queueWait")
	}
}

// TestDrainAfterQueueAtEnd: the new generation exits while the old one
// waits for its queue: the end does not wait for the queue, and the old
// generation gets its drain signal and its deadline (it would otherwise
// be spared by the end, and tini-hot would wait for it for ever).
func TestDrainAfterQueueAtEnd(t *testing.T) {
	h, _, m := handedOffWithQueue(t)
	h.exits(true, exited(101, 3)) // the serving one crashes: the end
	h.advance(queueCheck)
	if !h.os.hit(100, DefaultDrainSignal, m) {
		t.Fatal("no drain signal to the old generation at the end")
	}
	h.advance(DefaultDrainTimeout)
	if !h.os.hit(100, 9, m) {
		t.Fatal("no SIGKILL at the old generation's drain deadline")
	}
}
