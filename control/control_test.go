package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"github.com/tini-hot/tini-hot/internal/wait"
)

func TestParseRequest(t *testing.T) {
	for _, ok := range []string{`{"op":"reload"}`, `{"op":"reload","wait_drained":true}`, ` {"op":"status"} `, `{"op":"probe"}`, `{"op":"probe","liveness":true}`, `{"op":"prestop"}`} {
		if _, err := ParseRequest([]byte(ok)); err != nil {
			t.Errorf("ParseRequest(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{``, `{}`, `{"op":"launch"}`, `{"op":"reload","x":1}`, `{"op":"reload"}{}`,
		`[1]`, `{"op":7}`, `{"op":"status","wait_drained":true}`, `{"op":"prestop","liveness":true}`, `{"op":"probe","wait_drained":true}`, strings.Repeat(" ", MaxRequestSize+1)} {
		if r, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%.40q) = %+v, want an error", bad, r)
		}
	}
}

// FuzzParseRequest: any bytes give a known op or an error, never a panic.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"op":"reload","wait_drained":true}`))
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":"probe","liveness":true}`))
	f.Add([]byte(`{"op":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if !slices.Contains([]string{OpReload, OpStatus, OpProbe, OpPrestop}, r.Op) {
			t.Fatalf("accepted op %q", r.Op)
		}
		if (r.WaitDrained && r.Op != OpReload) || (r.Liveness && r.Op != OpProbe) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, func(_ context.Context, r Request) Response {
		return Response{OK: true, Generation: 2}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := Do(ctx, path, Request{Op: OpReload})
	if err != nil || !resp.OK || resp.Generation != 2 {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	// Garbage gets an error answer and the server keeps serving.
	for _, junk := range []string{"garbage\n", `{"op":"nope"}` + "\n", strings.Repeat("x", MaxRequestSize+10)} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(junk))
		b := make([]byte, 512)
		n, _ := c.Read(b)
		c.Close()
		if !strings.Contains(string(b[:n]), `"ok":false`) {
			t.Errorf("answer to %.20q: %q", junk, b[:n])
		}
	}
	if _, err := Listen(path, nil, nil); err == nil {
		t.Error("second server on a live socket succeeded")
	}
	if resp, err := Do(ctx, path, Request{Op: OpStatus}); err != nil || !resp.OK {
		t.Fatalf("after junk: %+v, %v", resp, err)
	}
	s.Close()
	s.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

// dialEnv makes the test binary a client: it sends a status request to
// the socket it names and prints the answer.
const dialEnv = "CONTROL_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(dialEnv); path != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := Do(ctx, path, Request{Op: OpStatus})
		fmt.Printf("%+v %v\n", resp, err)
		return
	}
	os.Exit(m.Run())
}

// TestServerRefusesOtherUids: even through a socket file anyone may open,
// a client of another uid than root or the server's is refused
// (SO_PEERCRED), and the handler never sees its request.
func TestServerRefusesOtherUids(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("missing prerequisite under CI: root, to run a client as another uid")
		}
		t.Skip("needs root to run a client as another uid")
	}
	// A directory, binary and socket that uid 65534 can reach.
	dir := t.TempDir()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "ctl.sock")
	var handled atomic.Int32
	s, err := Listen(path, func(context.Context, Request) Response { handled.Add(1); return Response{OK: true} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	dial := func(uid uint32) string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), dialEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v: %s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := dial(65534); !strings.Contains(got, "uid 65534 may not use the control socket") || handled.Load() != 0 {
		t.Errorf("client as uid 65534: %s (handled %d)", got, handled.Load())
	}
	if got := dial(0); !strings.HasPrefix(got, "{OK:true") || handled.Load() != 1 {
		t.Errorf("client as root: %s (handled %d)", got, handled.Load())
	}
}

// blocking is a handler whose reloads wait until their context ends and
// whose other requests are answered at once; gone counts the reloads
// whose context ended.
type blocking struct {
	started, waiting, gone atomic.Int32
}

func (b *blocking) handle(ctx context.Context, r Request) Response {
	if r.Op != OpReload {
		return Response{OK: true, Generation: 1}
	}
	b.started.Add(1)
	b.waiting.Add(1)
	<-ctx.Done()
	b.waiting.Add(-1)
	b.gone.Add(1)
	return Response{Error: "gone"}
}

// listenBlocking serves a blocking handler on a fresh socket.
func listenBlocking(t *testing.T) (*Server, *blocking) {
	t.Helper()
	b := &blocking{}
	s, err := Listen(filepath.Join(t.TempDir(), "ctl.sock"), b.handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, b
}

// probe asks for a probe with a 1 s budget, as a kubelet's exec probe.
func probe(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := Do(ctx, path, Request{Op: OpProbe})
	if err != nil || !resp.OK {
		t.Fatalf("probe: %+v, %v", resp, err)
	}
}

// TestAbandonedRequests: reloads whose clients went away free their place
// and their handler learns it; more of them than the server can hold
// waiting never stop a probe.
func TestAbandonedRequests(t *testing.T) {
	s, b := listenBlocking(t)
	for i := 0; i < 3*maxWaiting; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := Do(ctx, s.Path(), Request{Op: OpReload})
		cancel()
		var te *TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("reload %d: %v, want a timeout", i, err)
		}
	}
	wait.Until(t, "every abandoned reload's handler to end", func() bool {
		return b.gone.Load() == b.started.Load() && b.waiting.Load() == 0
	})
	if n := b.started.Load(); n <= maxWaiting {
		t.Fatalf("only %d of %d reloads reached the handler", n, 3*maxWaiting)
	}
	probe(t, s.Path())
}

// TestHalfClosedClientWaits: a client that shuts down its sending side
// after the request still gets the answer; one that closes does not keep
// the handler.
func TestHalfClosedClientWaits(t *testing.T) {
	answer := make(chan struct{})
	path := filepath.Join(t.TempDir(), "ctl.sock")
	var gone atomic.Bool
	s, err := Listen(path, func(ctx context.Context, r Request) Response {
		select {
		case <-answer:
			return Response{OK: true, Generation: 3}
		case <-ctx.Done():
			gone.Store(true)
			return Response{}
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"op":"reload"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// Several hang-up polls later, the request still waits.
	time.Sleep(3 * hangupPoll)
	if gone.Load() {
		t.Fatal("a half-closed client was taken for gone")
	}
	close(answer)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), `"generation":3`) {
		t.Fatalf("answer %q", b)
	}
}

// TestIdleConnectionsDoNotBlockProbes: hundreds of connections that send
// nothing never make a probe wait or fail.
func TestIdleConnectionsDoNotBlockProbes(t *testing.T) {
	s, _ := listenBlocking(t)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	for i := 0; i < 20; i++ {
		probe(t, s.Path())
	}
}

// TestCloseIsPrompt: Close returns at once with idle connections and
// reloads waiting, and the waiting handlers are told.
func TestCloseIsPrompt(t *testing.T) {
	s, b := listenBlocking(t)
	for i := 0; i < 10; i++ {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() { _, _ = Do(context.Background(), s.Path(), Request{Op: OpReload}) }()
	}
	wait.Until(t, "10 reloads waiting", func() bool { return b.waiting.Load() == 10 })
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with idle connections and waiting reloads", took)
	}
	if b.waiting.Load() != 0 {
		t.Errorf("%d handlers still waiting after Close", b.waiting.Load())
	}
}

// TestTooManyWaiting: reloads beyond the bound are answered busy at once.
func TestTooManyWaiting(t *testing.T) {
	s, b := listenBlocking(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < maxWaiting; i++ {
		go func() { _, _ = Do(ctx, s.Path(), Request{Op: OpReload}) }()
	}
	wait.Until(t, "the reloads to wait", func() bool { return b.waiting.Load() == maxWaiting })
	resp, err := Do(context.Background(), s.Path(), Request{Op: OpReload})
	if err != nil || !strings.HasPrefix(resp.Error, "busy:") {
		t.Fatalf("one reload too many: %+v, %v", resp, err)
	}
	probe(t, s.Path())
}

// TestNotRunning: a missing socket names the path and matches
// ErrNotRunning.
func TestNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, err := Do(context.Background(), path, Request{Op: OpStatus})
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Do on a missing socket: %v", err)
	}
}

// TestEvictionsLoggedOnce: 1,000 connections that send nothing evict one
// another; the log says so once, not once per eviction (aa4f58b: a WARN
// "refused … use of closed network connection" for most of them), and a
// probe is answered meanwhile.
func TestEvictionsLoggedOnce(t *testing.T) {
	var logged syncbuf.Buffer
	b := &blocking{}
	s, err := Listen(filepath.Join(t.TempDir(), "ctl.sock"), b.handle, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 1000 {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Each idle connection beyond the bound is evicted with an answer:
	// the last one dialled that was evicted has read it.
	evicted := idle[len(idle)-maxReading-1]
	_ = evicted.SetReadDeadline(time.Now().Add(30 * time.Second))
	if line, err := bufio.NewReader(evicted).ReadString('\n'); err != nil || !strings.Contains(line, "busy") {
		t.Fatalf("evicted connection read %q, %v", line, err)
	}
	probe(t, s.Path())
	out := logged.String()
	if n := strings.Count(out, "evicting the oldest connection"); n != 1 || strings.Contains(out, "refused") {
		t.Fatalf("%d eviction lines, refused %v, in:\n%.2000s", n, strings.Contains(out, "refused"), out)
	}
}

// TestSocketFileRemoved: a removed socket file is bound again, mode 0600,
// and said once; a connection opened before goes on. A path that then
// names another file is reported, not taken, and Close leaves it.
func TestSocketFileRemoved(t *testing.T) {
	defer func(d time.Duration) { keepEvery = d }(keepEvery)
	keepEvery = 10 * time.Millisecond
	var logged syncbuf.Buffer
	var waiting atomic.Int32
	release := make(chan struct{})
	handle := func(ctx context.Context, r Request) Response {
		if r.Op == OpReload {
			waiting.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
				return Response{Error: "gone"}
			}
		}
		return Response{OK: true, Generation: 1}
	}
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, handle, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A reload in progress across the removal: answered when released.
	answered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := Do(ctx, path, Request{Op: OpReload})
		if err == nil && !resp.OK {
			err = errors.New(resp.Error)
		}
		answered <- err
	}()
	wait.Until(t, "the reload to wait", func() bool { return waiting.Load() == 1 })
	for round := range 3 {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		wait.Until(t, "the socket file to be bound again", func() bool {
			c, err := net.Dial("unix", path) // the file comes at bind, before listen
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("round %d: socket mode %v, %v; want 0600", round, fi.Mode(), err)
		}
		probe(t, path)
	}
	if n := strings.Count(logged.String(), "its file was removed; bound again"); n != 3 {
		t.Fatalf("%d lines for 3 removals:\n%s", n, logged.String())
	}
	close(release)
	if err := <-answered; err != nil {
		t.Fatalf("the reload begun before the removals: %v", err)
	}
	// Another file in its place: said once, left alone.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, "the other file to be reported", func() bool {
		return strings.Contains(logged.String(), "its path now names another file")
	})
	s.Close()
	if got, err := os.ReadFile(path); err != nil || string(got) != "not a socket" {
		t.Fatalf("after Close, the other file: %q, %v", got, err)
	}
	if n := strings.Count(logged.String(), "names another file"); n != 1 {
		t.Fatalf("%d lines for one replacement:\n%s", n, logged.String())
	}
}

// TestBindUmaskNotInherited: a process forked while the socket is bound
// (again) never inherits bind's umask 0177: a generation started by a
// reload while the keeper binds would create its files 0600.
func TestBindUmaskNotInherited(t *testing.T) {
	want, err := exec.Command("sh", "-c", "umask").Output()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ctl.sock")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ln, _, err := bind(path)
			if err != nil {
				t.Error(err)
				return
			}
			ln.Close() // unlinks the file
		}
	}()
	defer func() { close(stop); <-done }()
	for i := range 200 {
		got, err := exec.Command("sh", "-c", "umask").Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("fork %d while binding: umask %s, want %s", i, strings.TrimSpace(string(got)), strings.TrimSpace(string(want)))
		}
	}
}
