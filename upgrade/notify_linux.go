package upgrade

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tini-hot/tini-hot/internal/pace"
	"golang.org/x/sys/unix"
)

// sd_notify states tini-hot understands (sd_notify(3)).
const (
	notifyReady    = "READY=1"
	notifyStopping = "STOPPING=1"
	notifyStatus   = "STATUS="
	// notifyBarrier comes alone in its message with one fd, which the
	// receiver closes once every message sent before it has been
	// handled: sd_notify_barrier(3), and so systemd-notify(1), which
	// waits for that before it exits. Without it a sender that exits
	// right after its message (systemd-notify --ready in a script) may
	// be reaped before tini-hot asks whose process it was.
	notifyBarrier = "BARRIER=1"
)

// maxNotifySize bounds one datagram; systemd accepts at most a page-ish
// message as well.
const maxNotifySize = 4096

// A notify socket is read at most notifyPaceCount datagrams per
// notifyPaceWindow: a process that sends in a loop costs tini-hot a
// bounded share of a CPU (each read and the supervisor's look at it,
// about 10 µs), not as much as it spends itself. Its sends wait in the
// kernel meanwhile, as do any others' to the same socket, for at most a
// window: nothing is lost, a READY=1 comes late by that much at worst.
// Legitimate senders stay far below: sd_notify is for changes of state.
const (
	notifyPaceCount  = 100
	notifyPaceWindow = 100 * time.Millisecond
)

// notice is one parsed sd_notify datagram.
type notice struct {
	ready    bool
	stopping bool
	status   string // last STATUS= value, if any
	// barrier: BARRIER=1, and nothing else counts in the message.
	barrier bool
}

// parseNotice reads a datagram of newline-separated KEY=VALUE
// assignments. Unknown assignments are ignored, as systemd does, and so
// are all others of a message with BARRIER=1.
func parseNotice(b []byte) notice {
	var n notice
	lines := strings.Split(string(b), "\n")
	if slices.Contains(lines, notifyBarrier) {
		return notice{barrier: true}
	}
	for _, line := range lines {
		switch {
		case line == notifyReady:
			n.ready = true
		case line == notifyStopping:
			n.stopping = true
		case strings.HasPrefix(line, notifyStatus):
			n.status = strings.ToValidUTF8(line[len(notifyStatus):], "?")
		}
	}
	return n
}

// notifyEvent is a notice from a process of a generation.
type notifyEvent struct {
	gen    int
	sender int // pid from SCM_CREDENTIALS; 0 if the kernel sent none
	notice notice
	at     time.Time // when it was read: READY=1's moment
	// barrier is the fd a BARRIER=1 came with, to close once every
	// notice before it has been handled; nil for other notices.
	barrier *os.File
}

// release closes ev's barrier, if any: its sender may go on.
func (ev notifyEvent) release() {
	if ev.barrier != nil {
		ev.barrier.Close()
	}
}

// notifySocket is a generation's NOTIFY_SOCKET: a datagram socket in the
// abstract namespace (no file, works on read-only and scratch root
// filesystems) that asks the kernel for the sender's credentials.
type notifySocket struct {
	conn *net.UnixConn
	// addr is the NOTIFY_SOCKET value, "@name".
	addr string
	// held is 1 while Serve holds a datagram it has read and not yet
	// delivered: no longer in the socket's queue, not yet in the
	// supervisor's channel (see Pending).
	held atomic.Int32
	// pace is Serve's: notifyPaceCount per notifyPaceWindow (tests
	// change it before Serve).
	pace pace.Pacer
}

func newNotifySocket(name string) (*notifySocket, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@" + name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket @%s: %w", name, err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		cerr := raw.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket @%s: SO_PASSCRED: %w", name, err)
	}
	return &notifySocket{conn: conn, addr: "@" + name, pace: pace.Pacer{Count: notifyPaceCount, Window: notifyPaceWindow}}, nil
}

// Env is the NOTIFY_SOCKET value.
func (s *notifySocket) Env() string { return s.addr }

// Serve delivers every datagram to out, paced (notifyPaceCount), until
// the socket is closed.
func (s *notifySocket) Serve(gen int, out chan<- notifyEvent, done <-chan struct{}) {
	buf := make([]byte, maxNotifySize)
	// Room for the sender's credentials, which the kernel writes first,
	// and one fd, BARRIER=1's: the kernel discards any further fds a
	// message carries (FDSTORE=1, or a hostile sender) instead of
	// installing them in tini-hot, and the one received is closed at
	// once unless it is a barrier's (TestNotifyFdsDropped). Received fds
	// are close-on-exec (net reads with MSG_CMSG_CLOEXEC), so a
	// generation started meanwhile gets none.
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4))
	paced := s.pace
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			// Closed with its generation; other errors (ENOBUFS) cannot
			// be told from a closed socket by the caller, so stop.
			return
		}
		s.held.Store(1)
		ev := notifyEvent{gen: gen, notice: parseNotice(buf[:n]), at: time.Now()}
		// The fd it carries is tini-hot's from now on: kept (a
		// barrier's) or closed here, before anything can return.
		ev.sender, ev.barrier = control(oob[:oobn], ev.notice.barrier)
		if !paced.Wait(done) {
			ev.release()
			return
		}
		select {
		case out <- ev:
			s.held.Store(0)
		case <-done:
			ev.release()
			return
		}
	}
}

func (s *notifySocket) Close() error { return s.conn.Close() }

// Pending reports whether a datagram waits in the socket's queue
// (SIOCINQ: the size of the next one; an empty datagram, which says
// nothing, reads as none), or in Serve, read and not delivered yet: a
// READY=1 sent while tini-hot was stopped is read by Serve as the
// stopped timers fire, and a timeout that checked only the queue failed
// the generation (TestPausedSupervisor, under load).
func (s *notifySocket) Pending() bool {
	return s.held.Load() != 0 || s.queued() > 0
}

// queued is the size of the next datagram in the socket's queue
// (SIOCINQ), 0 for none or when it cannot be read.
func (s *notifySocket) queued() int {
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	if err != nil {
		return 0
	}
	return n
}

// control reads a message's control data: the sender's pid (0 if the
// kernel sent none) and, if barrier, the fd to close once the messages
// before it are handled. Every other fd received is closed here.
func control(oob []byte, barrier bool) (sender int, keep *os.File) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, nil
	}
	for _, m := range msgs {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			sender = int(cred.Pid)
			continue
		}
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if barrier && keep == nil {
				keep = os.NewFile(uintptr(fd), "barrier")
				continue
			}
			unix.Close(fd)
		}
	}
	return sender, keep
}
