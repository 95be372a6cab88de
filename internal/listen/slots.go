package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/tini-hot/tini-hot/internal/steer"
	"golang.org/x/sys/unix"
)

// MaxSlots bounds the sockets of a steered listener: a QUIC program
// names every live slot (steer.MaxFlows).
const MaxSlots = 64

// The modes of a listener, in status.
const (
	// ModeShared: one socket, every generation gets a duplicate of it.
	ModeShared = "shared"
	// ModeSteered: one socket per slot in a reuseport group, steered by
	// a classic BPF program (see internal/steer).
	ModeSteered = "steered"
)

// attach is steer.Attach; tests make the kernel refuse.
var attach = steer.Attach

// group is the reuseport group of a steered listener: one socket per
// slot, and the order in which they joined the kernel's group, which is
// what a steering program's result indexes.
type group struct {
	mu    sync.Mutex
	fds   []int // by slot
	order []int // order[i] is the slot of the group's i-th socket
	// serving and live are what the program attached says: the slot
	// new connections go to, and (QUIC) the slots whose flows go home.
	serving int
	live    []int
}

// bindGroup binds n sockets with SO_REUSEPORT on spec's address (the
// port the first got, for port 0) and attaches the program that sends
// everything to slot 0. The kernel adds a TCP socket to the group when
// it listens and a UDP one when it binds: each in turn here, so that
// slot i is the i-th.
func bindGroup(spec Spec, n int) (*group, net.Addr, error) {
	g := &group{}
	lc := net.ListenConfig{Control: ReusePort}
	// Multipath TCP sockets would not pass the program to the TCP
	// listener underneath.
	lc.SetMultipathTCP(false)
	address := spec.Address
	var first net.Addr
	learn := func() {}
	if _, port, _ := net.SplitHostPort(address); port == "0" {
		// A socket bound to a port the kernel chose gives the port up
		// when it stops listening (shutdown(2)), and would listen again
		// elsewhere (see Guard): the slots bind the port by number. A
		// first socket learns it, and leaves the group once they have
		// joined it: the kernel moves the last socket into its place.
		fd, bound, err := bindOne(lc, spec, address)
		if err != nil {
			return nil, nil, fmt.Errorf("listen %s: %w", spec, err)
		}
		first, address = bound, bound.String()
		g.order = append(g.order, -1)
		learn = func() {
			if fd >= 0 {
				unix.Close(fd)
				g.left(-1)
				fd = -1
			}
		}
		defer learn() // on an error
	}
	for slot := range n {
		fd, bound, err := bindOne(lc, spec, address)
		if err != nil {
			g.close()
			return nil, nil, fmt.Errorf("listen %s: socket %d of %d: %w", spec, slot+1, n, err)
		}
		if first == nil {
			first = bound
			address = bound.String()
		}
		g.fds = append(g.fds, fd)
		g.order = append(g.order, slot)
		if slot == 0 {
			// Steered before the others join: a connection made
			// meanwhile (the port is known) would otherwise be hashed to
			// a socket nobody accepts from yet.
			if err := g.steer(0, nil, spec.Flows == FlowsQUIC); err != nil {
				g.close()
				return nil, nil, &steerRefused{err: err, bound: first}
			}
		}
	}
	learn()
	if err := g.steer(0, nil, spec.Flows == FlowsQUIC); err != nil { // the indexes, once the first socket left
		g.close()
		return nil, nil, err
	}
	return g, first, nil
}

// ReusePort is a net.ListenConfig Control that sets SO_REUSEPORT before
// the bind.
func ReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// steerRefused: the kernel refused the steering program; the sockets
// were bound at bound.
type steerRefused struct {
	err   error
	bound net.Addr
}

func (e *steerRefused) Error() string { return e.err.Error() }

// bindOne binds one socket of spec at address and returns a
// non-blocking, close-on-exec duplicate.
func bindOne(lc net.ListenConfig, spec Spec, address string) (int, net.Addr, error) {
	var (
		conn interface {
			SyscallConn() (syscall.RawConn, error)
			Close() error
		}
		bound net.Addr
	)
	if spec.datagram() {
		pc, err := lc.ListenPacket(context.Background(), spec.Network, address)
		if err != nil {
			return -1, nil, err
		}
		conn, bound = pc.(*net.UDPConn), pc.LocalAddr()
	} else {
		l, err := lc.Listen(context.Background(), spec.Network, address)
		if err != nil {
			return -1, nil, err
		}
		conn, bound = l.(*net.TCPListener), l.Addr()
	}
	defer conn.Close()
	fd, err := dupConn(conn)
	return fd, bound, err
}

// dupConn duplicates conn's socket, close-on-exec, through RawConn:
// (*os.File).Fd would switch it to blocking mode (see Listener).
func dupConn(conn interface {
	SyscallConn() (syscall.RawConn, error)
}) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		err = cerr
	}
	if err != nil {
		return -1, fmt.Errorf("duplicate: %w", err)
	}
	return fd, nil
}

func (g *group) close() {
	for _, fd := range g.fds {
		unix.Close(fd)
	}
	g.fds = nil
}

// index is the position of slot's socket in the kernel's group, -1 when
// it has left it (shut down, not listening again yet).
func (g *group) index(slot int) int { return slices.Index(g.order, slot) }

// steer attaches the program for serving and live, with g.mu held or
// before anyone else has g.
func (g *group) steer(serving int, live []int, quic bool) error {
	idx := g.index(serving)
	if idx < 0 {
		return fmt.Errorf("slot %d is not in its reuseport group (shut down)", serving)
	}
	prog := steer.Serving(uint32(idx))
	if quic {
		var flows []steer.Flow
		for _, slot := range live {
			if i := g.index(slot); i >= 0 && slot != serving {
				flows = append(flows, steer.Flow{Slot: byte(slot), Index: uint32(i)})
			}
		}
		prog = steer.QUIC(uint32(idx), flows) // the serving slot's own flows: serving anyway
	}
	if err := attach(g.fds[serving], prog); err != nil {
		return err
	}
	g.serving, g.live = serving, slices.Clone(live)
	return nil
}

// left records that slot's socket left the kernel's group (a TCP
// listener shut down): the kernel moves the group's last socket into its
// place.
func (g *group) left(slot int) {
	i := g.index(slot)
	if i < 0 {
		return
	}
	last := len(g.order) - 1
	g.order[i] = g.order[last]
	g.order = g.order[:last]
}

// joined records that slot's socket joined the group again, last.
func (g *group) joined(slot int) {
	if g.index(slot) < 0 {
		g.order = append(g.order, slot)
	}
}

// Steered reports whether l has a socket per slot.
func (l *Listener) Steered() bool { return l.group != nil }

// Mode is ModeSteered or ModeShared.
func (l *Listener) Mode() string {
	if l.Steered() {
		return ModeSteered
	}
	return ModeShared
}

// Slots is the number of slots of a steered listener, 0 for a shared one.
func (l *Listener) Slots() int {
	if l.group == nil {
		return 0
	}
	return len(l.group.fds)
}

// SlotFd is the socket of slot for its generation: slot's own if l is
// steered, the shared one otherwise.
func (l *Listener) SlotFd(slot int) int {
	if l.group == nil || slot < 0 || slot >= len(l.group.fds) {
		return l.fd
	}
	return l.group.fds[slot]
}

// Steer sends the new connections or datagrams of a steered listener to
// slot serving and, for QUIC flows, each packet of a connection owned by
// a slot in live to that slot. Nothing for a shared listener.
func (l *Listener) Steer(serving int, live []int) error {
	if l.group == nil {
		return nil
	}
	l.group.mu.Lock()
	defer l.group.mu.Unlock()
	if err := l.group.steer(serving, live, l.Spec.Flows == FlowsQUIC); err != nil {
		return fmt.Errorf("listener %s: %w", l.Spec.Name, err)
	}
	return nil
}

// Queued is what waits in slot's socket: for TCP the connections in its
// accept queue, for UDP 1 if a datagram waits and 0 otherwise. A shared
// listener reports 0.
func (l *Listener) Queued(slot int) (int, error) {
	if l.group == nil || slot < 0 || slot >= len(l.group.fds) {
		return 0, nil
	}
	return queued(l.group.fds[slot], l.Spec.datagram())
}

func queued(fd int, datagram bool) (int, error) {
	if datagram {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return min(n, 1), err
	}
	// A listener's accept queue is tcpi_unacked in TCP_INFO.
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, err
	}
	return int(info.Unacked), nil
}

// Flush empties slot's socket before it serves another generation: the
// connections queued after its generation stopped accepting are reset
// (accepted and closed with SO_LINGER 0, so that their clients learn at
// once), the datagrams read and dropped. It returns how many.
func (l *Listener) Flush(slot int) (int, error) {
	if l.group == nil || slot < 0 || slot >= len(l.group.fds) {
		return 0, nil
	}
	fd := l.group.fds[slot]
	n := 0
	buf := make([]byte, 1)
	for n < 1<<16 {
		var err error
		// syscall's calls, not x/sys/unix's, whose Sockaddr results link
		// a parser for every address family (see sameAddr).
		if l.Spec.datagram() {
			_, _, err = syscall.Recvfrom(fd, buf, syscall.MSG_DONTWAIT|syscall.MSG_TRUNC)
		} else {
			var c int
			if c, _, err = syscall.Accept4(fd, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK); err == nil {
				_ = syscall.SetsockoptLinger(c, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
				syscall.Close(c)
			}
		}
		switch {
		case err == nil:
			n++
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINVAL): // empty; not listening
			return n, nil
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.ECONNABORTED):
		default:
			return n, err
		}
	}
	return n, nil
}

// Inodes are the inode numbers of slot's sockets of every steered
// listener in ls: a process holds the slot while it has any of them open.
func Inodes(ls []*Listener, slot int) []uint64 {
	var out []uint64
	for _, l := range ls {
		if l.group == nil || slot < 0 || slot >= len(l.group.fds) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(l.group.fds[slot], &st) == nil {
			out = append(out, st.Ino)
		}
	}
	return out
}

// Holders lists the processes other than tini-hot that have a socket of
// inodes open, from /proc: a slot is free only once none does.
func Holders(inodes []uint64) []int {
	if len(inodes) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			if target, err := os.Readlink(dir + fd.Name()); err == nil && want[target] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
