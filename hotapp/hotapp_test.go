package hotapp

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/freeport"
	"github.com/tini-hot/tini-hot/internal/launch"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The test binary is its own trampoline (LISTEN_PID: launch's init)
	// and, with HOTAPP_SERVE set, the application.
	if os.Getenv("HOTAPP_SERVE") == "1" {
		os.Exit(serveHelper())
	}
	os.Exit(m.Run())
}

// serveHelper is a server built on hotapp, as an application would be.
func serveHelper() int {
	ls, err := Listeners()
	if err != nil || len(ls) != 1 || ls[0].Name != "web" || os.Getenv("LISTEN_FDS") != "" {
		fmt.Fprintln(os.Stderr, "listeners:", ls, err)
		return 3
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			_ = Notify("STATUS=slow") // tells the test it is in flight
			time.Sleep(500 * time.Millisecond)
		}
		fmt.Fprint(w, "ok")
	})
	if err := Serve(context.Background(), &http.Server{Handler: mux}, ls, Options{IdleGrace: 200 * time.Millisecond}); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// TestServeDrains runs a hotapp server on a socket handed over as
// tini-hot does: it reports READY=1, serves, and on SIGTERM reports
// STOPPING=1, finishes the request in flight, closes keep-alive
// connections with its answer and exits 0.
func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, _ := ln.(*net.TCPListener).SyscallConn()
	var fd int
	_ = raw.Control(func(s uintptr) { fd = int(s) })

	notifyName := fmt.Sprintf("hotapp-test-%d", time.Now().UnixNano())
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@" + notifyName, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	expect := func(state string) {
		t.Helper()
		_ = notify.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 256)
		n, err := notify.Read(b)
		if err != nil || string(b[:n]) != state {
			t.Fatalf("notify: %q, %v; want %q", b[:n], err, state)
		}
	}

	pid, err := launch.Start(launch.Spec{
		Argv: []string{os.Args[0]},
		Env:  append(os.Environ(), "HOTAPP_SERVE=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web", "NOTIFY_SOCKET=@"+notifyName),
		Fds:  []int{fd},
	})
	if err != nil {
		t.Fatal(err)
	}
	expect("READY=1")
	url := "http://" + ln.Addr().String() + "/"
	// Every client has a timeout: a server that hangs fails the test
	// instead of hanging it.
	keep := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	once := &http.Client{Timeout: 30 * time.Second}
	if body, err := fetch(keep, url); err != nil || body != "ok" {
		t.Fatalf("GET: %q, %v", body, err)
	}
	slow := make(chan error, 1)
	go func() { _, err := fetch(once, url+"?slow=1"); slow <- err }()
	expect("STATUS=slow")
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	// The idle keep-alive connection brings one more request, answered
	// with Connection: close.
	resp, err := keep.Get(url)
	if err != nil {
		t.Fatalf("keep-alive request while draining: %v", err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Error("answer while draining does not close the connection")
	}
	if err := <-slow; err != nil {
		t.Errorf("request in flight at SIGTERM: %v", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("server ended %v, %v; want exit 0", ws, err)
	}
	// The socket stayed with us: new connections queue for the next
	// generation instead of being refused.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("socket closed by the drained server: %v", err)
	}
	c.Close()
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// TestListenersNotActivated returns none when LISTEN_PID is another
// process's.
func TestListenersNotActivated(t *testing.T) {
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_PID", "1")
	ls, err := Listeners()
	if err != nil || len(ls) != 0 {
		t.Fatalf("Listeners = %v, %v; want none", ls, err)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		t.Error("LISTEN_FDS left in the environment")
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
}

// lateListener reports its closing from Accept only after a while, as a
// busy machine may schedule http.Server.Serve's goroutine late.
type lateListener struct{ net.Listener }

func (l lateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		time.Sleep(100 * time.Millisecond)
	}
	return c, err
}

// TestServeCleanWhenServeIsLate: a drain whose Serve goroutine has not
// yet seen its listener closed still ends cleanly (it once returned "use
// of closed network connection" from Shutdown, and the demo exited 1).
func TestServeCleanWhenServeIsLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, &http.Server{Handler: http.NotFoundHandler()}, []Listener{{Name: "web", Listener: lateListener{ln}}}, Options{IdleGrace: time.Millisecond})
	}()
	// Serving: a connection is accepted.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	drained(t, cancel, done)
}

// drained ends a Serve by its context and checks that it returns nil.
func drained(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after a drain: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// acceptErrors signals each accept error that http.Server logs.
type acceptErrors chan string

func (a acceptErrors) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "Accept error") {
		select {
		case a <- string(p):
		default:
		}
	}
	return len(p), nil
}

// TestServeSurvivesShutdown: another generation's shutdown(2) of the
// shared socket makes accept fail with EINVAL until tini-hot makes the
// socket listen again; Serve retries instead of returning, and serves
// again once it listens.
func TestServeSurvivesShutdown(t *testing.T) {
	// A port of our choosing: one the kernel chose is given up with the
	// listening state.
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	logged := make(acceptErrors, 1)
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }),
		ErrorLog: log.New(logged, "", 0),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, srv, []Listener{{Name: "web", Listener: ln}}, Options{IdleGrace: time.Millisecond})
	}()
	url := "http://" + ln.Addr().String() + "/"
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if body, err := fetch(c, url); err != nil || body != "ok" {
		t.Fatalf("GET: %q, %v", body, err)
	}

	// Another generation's copy of the socket, shut down.
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	_ = raw.Control(func(s uintptr) { fd = int(s) })
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Shutdown(dup, unix.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
	unix.Close(dup)
	select {
	case line := <-logged:
		if !strings.Contains(line, "invalid argument") {
			t.Errorf("accept error logged: %q", line)
		}
	case err := <-done:
		t.Fatalf("Serve returned %v when another process shut the socket down", err)
	case <-time.After(30 * time.Second):
		t.Fatal("accept did not fail on a socket shut down")
	}
	// What tini-hot's guard does.
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	if body, err := fetch(c, url); err != nil || body != "ok" {
		t.Fatalf("GET once the socket listens again: %q, %v", body, err)
	}
	drained(t, cancel, done)
}
