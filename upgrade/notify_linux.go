package upgrade

import (
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sd_notify states tini-hot understands (sd_notify(3)).
const (
	notifyReady    = "READY=1"
	notifyStopping = "STOPPING=1"
	notifyStatus   = "STATUS="
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
}

// parseNotice reads a datagram of newline-separated KEY=VALUE
// assignments. Unknown assignments are ignored, as systemd does.
func parseNotice(b []byte) notice {
	var n notice
	for _, line := range strings.Split(string(b), "\n") {
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
}

// notifySocket is a generation's NOTIFY_SOCKET: a datagram socket in the
// abstract namespace (no file, works on read-only and scratch root
// filesystems) that asks the kernel for the sender's credentials.
type notifySocket struct {
	conn *net.UnixConn
	// addr is the NOTIFY_SOCKET value, "@name".
	addr string
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
	return &notifySocket{conn: conn, addr: "@" + name}, nil
}

// Env is the NOTIFY_SOCKET value.
func (s *notifySocket) Env() string { return s.addr }

// Serve delivers every datagram to out, paced (notifyPaceCount), until
// the socket is closed.
func (s *notifySocket) Serve(gen int, out chan<- notifyEvent, done <-chan struct{}) {
	buf := make([]byte, maxNotifySize)
	// Room for the sender's credentials and nothing more: the kernel
	// writes them first, then discards any fds the message carries
	// (FDSTORE=1, or a hostile sender) instead of installing them in
	// tini-hot (TestNotifyFdsDropped).
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	var window time.Time // when the current pacing window began
	read := 0            // datagrams read in it
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			// Closed with its generation; other errors (ENOBUFS) cannot
			// be told from a closed socket by the caller, so stop.
			return
		}
		ev := notifyEvent{gen: gen, notice: parseNotice(buf[:n]), at: time.Now()}
		if ev.at.Sub(window) >= notifyPaceWindow {
			window, read = ev.at, 0
		}
		if read++; read > notifyPaceCount {
			if !sleep(window.Add(notifyPaceWindow).Sub(ev.at), done) {
				return
			}
			window, read = time.Now(), 1
		}
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					ev.sender = int(cred.Pid)
				}
			}
		}
		select {
		case out <- ev:
		case <-done:
			return
		}
	}
}

func (s *notifySocket) Close() error { return s.conn.Close() }

// sleep waits d, or until done is closed; it reports whether d passed.
func sleep(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
