package hotapp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// listenFdsStart is SD_LISTEN_FDS_START.
const listenFdsStart = 3

// Listener is an inherited socket with its LISTEN_FDNAMES name.
type Listener struct {
	Name string
	net.Listener
}

// Listeners returns the stream sockets handed over with LISTEN_FDS, in
// order, or none when the process was not socket-activated (LISTEN_PID
// is not its pid). It clears the LISTEN_* variables so that child
// processes do not take them as theirs.
func Listeners() ([]Listener, error) {
	defer func() {
		for _, v := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} {
			_ = os.Unsetenv(v) // cannot fail for these names
		}
	}()
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a count", os.Getenv("LISTEN_FDS"))
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	out := make([]Listener, 0, n)
	for i := 0; i < n; i++ {
		fd := listenFdsStart + i
		syscall.CloseOnExec(fd)
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener holds its own duplicate
		if err != nil {
			return nil, fmt.Errorf("LISTEN_FDS fd %d (%s): %w", fd, name, err)
		}
		out = append(out, Listener{Name: name, Listener: l})
	}
	return out, nil
}

// Notify sends state (e.g. "READY=1") to NOTIFY_SOCKET. Without
// NOTIFY_SOCKET it does nothing and returns nil.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // the abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %q: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %q: %w", state, err)
	}
	return nil
}

// Options tunes Serve. Zero values are the defaults.
type Options struct {
	// DrainSignals start the drain; default SIGTERM and SIGINT.
	DrainSignals []os.Signal
	// DrainTimeout bounds the whole drain; default 30s (then open
	// connections are closed).
	DrainTimeout time.Duration
	// IdleGrace is how long a keep-alive connection that is idle when
	// the drain starts may still bring one more request (answered with
	// "Connection: close") before it is closed; default 1s. Closing an
	// idle connection races with a client sending on it, so this wait
	// avoids the race for every client that is actually busy.
	IdleGrace time.Duration
}

// Serve serves srv on every listener, sends READY=1, and on a drain
// signal or the end of ctx drains: it closes the listeners first, turns
// keep-alives off, sends STOPPING=1 and shuts srv down. It returns nil
// after a clean drain.
func Serve(ctx context.Context, srv *http.Server, ls []Listener, opts Options) error {
	if len(ls) == 0 {
		return errors.New("serve: no listeners")
	}
	if len(opts.DrainSignals) == 0 {
		opts.DrainSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.IdleGrace <= 0 {
		opts.IdleGrace = time.Second
	}
	// While draining, every response closes its connection, so that a
	// keep-alive client moves to the next generation after its current
	// request instead of having its connection closed under it.
	var draining atomic.Bool
	var conns sync.Map // net.Conn -> struct{}: connections still open
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateClosed, http.StateHijacked:
			conns.Delete(c)
		default:
			conns.Store(c, struct{}{})
		}
		if hook != nil {
			hook(c, st)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, opts.DrainSignals...)
	defer signal.Stop(sigs)

	errs := make(chan error, len(ls))
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			if err := srv.Serve(shutTolerant{l}); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		}(l.Listener)
	}
	_ = Notify("READY=1") // without a supervisor there is nobody to tell

	var serveErr error
	select {
	case <-sigs:
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	// The order matters: stop accepting first, so that nothing is accepted
	// and then dropped by Shutdown; pending connections stay queued in the
	// shared socket for the next generation.
	for _, l := range ls {
		_ = l.Close() // errors: already closed by a failed Serve
	}
	// Let every srv.Serve see its listener closed and return: until then
	// the server still tracks the listener, and Shutdown would close it
	// again and fail with "use of closed network connection". Requests
	// in flight go on; Shutdown waits for them below.
	wg.Wait()
	draining.Store(true)
	_ = Notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), opts.DrainTimeout)
	defer cancel()
	// Give keep-alive connections the grace to bring their next request;
	// each is then answered with Connection: close.
	grace := time.NewTimer(opts.IdleGrace)
	defer grace.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		open := false
		conns.Range(func(any, any) bool { open = true; return false })
		if !open {
			break
		}
		select {
		case <-grace.C:
			break wait
		case <-sctx.Done():
			break wait
		case <-tick.C:
		}
	}
	// Shutdown closes what is still idle and waits for active requests.
	err := srv.Shutdown(sctx)
	if serveErr != nil {
		return serveErr
	}
	return err
}

// shutTolerant makes the accept error of a socket shut down by another
// process temporary, so that http.Server retries it (after 5 ms, backing
// off to 1 s) instead of returning it. Every generation shares the
// socket's file description, and a shutdown(2) by any of them makes
// accept(2) fail with EINVAL for all; tini-hot makes a TCP socket listen
// again at once (see tini-hot's docs/OPERATIONS.md, "A generation that shuts the
// shared socket down"). Our own Close gives net.ErrClosed, never EINVAL.
type shutTolerant struct{ net.Listener }

func (l shutTolerant) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && errors.Is(err, syscall.EINVAL) {
		return nil, notListening{err}
	}
	return c, err
}

// notListening is an accept error that http.Server retries.
type notListening struct{ error }

func (notListening) Timeout() bool   { return false }
func (notListening) Temporary() bool { return true }
func (e notListening) Unwrap() error { return e.error }
