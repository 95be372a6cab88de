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

	"github.com/tini-hot/tini-hot/internal/evict"
	"github.com/tini-hot/tini-hot/internal/pace"
	"github.com/tini-hot/tini-hot/upgrade"
)

// Source is the supervisor's status, read at each scrape.
type Source func(ctx context.Context) (upgrade.Status, error)

const (
	// maxReading bounds the connections still sending their request
	// head: one more evicts the oldest that sent nothing
	// (internal/evict), so that connections that send nothing
	// (slowloris) never hold the endpoint: a scraper sends its request
	// at once, and is read. Below the bound, an idle connection is
	// dropped at readTimeout. Each costs tini-hot a goroutine and a
	// buffer, about 12 KiB, for at most readTimeout.
	maxReading = 128
	// maxConns bounds the endpoint's open connections, those being
	// answered too: PID 1 must not pay for a flood of them. One more is
	// closed at once, unless an idle one could be evicted for it.
	maxConns = maxReading + 64
	// Connections are accepted at most acceptPace per acceptWindow (200
	// a second); more wait in the kernel's backlog. A flood of scrapes
	// then costs tini-hot, which shares the container's CPU with the
	// application, a few percent of a CPU: 200 clients scraping as fast
	// as they could had it at 94% even with cached figures.
	acceptPace   = 20
	acceptWindow = 100 * time.Millisecond
	// scrapeTimeout bounds the wait for the supervisor's status.
	scrapeTimeout = 5 * time.Second
	// maxHead bounds a request's head (request line and headers).
	maxHead = 8 << 10
)

// Deadlines of one connection, and how long a scrape's figures serve
// the next scrapes; variables for the tests.
var (
	readTimeout  = 2 * time.Second  // to receive the request head
	writeTimeout = 10 * time.Second // to send the answer
	// cacheFor: scrapes within cacheFor of the last rendering get its
	// figures. A flood of scrapes then costs tini-hot one rendering (a
	// status, /proc and the cgroup read) per cacheFor, not one each: a
	// flood of 200 clients had tini-hot at 50-100% of a CPU and made
	// liveness probes miss their second. Prometheus scrapes every 15 s
	// or more.
	cacheFor = time.Second
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

	reading *evict.Reading

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	// rendering lets one scrape at a time render; the others wait and
	// take its body (see cacheFor).
	rendering  sync.Mutex
	body       []byte
	renderedAt time.Time
}

// Listen binds addr (host:port) and serves src there until Close.
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:      ln,
		src:     src,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[net.Conn]struct{}),
		reading: evict.New(maxReading, "metrics endpoint", log),
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
	s.reading.Close()
	return err
}

// accept serves connections until the listener is closed, paced
// (acceptPace).
func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	paced := pace.Pacer{Count: acceptPace, Window: acceptWindow}
	for {
		if !paced.Wait(s.ctx.Done()) {
			return
		}
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
		e, evicted := s.reading.Add(c)
		if evicted != nil {
			_ = evicted.Close() // its goroutine sees the error and ends
		}
		switch open, ok := s.track(c, true); {
		case !ok:
			s.reading.Done(e)
			_ = c.Close()
			return
		case open > maxConns && evicted == nil:
			// A flood of new connections: this one is not served.
			s.track(c, false)
			s.reading.Done(e)
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { s.track(c, false) }()
			defer c.Close()
			defer s.reading.Done(e)
			s.serve(c, e)
		}()
	}
}

// track adds c to the open connections (or removes it), and returns how
// many are open; ok is false when the server is closed.
func (s *Server) track(c net.Conn, add bool) (open int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return len(s.conns), true
	}
	if s.closed {
		return len(s.conns), false
	}
	s.conns[c] = struct{}{}
	return len(s.conns), true
}

// serve answers the one request of c; e is its place among the
// connections still sending.
func (s *Server) serve(c net.Conn, e evict.Entry) {
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	limit := &io.LimitedReader{R: c, N: maxHead}
	method, path, err := readRequest(bufio.NewReader(limit))
	s.reading.Done(e)
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	head := method == http.MethodHead
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// The client left without asking anything, or was evicted for
		// it.
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
		body, err := s.scrape()
		if err != nil {
			_ = answer(c, http.StatusServiceUnavailable, "tini-hot status: "+err.Error()+"\n", nil, head)
			return
		}
		_ = answer(c, http.StatusOK, string(body), []string{"Content-Type: text/plain; version=0.0.4; charset=utf-8"}, head)
	}
}

// scrape renders the figures, or returns those rendered within cacheFor.
func (s *Server) scrape() ([]byte, error) {
	s.rendering.Lock()
	defer s.rendering.Unlock()
	if s.body != nil && time.Since(s.renderedAt) < cacheFor {
		return s.body, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, scrapeTimeout)
	defer cancel()
	st, err := s.src(ctx)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	Write(&body, &st)
	s.body, s.renderedAt = body.Bytes(), time.Now()
	return s.body, nil
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
