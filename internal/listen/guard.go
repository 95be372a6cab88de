package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// relistenBacklog is the backlog a guarded socket listens again with: the
// kernel caps it at net.core.somaxconn, which is what Go's net.Listen
// asked for in the first place.
const relistenBacklog = 65535

// Guard keeps the stream sockets of ls listening for the container's life.
//
// Every generation shares each socket's file description, so a
// shutdown(2) by any of them stops the socket for all: some runtimes shut
// a listener down to wake a thread blocked in accept(2), an old
// generation may do it as it drains, and from then on every connection is
// refused, the new generation's and every later one's included. Guard
// learns of it from the kernel at once (an epoll set that reports only
// hang-ups, itself waited on by the Go runtime's poller: no thread and no
// wake-up of its own, none per connection) and makes a TCP socket listen
// again, on the same address, logging a warning. The connections waiting
// in its queue at the shutdown are lost, and an application's accept(2)
// may fail once meanwhile. A unix socket cannot listen again once shut
// down; Guard logs an error naming it. UDP sockets are not guarded.
//
// [Guarded.Close] stops it.
func Guard(ls []*Listener, log *slog.Logger) (*Guarded, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("listener guard: %w", err)
	}
	g := &Guarded{log: log, done: make(chan struct{})}
	for _, l := range ls {
		if l.Spec.datagram() {
			continue
		}
		fds := []int{l.fd}
		if l.group != nil {
			fds = l.group.fds
		}
		for slot, fd := range fds {
			// Hang-ups only: epoll reports EPOLLHUP (a TCP socket no
			// longer listening, a unix one shut down both ways) and
			// errors whatever the mask, and EPOLLRDHUP is a unix socket
			// shut down for reading. Never EPOLLIN: each connection
			// would wake tini-hot.
			ev := unix.EpollEvent{Events: unix.EPOLLRDHUP, Fd: int32(len(g.socks))}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				unix.Close(ep)
				return nil, fmt.Errorf("listener guard: %s: %w", l.Spec, err)
			}
			g.socks = append(g.socks, guardedSock{l, slot, fd})
		}
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("listener guard: %w", err)
	}
	// A non-blocking fd given to os.NewFile is waited on by the runtime's
	// poller.
	g.f = os.NewFile(uintptr(ep), "listener-guard")
	rc, err := g.f.SyscallConn()
	if err != nil {
		g.f.Close()
		return nil, fmt.Errorf("listener guard: %w", err)
	}
	g.wg.Add(1)
	go g.run(rc)
	return g, nil
}

// guardedSock is one socket Guard watches: a shared listener's, or a slot's.
type guardedSock struct {
	l    *Listener
	slot int
	fd   int
}

// Guarded is a running Guard.
type Guarded struct {
	socks []guardedSock
	log   *slog.Logger
	f     *os.File
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	// wakes counts the waits that returned: hang-ups, never connections.
	wakes atomic.Int64
}

// Close stops the guard and waits for it. Safe to call twice.
func (g *Guarded) Close() {
	g.once.Do(func() {
		close(g.done)
		g.f.Close() // wakes the wait in run
	})
	g.wg.Wait()
}

func (g *Guarded) run(rc syscall.RawConn) {
	defer g.wg.Done()
	events := make([]unix.EpollEvent, max(len(g.socks), 1))
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		select {
		case <-g.done:
			return
		default:
		}
		g.wakes.Add(1)
		if err != nil || werr != nil {
			g.log.Error("listener guard stopped", "err", errors.Join(err, werr))
			return
		}
		for _, ev := range events[:n] {
			g.restore(int(ev.Fd))
		}
	}
}

// restore makes socket i listen again, or reports that it cannot.
func (g *Guarded) restore(i int) {
	sock := g.socks[i]
	l := sock.l
	if listening(sock.fd, false) {
		return // the hang-up was cleared already
	}
	args := []any{"listener", l.Spec.Name, "address", l.addr}
	what := "the shared socket"
	if l.group != nil {
		what = "its socket"
		args = append(args, "slot", sock.slot)
		l.group.mu.Lock()
		defer l.group.mu.Unlock()
		l.group.left(sock.slot)
	}
	if l.Spec.Network == "unix" {
		g.log.Error("listener shut down by a process of the application (shutdown(2) on "+what+"); a unix socket cannot listen again: connections are refused until the container restarts", args...)
		g.forget(sock.fd)
		return
	}
	if err := unix.Listen(sock.fd, relistenBacklog); err != nil {
		g.log.Error("listener shut down by a process of the application (shutdown(2) on "+what+"), and it cannot listen again: connections are refused", append(args, "err", err)...)
		g.forget(sock.fd)
		return
	}
	l.restored.Add(1)
	if l.group != nil {
		// It joined the kernel's group again, last: the program's
		// indexes change.
		l.group.joined(sock.slot)
		if err := l.group.steer(l.group.serving, l.group.live, l.Spec.Flows == FlowsQUIC); err != nil {
			g.log.Error("listener shut down and listening again, but not steered", append(args, "err", err)...)
		}
	}
	if after, err := syscall.Getsockname(sock.fd); err != nil || !sameAddr(l.sa, after) {
		// A port the kernel chose (port 0) is given up with the
		// listening state, and listen(2) chose another.
		g.log.Error("listener shut down by a process of the application (shutdown(2) on "+what+"); it listens again, on another port", append(args, "now", fmt.Sprint(after))...)
		return
	}
	g.log.Warn("listener shut down by a process of the application (shutdown(2) on "+what+"); listening again", args...)
}

// forget stops watching the socket sock: its hang-up stays, and would be reported at
// every wait.
func (g *Guarded) forget(sock int) {
	if rc, err := g.f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.EpollCtl(int(fd), unix.EPOLL_CTL_DEL, sock, nil) })
	}
}

// sameAddr reports whether two socket addresses of a TCP socket are the
// same port and address. They come from syscall, not x/sys/unix, whose
// Getsockname links a parser for every address family (20 KB more
// binary); net links syscall's already.
func sameAddr(a, b syscall.Sockaddr) bool {
	switch a := a.(type) {
	case *syscall.SockaddrInet4:
		b, ok := b.(*syscall.SockaddrInet4)
		return ok && a.Port == b.Port && a.Addr == b.Addr
	case *syscall.SockaddrInet6:
		b, ok := b.(*syscall.SockaddrInet6)
		return ok && a.Port == b.Port && a.Addr == b.Addr
	}
	return false
}
