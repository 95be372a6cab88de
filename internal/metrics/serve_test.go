package metrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/wait"
	"github.com/tini-hot/tini-hot/upgrade"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// listen serves status() (or fails while fail is set) on a free port.
func listen(t *testing.T, fail *atomic.Bool) *Server {
	t.Helper()
	src := func(ctx context.Context) (upgrade.Status, error) {
		if fail != nil && fail.Load() {
			return upgrade.Status{}, errors.New("shutting down")
		}
		return status(), nil
	}
	s, err := Listen("127.0.0.1:0", src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// raw sends req as is, closes its side of the connection, and returns
// the whole answer.
func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	return string(b)
}

// The endpoint as Prometheus (a net/http client) sees it: GET /metrics
// serves the source's status; a source that fails gives 503, other paths
// 404, other methods 405; HEAD has no body.
func TestServer(t *testing.T) {
	defer func(d time.Duration) { cacheFor = d }(cacheFor)
	cacheFor = 0 // every scrape asks the source
	var fail atomic.Bool
	s := listen(t, &fail)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, "http://"+s.Addr()+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp, b
	}
	resp, body := do("GET", "/metrics")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" || resp.ContentLength != int64(len(body)) || !resp.Close {
		t.Fatalf("GET /metrics: %s %v, %d bytes, close %v", resp.Status, resp.Header, len(body), resp.Close)
	}
	if value(t, Parse(t, bytes.NewReader(body)), "tini_hot_generation") != 6 {
		t.Fatal("wrong generation")
	}
	if resp, _ := do("GET", "/metrics?x=1"); resp.StatusCode != 200 {
		t.Fatalf("GET /metrics?x=1: %s", resp.Status)
	}
	if resp, body := do("HEAD", "/metrics"); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD /metrics: %s, %d bytes", resp.Status, len(body))
	}
	if resp, _ := do("GET", "/other"); resp.StatusCode != 404 {
		t.Fatalf("GET /other: %s", resp.Status)
	}
	if resp, _ := do("POST", "/metrics"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /metrics: %s %v", resp.Status, resp.Header)
	}
	fail.Store(true)
	if resp, body := do("GET", "/metrics"); resp.StatusCode != 503 || !strings.Contains(string(body), "shutting down") {
		t.Fatalf("failing source: %s %q", resp.Status, body)
	}
	if _, err := Listen("127.0.0.1:bad", nil, quiet()); err == nil {
		t.Fatal("bad address accepted")
	}
}

// Bad requests get one clear answer and the connection is closed; the
// server serves on.
func TestServerBadRequests(t *testing.T) {
	s := listen(t, nil)
	for _, c := range []struct{ req, want string }{
		{"GET /metrics\r\n\r\n", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 "},
		{"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400 "}, // cut short
		{"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 "},
		{"GET /metrics HTTP/1.1\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n", "HTTP/1.1 431 "},
		{"GET /metrics HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
		{"", ""}, // connected, said nothing, left: no answer
	} {
		got := raw(t, s.Addr(), c.req)
		if !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("%.40q: answer %.80q, want %q", c.req, got, c.want)
		}
	}
	if got := raw(t, s.Addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("after the bad requests: %.80q", got)
	}
}

// Clients that send a part of a request and stop are answered and
// dropped at the read deadline, or evicted by newer ones beyond
// maxReading: none holds a connection slot for good.
func TestServerSlowClients(t *testing.T) {
	defer func(d time.Duration) { readTimeout = d }(readTimeout)
	readTimeout = 200 * time.Millisecond
	s := listen(t, nil)
	var idle []net.Conn
	for range maxConns {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /met")
		idle = append(idle, c)
	}
	evicted := 0
	for _, c := range idle {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		switch b, _ := io.ReadAll(c); {
		case len(b) == 0:
			evicted++
		case !strings.HasPrefix(string(b), "HTTP/1.1 400 "):
			t.Errorf("a client cut at the deadline got %q", b)
		}
		c.Close()
	}
	if evicted > maxConns-maxReading {
		t.Errorf("%d of %d evicted, want at most %d", evicted, maxConns, maxConns-maxReading)
	}
	if got := raw(t, s.Addr(), "GET /metrics HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("after the slow clients: %.80q", got)
	}
}

// TestSlowloris: clients that connect and send nothing, reopened as soon
// as they are dropped, never hold the endpoint: every scrape meanwhile is
// answered. 16 more than maxConns: the oldest are evicted, and reopened
// at once, an eviction each time; without evictions, maxConns idle ones
// would have every new connection closed. aa4f58b served 8 connections
// at a time with a 10 s read deadline: 8 idle ones took every slot, and a
// scrape waited 10 s, or for ever behind reopened ones.
func TestSlowloris(t *testing.T) {
	s := listen(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	var opened atomic.Int64
	for range maxConns + 16 {
		wg.Go(func() {
			for {
				c, err := net.Dial("tcp", s.Addr())
				if err != nil {
					return
				}
				opened.Add(1)
				done := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, c); close(done) }() // returns once dropped
				select {
				case <-done:
					c.Close()
				case <-stop:
					c.Close()
					return
				}
			}
		})
	}
	// Once the endpoint holds maxReading of them and has dropped one: a
	// reopened connection was opened.
	wait.Until(t, "the idle connections to be taken in, and one dropped", func() bool {
		return s.reading.Len() >= maxReading && opened.Load() > maxConns+16
	})
	// Half of Prometheus's default scrape timeout (10 s): aa4f58b's
	// scrapes waited 10 s or for ever. Here a scrape waits for the
	// reopened connections queued before it, accepted at 200 a second:
	// about 0.5 s.
	client := &http.Client{Timeout: 5 * time.Second}
	var slowest time.Duration
	for i := range 10 {
		start := time.Now()
		resp, err := client.Get("http://" + s.Addr() + "/metrics")
		if err != nil {
			t.Fatalf("scrape %d among %d idle connections: %v", i, opened.Load(), err)
		}
		resp.Body.Close()
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("10 scrapes answered, slowest in %v; %d idle connections opened", slowest.Round(time.Millisecond), opened.Load())
}

// TestScrapeCache: scrapes within cacheFor of a rendering get its
// figures: 30 concurrent scrapes ask the supervisor once.
func TestScrapeCache(t *testing.T) {
	var asked atomic.Int64
	src := func(ctx context.Context) (upgrade.Status, error) {
		asked.Add(1)
		return status(), nil
	}
	s, err := Listen("127.0.0.1:0", src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			if got := raw(t, s.Addr(), "GET /metrics HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
				t.Errorf("scrape: %.80q", got)
			}
		})
	}
	wg.Wait()
	// The flood took less than cacheFor on any machine this runs on;
	// if not, a second rendering is still far from one per scrape.
	if n := asked.Load(); n > 2 {
		t.Fatalf("30 scrapes asked the supervisor %d times", n)
	}
}

// Close ends open connections and the accept loop, and returns when the
// server's goroutines are gone; it can be called twice.
func TestServerClose(t *testing.T) {
	started := make(chan struct{})
	src := func(ctx context.Context) (upgrade.Status, error) {
		close(started)
		<-ctx.Done() // a supervisor that does not answer
		return upgrade.Status{}, ctx.Err()
	}
	s, err := Listen("127.0.0.1:0", src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\n\r\n")
	<-started
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after Close")
	}
}

// readRequest never panics, and what it accepts is a GET-like head with
// a path.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /metrics?a=b HTTP/1.0\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"GET  /metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n continued\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		method, path, err := readRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if method == "" || !strings.HasPrefix(path, "/") || strings.Contains(path, "?") {
			t.Fatalf("%q: accepted as %q %q", in, method, path)
		}
	})
}

// TestAcceptPaced: connections are accepted at most acceptPace per
// acceptWindow, so 3 windows' worth take at least two windows. (A lower
// bound: a slow machine only makes it longer.)
func TestAcceptPaced(t *testing.T) {
	s := listen(t, nil)
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 * acceptPace {
		wg.Go(func() {
			if got := raw(t, s.Addr(), "GET /metrics HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
				t.Errorf("scrape: %.80q", got)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took < 2*acceptWindow {
		t.Fatalf("%d scrapes answered in %v, under %v: not paced", 3*acceptPace, took, 2*acceptWindow)
	}
}
