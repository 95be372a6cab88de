package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec is one parsed -l/--listen value: [NAME=]URL.
type Spec struct {
	// Name goes into LISTEN_FDNAMES; DefaultName when not given.
	Name string
	// Network is tcp, tcp4, tcp6, udp, udp4, udp6 or unix.
	Network string
	// Address is host:port, or a socket path for unix.
	Address string
	// Flows is FlowsQUIC for a UDP listener whose datagrams are steered by
	// their QUIC connection ID (?flows=quic), empty otherwise.
	Flows string
}

// FlowsQUIC is the value of the listener option flows= that steers a UDP
// listener's datagrams by their QUIC header (see internal/steer).
const FlowsQUIC = "quic"

// DefaultName is the LISTEN_FDNAMES entry of an unnamed listener,
// as systemd writes it.
const DefaultName = "unknown"

// datagram reports whether the spec is a UDP socket: no connections, no
// listening state.
func (s Spec) datagram() bool {
	switch s.Network {
	case "udp", "udp4", "udp6":
		return true
	}
	return false
}

// String is the URL form of the spec, as given.
func (s Spec) String() string {
	if s.Network == "unix" {
		return "unix://" + s.Address
	}
	if s.Flows != "" {
		return s.Network + "://" + s.Address + "?flows=" + s.Flows
	}
	return s.Network + "://" + s.Address
}

// validName reports whether name is what LISTEN_FDNAMES can carry: 1 to
// 255 letters, digits, '_', '.' or '-' (no colon, the separator; nothing
// a shell or a log would mangle). A loop, not a regexp: compiling
// [...]{1,255} took 0.6 ms at every start of tini-hot, probes included.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 255 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// MaxSocketPath is the longest unix socket path: sun_path holds 108 bytes,
// the last a NUL.
const MaxSocketPath = 107

// schemeHint is raw as a TCP URL when raw is a TCP address without its
// scheme (":8080", "8080", "127.0.0.1:8080", "[::1]:8080"), else "".
func schemeHint(raw string) string {
	if n, err := strconv.ParseUint(raw, 10, 16); err == nil && raw == strconv.FormatUint(n, 10) {
		return "tcp://:" + raw
	}
	if _, port, err := net.SplitHostPort(raw); err == nil && port != "" && !strings.Contains(raw, "/") {
		if _, err := strconv.ParseUint(port, 10, 16); err == nil {
			return "tcp://" + raw
		}
	}
	return ""
}

// knownScheme reports whether scheme is one Parse takes.
func knownScheme(scheme string) bool {
	switch scheme {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix":
		return true
	}
	return false
}

// Parse reads [NAME=]URL: tcp://HOST:PORT, tcp4://..., tcp6://[::]:PORT,
// udp://HOST:PORT (also udp4, udp6), with the option ?flows=quic, or
// unix:///path/app.sock.
func Parse(s string) (Spec, error) {
	var spec Spec
	raw := s
	if name, rest, ok := strings.Cut(s, "="); ok && !strings.Contains(name, "://") {
		if !validName(name) {
			return spec, fmt.Errorf("listen %q: name %q: want letters, digits, '_', '.' or '-'", s, name)
		}
		spec.Name, raw = name, rest
	} else {
		spec.Name = DefaultName
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || (u.Opaque != "" && !knownScheme(u.Scheme)) {
		if fix := schemeHint(raw); fix != "" {
			// ":8080", "8080", "localhost:8080": a TCP address without
			// its scheme.
			return spec, fmt.Errorf("listen %q: want SCHEME://ADDRESS; did you mean %s%s?", s, strings.TrimSuffix(s, raw), fix)
		}
	}
	if err != nil {
		return spec, fmt.Errorf("listen %q: %w", s, err)
	}
	if u.Opaque != "" {
		// "unix:app.sock", "tcp:8080": the scheme without "//".
		if u.Scheme == "unix" {
			return spec, fmt.Errorf("listen %q: want unix:///absolute/path (three slashes: unix:// and an absolute path)", s)
		}
		return spec, fmt.Errorf("listen %q: want %s://HOST:PORT (with \"//\" after the scheme)", s, u.Scheme)
	}
	if u.User != nil || u.Fragment != "" {
		return spec, fmt.Errorf("listen %q: want SCHEME://ADDRESS without user or fragment", s)
	}
	spec.Network = u.Scheme
	if u.RawQuery != "" {
		if u.RawQuery != "flows="+FlowsQUIC || !spec.datagram() {
			return spec, fmt.Errorf("listen %q: the only option is flows=quic, for udp://, udp4:// and udp6://", s)
		}
		spec.Flows = FlowsQUIC
	}
	switch u.Scheme {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		if u.Path != "" {
			return spec, fmt.Errorf("listen %q: unexpected path %q", s, u.Path)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			return spec, fmt.Errorf("listen %q: want HOST:PORT: %w", s, err)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
			return spec, fmt.Errorf("listen %q: port %q: want 0-65535", s, port)
		}
		if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/ %") {
			return spec, fmt.Errorf("listen %q: bad host %q", s, host)
		}
		spec.Address = u.Host
	case "unix":
		if u.Host != "" || u.Path == "" {
			return spec, fmt.Errorf("listen %q: want unix:///absolute/path (three slashes: unix:// and an absolute path)", s)
		}
		if len(u.Path) > MaxSocketPath {
			return spec, fmt.Errorf("listen %.60q…: a path of %d bytes; a unix socket's holds at most %d", s, len(u.Path), MaxSocketPath)
		}
		spec.Address = u.Path
	case "":
		return spec, fmt.Errorf("listen %q: want SCHEME://ADDRESS, e.g. tcp://:8080", s)
	default:
		return spec, fmt.Errorf("listen %q: unknown scheme %q (want tcp, tcp4, tcp6, udp, udp4, udp6 or unix)", s, u.Scheme)
	}
	return spec, nil
}

// Listener is a socket bound by tini-hot and held for the container's
// life; every generation gets a duplicate of the same file description.
//
// The socket stays in non-blocking mode, unlike systemd's. All
// generations share one file description, and so one O_NONBLOCK flag: a
// Go program given a blocking socket switches it to non-blocking and back
// while it wraps it (os.NewFile, then net.FileListener), and an older
// generation that enters accept(2) in that instant blocks in the kernel,
// where closing its listener cannot reach it: its drain hangs until the
// next connection, which it takes. Handed over non-blocking, nobody
// toggles the flag.
type Listener struct {
	Spec Spec
	fd   int
	addr string
	sa   syscall.Sockaddr // the address bound, as the kernel gave it (see sameAddr)
	// restored counts the times Guard made the socket listen again.
	restored atomic.Int64
	// group is the reuseport group of a steered listener, nil for a
	// shared one; fd is then slot 0's socket.
	group *group
	// Fallback says why a listener meant to be steered is shared.
	Fallback string
}

// Restored is how many times [Guard] made the socket listen again after
// a generation shut it down.
func (l *Listener) Restored() int64 { return l.restored.Load() }

// Listening reports whether a stream listener's sockets are listening
// and not shut down; a UDP listener is not checked and reports true.
func (l *Listener) Listening() bool {
	fds := []int{l.fd}
	if l.group != nil {
		fds = l.group.fds
	}
	for _, fd := range fds {
		if !listening(fd, l.Spec.datagram()) {
			return false
		}
	}
	return true
}

// listening reports whether the stream socket fd listens and is not shut
// down; a datagram socket reports true.
func listening(fd int, datagram bool) bool {
	if datagram {
		return true
	}
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on != 1 {
		return false
	}
	// A unix socket shut down keeps its listening state, and says
	// hang-up.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && (n == 0 || fds[0].Revents&(unix.POLLHUP|unix.POLLRDHUP|unix.POLLERR) == 0)
}

// Fd is the socket's descriptor, close-on-exec.
func (l *Listener) Fd() int { return l.fd }

// Addr is the address bound, in the spec's URL form: with the port the
// kernel chose for port 0.
func (l *Listener) Addr() string { return l.addr }

// Bind binds spec. A stale unix socket file left by an earlier run is
// replaced; any other file at the path is an error.
//
// With slots above 1, a TCP or UDP spec gets a reuseport group of that
// many sockets, steered (see [Listener.Steer]); if the kernel refuses
// the steering program (before Linux 4.6, or a filter denied), it gets
// one shared socket on the same address, and Fallback says why.
func Bind(spec Spec, slots int) (*Listener, error) {
	if slots > 1 && spec.Network != "unix" {
		g, bound, err := bindGroup(spec, min(slots, MaxSlots))
		var refused *steerRefused
		switch {
		case err == nil:
			return &Listener{Spec: spec, fd: g.fds[0], group: g, addr: urlOf(spec, bound), sa: sockname(g.fds[0])}, nil
		case errors.As(err, &refused):
			// The same address, now with its port: one socket.
			shared := spec
			shared.Address = refused.bound.String()
			l, err := bindShared(shared)
			if err != nil {
				return nil, err
			}
			l.Spec, l.Fallback = spec, refused.err.Error()
			return l, nil
		default:
			return nil, err
		}
	}
	return bindShared(spec)
}

// bindShared binds spec's one socket.
func bindShared(spec Spec) (*Listener, error) {
	var (
		conn interface {
			SyscallConn() (syscall.RawConn, error)
			Close() error
		}
		bound net.Addr
		err   error
	)
	lc := net.ListenConfig{}
	switch {
	case spec.datagram():
		var pc net.PacketConn
		if pc, err = lc.ListenPacket(context.Background(), spec.Network, spec.Address); err == nil {
			conn, bound = pc.(*net.UDPConn), pc.LocalAddr()
		}
	case spec.Network == "unix":
		if err = removeStaleSocket(spec.Address); err != nil {
			break
		}
		var l net.Listener
		if l, err = lc.Listen(context.Background(), "unix", spec.Address); err == nil {
			ul := l.(*net.UnixListener)
			ul.SetUnlinkOnClose(false) // the path stays for the duplicate
			conn, bound = ul, ul.Addr()
		}
	default:
		var l net.Listener
		if l, err = lc.Listen(context.Background(), spec.Network, spec.Address); err == nil {
			conn, bound = l.(*net.TCPListener), l.Addr()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	defer conn.Close() // the duplicate keeps the socket
	fd, err := dupConn(conn)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	return &Listener{Spec: spec, fd: fd, addr: urlOf(spec, bound), sa: sockname(fd)}, nil
}

// urlOf is the URL form of spec with the address the kernel bound.
func urlOf(spec Spec, bound net.Addr) string {
	return Spec{Network: spec.Network, Address: bound.String()}.String()
}

// sockname is fd's address; nil only if the socket is gone: Guard then
// reports any address as changed.
func sockname(fd int) syscall.Sockaddr {
	sa, _ := syscall.Getsockname(fd)
	return sa
}

// Close closes the sockets and removes a unix socket's file.
func (l *Listener) Close() error {
	if l.group != nil {
		l.group.close()
		return nil
	}
	err := unix.Close(l.fd)
	if l.Spec.Network == "unix" {
		if rerr := os.Remove(l.Spec.Address); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}

// removeStaleSocket removes a socket file nobody listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, unix.EADDRINUSE)
	}
	return os.Remove(path)
}
