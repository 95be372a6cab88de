package metrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/net/netutil"
)

// Source is the supervisor's status, read at each scrape.
type Source func(ctx context.Context) (upgrade.Status, error)

const (
	// maxConns bounds the endpoint's open connections: PID 1 must not
	// pay for a flood of them; more wait in the kernel's backlog.
	maxConns = 8
	// scrapeTimeout bounds the wait for the supervisor's status.
	scrapeTimeout = 5 * time.Second
	// maxHead bounds a request's head (request line and headers).
	maxHead = 8 << 10
)

// Deadlines of one connection; variables for the tests.
var (
	readTimeout  = 10 * time.Second // to receive the request head
	writeTimeout = 10 * time.Second // to send the answer
)

// Server is the metrics endpoint: it answers each connection's one
// request, GET (or HEAD) /metrics, and closes the connection.
//
// It is not net/http's Server, on purpose: that server (HTTP/2, TLS,
// keep-alive, a mux) was 1.9 MB of tini-hot's 10.0 MB binary, which every
// container's init would carry for one route that Prometheus scrapes
// every few seconds. The request's head is read by net/textproto, the
// parser net/http uses; the request line and the answer (a status line,
// Content-Type, Content-Length, Connection: close, and Allow for a 405)
// are written here.
type Server struct {
	ln     net.Listener
	src    Source
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the connections

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen binds addr (host:port) and serves src there until Close.
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:     netutil.LimitListener(ln, maxConns),
		src:    src,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address bound (with the port chosen for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving at once: it closes the listener and every open
// connection, and returns when no goroutine of the server is left. It is
// safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		_ = c.Close() // its goroutine sees the error and ends
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// accept serves connections until the listener is closed.
func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds (EMFILE, ENFILE) or the like: say it, and retry
			// after a pause that grows, as net/http does, rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("metrics endpoint: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if !s.track(c, true) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			s.serve(c)
		}()
	}
}

// track adds c to the open connections (or removes it), and reports
// false when the server is closed.
func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// serve answers the one request of c.
func (s *Server) serve(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	limit := &io.LimitedReader{R: c, N: maxHead}
	method, path, err := readRequest(bufio.NewReader(limit))
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	head := method == http.MethodHead
	switch {
	case errors.Is(err, io.EOF):
		// The client left without asking anything.
	case err != nil:
		code, msg := http.StatusBadRequest, err.Error()+"\n"
		if limit.N == 0 {
			code, msg = http.StatusRequestHeaderFieldsTooLarge, "request head over 8 KiB\n"
		}
		if answer(c, code, msg, nil, false) == nil {
			linger(c)
		}
	case method != http.MethodGet && !head:
		_ = answer(c, http.StatusMethodNotAllowed, "only GET and HEAD\n", []string{"Allow: GET, HEAD"}, false)
	case path != "/metrics":
		_ = answer(c, http.StatusNotFound, "not found: tini-hot serves /metrics\n", nil, head)
	default:
		ctx, cancel := context.WithTimeout(s.ctx, scrapeTimeout)
		defer cancel()
		st, err := s.src(ctx)
		if err != nil {
			_ = answer(c, http.StatusServiceUnavailable, "tini-hot status: "+err.Error()+"\n", nil, head)
			return
		}
		var body bytes.Buffer
		Write(&body, &st)
		_ = answer(c, http.StatusOK, body.String(), []string{"Content-Type: text/plain; version=0.0.4; charset=utf-8"}, head)
	}
}

// lingerTimeout bounds linger.
const lingerTimeout = 500 * time.Millisecond

// linger ends c after an error answer when the client may still be
// sending: closing with unread data would make the kernel reset the
// connection, and the client could lose the answer. It closes the
// sending side, then reads and drops what comes until the client closes
// too, for at most lingerTimeout (as net/http does).
func linger(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// readRequest reads a request head, the request line and the header
// lines up to the empty line, and returns the method and the target's
// path. A request with a body is refused: GET and HEAD have none, and a
// body left unread would turn the close into a reset.
func readRequest(r *bufio.Reader) (method, path string, err error) {
	tp := textproto.NewReader(r)
	line, err := tp.ReadLine()
	if err != nil {
		return "", "", err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || !strings.HasPrefix(proto, "HTTP/1.") || len(proto) != len("HTTP/1.1") {
		return "", "", fmt.Errorf("malformed request line %q", line)
	}
	// Origin form, what a client that is no proxy sends (RFC 9112, 3.2.1).
	path, _, _ = strings.Cut(target, "?")
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("malformed request target %q", target)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a head cut short is malformed, not absent
		}
		return "", "", fmt.Errorf("malformed headers: %w", err)
	}
	if n := h.Get("Content-Length"); (n != "" && n != "0") || h.Get("Transfer-Encoding") != "" {
		return "", "", errors.New("a request body is not accepted")
	}
	return method, path, nil
}

// answer writes an HTTP/1.1 response that closes the connection. Error
// answers are plain text; head leaves the body out, as HEAD asks.
func answer(w io.Writer, code int, body string, headers []string, head bool) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	if code != http.StatusOK {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	if !head {
		b.WriteString(body)
	}
	_, err := w.Write(b.Bytes())
	return err
}
