package listen

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// acceptedBy connects n times to l and reports, for each connection, the
// slot whose socket had it in its accept queue.
func acceptedBy(t *testing.T, l *Listener, n int) []int {
	t.Helper()
	var out []int
	for range n {
		c, err := net.Dial("tcp", strings.TrimPrefix(l.Addr(), "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		slot := waitSlot(t, l, func(fd int) bool {
			a, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err == nil {
				unix.Close(a)
			}
			return err == nil
		})
		out = append(out, slot)
	}
	return out
}

// waitSlot polls every slot's socket with take until one gives
// something, and returns that slot.
func waitSlot(t *testing.T, l *Listener, take func(fd int) bool) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for slot := range l.Slots() {
			if take(l.SlotFd(slot)) {
				return slot
			}
		}
	}
	t.Fatal("nothing arrived at any slot")
	return -1
}

func allAre(got []int, slot int) bool {
	return !slices.ContainsFunc(got, func(s int) bool { return s != slot })
}

// TestSteeredTCP: every new connection goes to the serving slot, and a
// new program moves them at once.
func TestSteeredTCP(t *testing.T) {
	l, err := Bind(Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.Steered() || l.Slots() != 3 || l.Fallback != "" {
		t.Fatalf("mode %s, %d slots, fallback %q", l.Mode(), l.Slots(), l.Fallback)
	}
	if got := acceptedBy(t, l, 20); !allAre(got, 0) {
		t.Fatalf("at bind, to slot 0: %v", got)
	}
	for _, serving := range []int{2, 1, 0, 2} {
		if err := l.Steer(serving, []int{0, 1, 2}); err != nil {
			t.Fatal(err)
		}
		if got := acceptedBy(t, l, 20); !allAre(got, serving) {
			t.Fatalf("steered to %d: %v", serving, got)
		}
	}
}

// TestQueuedAndFlush: a connection waiting in a slot's accept queue is
// counted, and Flush resets it.
func TestQueuedAndFlush(t *testing.T) {
	l, err := Bind(Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", strings.TrimPrefix(l.Addr(), "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		n, err := l.Queued(0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want 3", n)
		}
	}
	if n, _ := l.Queued(1); n != 0 {
		t.Fatalf("slot 1 queued %d", n)
	}
	if n, err := l.Flush(0); n != 3 || err != nil {
		t.Fatalf("flushed %d, %v", n, err)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("a flushed connection reads %v, want a reset", err)
		}
	}
}

// TestSteeredAfterShutdown: a slot's socket shut down and listening again
// (Guard) rejoins its group last; steering still reaches the right slot.
func TestSteeredAfterShutdown(t *testing.T) {
	l, err := Bind(Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := &syncbuf.Buffer{}
	g, err := Guard([]*Listener{l}, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := l.Steer(2, nil); err != nil {
		t.Fatal(err)
	}
	// Slot 0 leaves: the kernel moves slot 2's socket into its place.
	if err := unix.Shutdown(l.SlotFd(0), unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "listening again"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not restored: %s", out)
		}
	}
	if got := acceptedBy(t, l, 20); !allAre(got, 2) {
		t.Fatalf("steered to 2 after slot 0's shutdown: %v", got)
	}
	if err := l.Steer(0, nil); err != nil {
		t.Fatal(err)
	}
	if got := acceptedBy(t, l, 20); !allAre(got, 0) {
		t.Fatalf("steered to 0, listening again: %v", got)
	}
}

// TestSteeredQUIC: datagrams go by their QUIC header to live slots.
func TestSteeredQUIC(t *testing.T) {
	l, err := Bind(Spec{Name: "h3", Network: "udp", Address: "127.0.0.1:0", Flows: FlowsQUIC}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Steer(1, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", strings.TrimPrefix(l.Addr(), "udp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	initial := append([]byte{0xc3, 0, 0, 0, 1, 8}, 2, 2, 2, 2, 2, 2, 2, 2, 0)
	for _, tc := range []struct {
		name   string
		packet []byte
		want   int
	}{
		{"client Initial (DCID of 8)", initial, 1},
		{"short header, slot 2", []byte{0x41, 2, 9, 9, 9, 9}, 2},
		{"short header, slot 0 (not live)", []byte{0x41, 0, 9, 9, 9, 9}, 1},
		{"long header, server DCID of 4, slot 2", []byte{0xe3, 0, 0, 0, 1, 4, 2, 1, 1, 1, 0}, 2},
		{"empty", []byte{}, 1},
		{"one byte", []byte{0x80}, 1},
	} {
		if _, err := c.Write(tc.packet); err != nil {
			t.Fatal(err)
		}
		got := waitSlot(t, l, func(fd int) bool {
			_, _, err := unix.Recvfrom(fd, make([]byte, 64), unix.MSG_DONTWAIT)
			return err == nil
		})
		if got != tc.want {
			t.Errorf("%s: slot %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestHolders: a process holding a slot's socket is found.
func TestHolders(t *testing.T) {
	l, err := Bind(Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ino := Inodes([]*Listener{l}, 1)
	if len(ino) != 1 {
		t.Fatalf("inodes %v", ino)
	}
	if h := Holders(ino); len(h) != 0 {
		t.Fatalf("holders %v, want none (tini-hot's own fds do not count)", h)
	}
}

// TestFallbackShared: when the kernel refuses the steering program, the
// listener is one shared socket on the same address, and says why.
func TestFallbackShared(t *testing.T) {
	defer func(a func(int, []unix.SockFilter) error) { attach = a }(attach)
	attach = func(int, []unix.SockFilter) error { return errors.New("refused") }
	l, err := Bind(Spec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Steered() || l.Mode() != ModeShared || l.Fallback != "refused" || l.SlotFd(1) != l.Fd() {
		t.Fatalf("mode %s, fallback %q", l.Mode(), l.Fallback)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(l.Addr(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := l.Steer(0, nil); err != nil {
		t.Fatalf("Steer on a shared listener: %v", err)
	}
}
