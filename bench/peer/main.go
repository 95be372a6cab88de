// Command peer is the benchmark's application for the upgrade methods
// tini-hot is compared with. Every mode answers GET / with "ospid:PID" and
// drains on SIGTERM; they differ in where the listening socket comes from
// and how an upgrade hands it over:
//
//	-mode bind       binds ADDR itself: an upgrade is stop, then start
//	-mode reuseport  binds ADDR with SO_REUSEPORT: the new process binds
//	                 next to the old one, which then stops
//	-mode tableflip  github.com/cloudflare/tableflip: SIGHUP makes the
//	                 process start its successor and hand it the socket
//	-mode hot        takes the socket from tini-hot (LISTEN_FDS) and drains
//	                 as hotapp does: close the listener, then shut down
//	-mode naive      takes the socket from tini-hot (LISTEN_FDS) and, on
//	                 SIGTERM, calls http.Server.Shutdown without closing
//	                 its listener first: the drain trap docs/OPERATIONS.md describes
//	-mode escaper    hot, and generation 1, when it drains, leaves behind
//	                 an escaped process: setsid, with no environment,
//	                 holding the socket and resetting every connection it
//	                 gets, until killed; its pid goes to the file -pidfile
//	                 names
//	-mode quic       serves internal/quicping on tini-hot's UDP socket, and
//	                 drains on SIGTERM (20 s at most)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/tini-hot/tini-hot/hotapp"
	"github.com/tini-hot/tini-hot/internal/listen"
	"github.com/tini-hot/tini-hot/internal/quicping"
)

func main() {
	mode := flag.String("mode", "bind", "bind, reuseport, tableflip, hot, naive, escaper or quic")
	addr := flag.String("addr", "127.0.0.1:8080", "address for bind, reuseport and tableflip")
	pidFile := flag.String("pidfile", "", "tableflip: the pid file naming the current process; escaper: the escaped process's")
	flag.Parse()
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "ospid:%d\n", os.Getpid())
		}),
	}
	var err error
	switch *mode {
	case "bind":
		var l net.Listener
		if l, err = net.Listen("tcp", *addr); err == nil {
			err = serveOwn(srv, l)
		}
	case "reuseport":
		lc := net.ListenConfig{Control: listen.ReusePort}
		var l net.Listener
		if l, err = lc.Listen(context.Background(), "tcp", *addr); err == nil {
			err = serveOwn(srv, l)
		}
	case "tableflip":
		err = serveTableflip(srv, *addr, *pidFile)
	case "hot":
		err = serveHot(srv)
	case "naive":
		err = serveNaive(srv)
	case "escaper":
		err = serveEscaper(srv, *pidFile)
	case "thief":
		err = thief()
	case "quic":
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		err = quicping.Serve(os.NewFile(3, "udp"), 20*time.Second, term)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// serveOwn serves on a listener of its own until SIGTERM, then shuts
// down: Shutdown closes the listener first, as it should.
func serveOwn(srv *http.Server, l net.Listener) error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() { _ = srv.Serve(l) }()
	<-term
	return srv.Shutdown(context.Background())
}

// serveTableflip is tableflip's documented use: SIGHUP upgrades, the
// parent exits once the child is ready.
func serveTableflip(srv *http.Server, addr, pidFile string) error {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile})
	if err != nil {
		return err
	}
	defer upg.Stop()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
		for s := range sig {
			if s == syscall.SIGTERM {
				upg.Stop()
				return
			}
			if err := upg.Upgrade(); err != nil {
				log.Printf("peer: upgrade: %v", err)
			}
		}
	}()
	l, err := upg.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(l) }()
	if err := upg.Ready(); err != nil {
		return err
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// serveHot serves tini-hot's socket with the Go helper, which notifies
// READY=1 and drains correctly on SIGTERM.
func serveHot(srv *http.Server) error {
	ls, err := fromTiniHot()
	if err != nil {
		return err
	}
	return hotapp.Serve(context.Background(), srv, ls, hotapp.Options{})
}

// fromTiniHot is the sockets tini-hot handed over; none is an error.
func fromTiniHot() ([]hotapp.Listener, error) {
	ls, err := hotapp.Listeners()
	if err == nil && len(ls) == 0 {
		err = errors.New("no socket from tini-hot (LISTEN_FDS)")
	}
	return ls, err
}

// serveEscaper is serveHot, and in generation 1 it starts, on SIGTERM,
// a process that outlives it: in a session of its own, with no
// environment that ties it to a generation, holding tini-hot's socket
// (fd 3, dup'ed first: hotapp closes it).
func serveEscaper(srv *http.Server, pidFile string) error {
	if os.Getenv("TINI_HOT_GENERATION") != "1" {
		return serveHot(srv)
	}
	fd, err := syscall.Dup(3)
	if err != nil {
		return err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	escaped := make(chan error, 1)
	go func() {
		<-term
		cmd := exec.Command(os.Args[0], "-mode", "thief")
		cmd.Env = []string{}
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "listener")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			escaped <- err
			return
		}
		escaped <- os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}()
	if err := serveHot(srv); err != nil {
		return err
	}
	return <-escaped
}

// thief accepts every connection on fd 3 and resets it unanswered.
func thief() error {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

// serveNaive serves tini-hot's socket and, on SIGTERM, calls Shutdown
// with the shared listener still open.
func serveNaive(srv *http.Server) error {
	ls, err := fromTiniHot()
	if err != nil {
		return err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() { _ = srv.Serve(ls[0].Listener) }()
	_ = hotapp.Notify("READY=1")
	<-term
	return srv.Shutdown(context.Background())
}
