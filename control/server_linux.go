package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tini-hot/tini-hot/internal/evict"
	"golang.org/x/sys/unix"
)

// Handler answers a valid request. It may block (a reload waits for the
// upgrade) and is called on the connection's goroutine. ctx ends when the
// client has gone or the server closes: the answer is no longer wanted.
type Handler func(ctx context.Context, req Request) Response

const (
	// readTimeout bounds how long a client may take to send its request,
	// and writeTimeout how long the answer may take to go out.
	readTimeout  = 5 * time.Second
	writeTimeout = 5 * time.Second
	// maxReading bounds the connections still sending their request. One
	// more evicts the oldest of them, so that a new client (a probe) is
	// always read, however many idle connections are open.
	maxReading = 128
	// maxWaiting bounds the requests waiting for a long answer (reload);
	// more are answered "busy". Probes, status and prestop are answered
	// at once and never count.
	maxWaiting = 64
	// hangupPoll is how often the server looks for the hang-up of a
	// client that shut down its sending side and waits for its answer.
	hangupPoll = 200 * time.Millisecond
	// closeWait is how long Close lets answers in progress go out before
	// it closes their connections.
	closeWait = 200 * time.Millisecond
)

// keepEvery is how often the server looks for its socket file, to bind
// it again if it was removed; shorter in tests.
var keepEvery = 2 * time.Second

// Server serves the control socket.
type Server struct {
	path   string
	handle Handler
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	reading *evict.Reading // connections still sending their request

	mu      sync.Mutex
	ln      *net.UnixListener
	file    fileID                 // the socket file ln was bound to
	lost    bool                   // the path names another file: said once
	conns   map[*net.UnixConn]bool // open connections
	waiting int
}

// fileID is a file's device and inode.
type fileID struct{ dev, ino uint64 }

// lstat is the file at path's fileID.
func lstat(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}

// bind creates the socket file at path, mode 0600 (from the umask at
// bind time), and returns its listener and the file's fileID. The umask
// is the process's: ForkLock, which every fork of the standard library
// takes for writing, keeps a generation started meanwhile (a reload
// while keep binds again) from inheriting 0177.
func bind(path string) (*net.UnixListener, fileID, error) {
	syscall.ForkLock.RLock()
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fileID{}, fmt.Errorf("control socket: %w", err)
	}
	id, err := lstat(path)
	if err != nil {
		ln.Close()
		return nil, fileID{}, fmt.Errorf("control socket: %w", err)
	}
	return ln, id, nil
}

// Listen creates the socket at path (mode 0600; a stale socket file is
// replaced, a live one is an error) and serves it until Close.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another tini-hot is listening", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		_ = os.Remove(path) // stale; Listen reports what still fails
	}
	ln, id, err := bind(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, file: id, path: path, handle: h, log: log, ctx: ctx, cancel: cancel,
		conns: map[*net.UnixConn]bool{}, reading: evict.New(maxReading, "control socket", log)}
	s.wg.Add(2)
	go s.serve(ln)
	go s.keep()
	return s, nil
}

// keep binds the socket file again when it was removed (an app that
// cleans /run, a mistaken rm): without it every probe fails, and the
// kubelet restarts the container. A path that names another file is not
// taken back, only reported; Close then leaves that file alone.
func (s *Server) keep() {
	defer s.wg.Done()
	t := time.NewTicker(keepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.check()
		s.mu.Unlock()
	}
}

// check looks at the socket file once; s.mu is held.
func (s *Server) check() {
	if s.ctx.Err() != nil {
		return
	}
	id, err := lstat(s.path)
	switch {
	case err == nil && id == s.file:
		s.lost = false
	case err == nil:
		if !s.lost {
			s.log.Warn("control socket: its path now names another file; reload, status, probe and prestop cannot reach tini-hot until it is removed", "path", s.path)
			s.lost = true
		}
	case errors.Is(err, os.ErrNotExist):
		ln, id, err := bind(s.path)
		if err != nil {
			if !s.lost {
				s.log.Warn("control socket: its file was removed, and binding it again failed; retrying", "path", s.path, "err", err)
				s.lost = true
			}
			return
		}
		old := s.ln
		old.SetUnlinkOnClose(false) // its file is gone; the path is the new one's
		_ = old.Close()             // its serve returns; its connections go on
		s.ln, s.file, s.lost = ln, id, false
		s.wg.Add(1)
		go s.serve(ln)
		s.log.Warn("control socket: its file was removed; bound again", "path", s.path)
	}
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting, removes the socket file, tells every handler
// that its answer is no longer wanted, and returns once every connection
// is closed: within closeWait, however many clients are connected. Safe to
// call twice.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel() // before the listener: keep binds no other
		s.mu.Lock()
		if id, err := lstat(s.path); err != nil || id != s.file {
			s.ln.SetUnlinkOnClose(false) // not the file it bound: leave it
		}
		_ = s.ln.Close() // unlinks the socket file
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
		}
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close() // their goroutines return at once
		}
		s.mu.Unlock()
		s.reading.Close()
	})
	s.wg.Wait()
}

func (s *Server) serve(ln *net.UnixListener) {
	defer s.wg.Done()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			s.log.Warn("control socket accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		e, evicted := s.reading.Add(c)
		if evicted != nil {
			// Its goroutine sees the closed connection and returns.
			old := evicted.(*net.UnixConn)
			reply(old, Response{Error: fmt.Sprintf("busy: more than %d connections sending nothing; this one was the oldest", maxReading)})
			_ = old.Close()
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(c, e)
		}()
	}
}

// forget drops c from the server's books; e is its place among the
// connections still sending.
func (s *Server) forget(c *net.UnixConn, e evict.Entry) {
	s.reading.Done(e)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *Server) serveConn(c *net.UnixConn, e evict.Entry) {
	defer c.Close()
	defer s.forget(c, e)
	if err := checkPeer(c); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return // evicted before it was looked at: counted there
		}
		s.log.Warn("control socket: refused", "err", err)
		reply(c, Response{Error: err.Error()})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	b, err := readRequest(c)
	s.reading.Done(e)
	if err != nil {
		reply(c, Response{Error: err.Error()})
		return
	}
	req, err := ParseRequest(b)
	if err != nil {
		reply(c, Response{Error: err.Error()})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Op == OpReload {
		s.mu.Lock()
		busy := s.waiting >= maxWaiting
		if !busy {
			s.waiting++
		}
		s.mu.Unlock()
		if busy {
			reply(c, Response{Error: fmt.Sprintf("busy: %d reloads already waiting for their answer", maxWaiting)})
			return
		}
		defer func() { s.mu.Lock(); s.waiting--; s.mu.Unlock() }()
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go watchHangup(ctx, c, cancel)
	resp := s.handle(ctx, req)
	if ctx.Err() != nil && s.ctx.Err() == nil {
		return // the client has gone: nobody to answer
	}
	reply(c, resp)
}

// watchHangup cancels ctx once the client has gone: it closed its end, or
// reset it. A client that only shut down its sending side may still wait
// for the answer; for it, the hang-up is polled for.
func watchHangup(ctx context.Context, c *net.UnixConn, cancel context.CancelFunc) {
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		// Bytes after the request: not part of the protocol; ignored.
	}
	if ctx.Err() != nil {
		return // answered, or the server closes
	}
	if hungUp(c) {
		cancel()
		return
	}
	t := time.NewTicker(hangupPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if hungUp(c) {
				cancel()
				return
			}
		}
	}
}

// hungUp reports whether the peer of c has closed its end entirely
// (POLLHUP), not only shut down its sending side (POLLRDHUP), or whether
// the connection failed.
func hungUp(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	cerr := raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		// EINTR: look again at the next poll.
		gone = err == nil && n == 1 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	})
	return cerr != nil || gone
}

// readRequest reads up to a newline or the end of the client's writes.
func readRequest(c *net.UnixConn) ([]byte, error) {
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		for _, b := range chunk[:n] {
			if b == '\n' {
				return buf, nil
			}
			buf = append(buf, b)
		}
		if len(buf) > MaxRequestSize {
			return nil, fmt.Errorf("request larger than %d bytes", MaxRequestSize)
		}
		switch {
		case errors.Is(err, io.EOF):
			return buf, nil
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("no complete request within %v", readTimeout)
			}
			return nil, err
		}
	}
}

// checkPeer serves root and our own uid only.
func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("uid %d may not use the control socket", cred.Uid)
	}
	return nil
}

// reply writes r to c. A client that has gone makes the write fail with
// EPIPE, never with a signal: send(2) with MSG_NOSIGNAL.
func reply(c *net.UnixConn, r Response) {
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	b, _ := json.Marshal(r) // a Response always marshals
	b = append(b, '\n')
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, err := unix.SendmsgN(int(fd), b, nil, nil, unix.MSG_NOSIGNAL)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false // wait until writable (or the deadline)
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				return true // EPIPE, ECONNRESET: the client has gone
			}
			b = b[n:]
		}
		return true
	})
}
