package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Handler answers a valid request. It may block (a reload waits for the
// upgrade); it is called on the connection's goroutine.
type Handler func(Request) Response

// readTimeout bounds how long a client may take to send its request.
const readTimeout = 5 * time.Second

// maxConns bounds connections served at once; more get "busy".
const maxConns = 64

// Server serves the control socket.
type Server struct {
	ln      *net.UnixListener
	path    string
	handle  Handler
	log     *slog.Logger
	slots   chan struct{}
	wg      sync.WaitGroup
	closing sync.Once
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
	// The socket file gets mode 0600 from the umask at bind time.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{ln: ln, path: path, handle: h, log: log, slots: make(chan struct{}, maxConns)}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting, removes the socket file and waits for the
// connections being served. Safe to call twice.
func (s *Server) Close() {
	s.closing.Do(func() {
		_ = s.ln.Close() // unlinks the socket file
	})
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			s.log.Warn("control socket accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case s.slots <- struct{}{}:
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.slots }()
				s.serveConn(c)
			}()
		default:
			reply(c, Response{Error: "busy: too many control connections"})
			c.Close()
		}
	}
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	if err := checkPeer(c); err != nil {
		s.log.Warn("control socket: refused", "err", err)
		reply(c, Response{Error: err.Error()})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	b, err := readRequest(c)
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
	reply(c, s.handle(req))
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

func reply(c *net.UnixConn, r Response) {
	_ = c.SetWriteDeadline(time.Now().Add(readTimeout))
	b, _ := json.Marshal(r) // a Response always marshals
	_, _ = c.Write(append(b, '\n'))
}
