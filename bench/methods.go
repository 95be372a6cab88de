package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is an application under one upgrade method.
type server interface {
	// upgrade replaces the serving process and returns once the new one
	// serves.
	upgrade() error
	stop()
}

// method is one way to upgrade a server in place. Every method runs the
// same application, the peer program, in the mode the method needs.
type method struct {
	name, about string
	start       func(b bins, addr, dir string) (server, error)
}

var methods = []method{
	{"tini-hot", "tini-hot -l, the app with tini-hot's Go helper (hotapp: closes its listener, then shuts down)", startTiniHot("hot")},
	{"tini-hot, SIGHUP", "the same, upgraded with SIGHUP to tini-hot (as `kubectl exec POD -- kill -HUP 1`) instead of `tini-hot reload`", startTiniHotHUP("hot")},
	{"stop-then-start", "the app binds the port itself; SIGTERM, wait, start the new one", startBind},
	{"SO_REUSEPORT", "the new process binds next to the old one, then the old one stops", startReuseport},
	{"tableflip", "cloudflare/tableflip v1.2.3: SIGHUP, the process hands the socket to its successor", startTableflip},
	{"tini-hot, naive app", "tini-hot -l, an app that calls Shutdown with the listener open", startTiniHot("naive")},
	{"tini-hot, naive app, shared sockets", "the same with --shared-sockets: every generation shares one socket, as before steering", startTiniHotWith("naive", shared)},
	{"tini-hot, gunicorn", "tini-hot -l, Debian's gunicorn (2 workers) serving e2e/testdata/wsgiapp.py", startTiniHot("gunicorn")},
	{"tini-hot, gunicorn, shared sockets", "the same with --shared-sockets", startTiniHotWith("gunicorn", shared)},
	{"tini-hot, escaped process", "tini-hot -l, the hotapp app whose first generation leaves behind a process (setsid, no environment) that holds its socket and resets every connection it gets", startTiniHot("escaper")},
	{"tini-hot, escaped process, shared sockets", "the same with --shared-sockets", startTiniHotWith("escaper", shared)},
}

// shared is the flag that turns steering off.
var shared = []string{"--shared-sockets"}

// tiniHot is the demo (or a mode of the peer) behind tini-hot, upgraded
// with `tini-hot reload`, or with SIGHUP when hup is set.
type tiniHot struct {
	p       *proc
	control string
	bin     string
	url     string
	hup     bool
	thief   string // the escaped process's pid file, for stop
}

func startTiniHot(app string, env ...string) func(b bins, addr, dir string) (server, error) {
	return startTiniHotWith(app, nil, env...)
}

// startTiniHotWith is startTiniHot with more of tini-hot's flags.
func startTiniHotWith(app string, flags []string, env ...string) func(b bins, addr, dir string) (server, error) {
	return func(b bins, addr, dir string) (server, error) {
		control := filepath.Join(dir, "control.sock")
		argv := append([]string{b.tiniHot, "-l", "tcp://" + addr, "--ready", "notify", "--control", control}, flags...)
		argv = append(argv, "--")
		thief := ""
		switch app {
		case "demo":
			argv = append(argv, b.demo)
		case "gunicorn":
			gunicorn, err := exec.LookPath("gunicorn")
			if err != nil {
				return nil, fmt.Errorf("gunicorn (Debian package gunicorn): %w", err)
			}
			argv = append(argv, gunicorn, "--chdir", "e2e/testdata", "-w", "2", "wsgiapp:app")
		case "escaper":
			thief = filepath.Join(dir, "thief.pid")
			argv = append(argv, b.peer, "-mode", app, "-pidfile", thief)
		default:
			argv = append(argv, b.peer, "-mode", app)
		}
		p, err := start(env, argv...)
		if err != nil {
			return nil, err
		}
		s := &tiniHot{p: p, control: control, bin: b.tiniHot, url: "http://" + addr + "/", thief: thief}
		return s, until(10*time.Second, "tini-hot to serve", func() bool { _, err := answer(s.url); return err == nil })
	}
}

// startTiniHotHUP is startTiniHot, upgraded with SIGHUP.
func startTiniHotHUP(app string) func(b bins, addr, dir string) (server, error) {
	start := startTiniHot(app)
	return func(b bins, addr, dir string) (server, error) {
		s, err := start(b, addr, dir)
		if t, ok := s.(*tiniHot); ok {
			t.hup = true
		}
		return s, err
	}
}

func (s *tiniHot) upgrade() error {
	if s.hup {
		return s.hangUp()
	}
	return s.client("reload")
}

// client runs a tini-hot subcommand against s's control socket.
func (s *tiniHot) client(args ...string) error {
	out, err := exec.Command(s.bin, append(args, "--control", s.control)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tini-hot %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// hangUp sends tini-hot SIGHUP and returns once the process that
// answered before has exited: the new generation was ready and the old
// one drained. tableflip's upgrade waits the same way.
func (s *tiniHot) hangUp() error {
	body, err := answer(s.url)
	if err != nil {
		return err
	}
	old, err := strconv.Atoi(strings.TrimPrefix(body, "ospid:"))
	if err != nil {
		return fmt.Errorf("the app answered %q", body)
	}
	if err := syscall.Kill(s.p.pid(), syscall.SIGHUP); err != nil {
		return err
	}
	return until(30*time.Second, "the new generation to take over", func() bool { return !alive(old) })
}

func (s *tiniHot) stop() {
	s.p.stop()
	if s.thief != "" {
		// It outlives tini-hot, which is not PID 1 of a namespace here.
		b, _ := os.ReadFile(s.thief)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ownSocket is the peer binding its own socket: stop-then-start, or
// SO_REUSEPORT's overlap.
type ownSocket struct {
	p          *proc
	argv       []string
	url        string
	overlapped bool
}

func startOwn(b bins, addr, mode string) (*ownSocket, error) {
	s := &ownSocket{argv: []string{b.peer, "-mode", mode, "-addr", addr}, url: "http://" + addr + "/", overlapped: mode == "reuseport"}
	var err error
	if s.p, err = start(nil, s.argv...); err != nil {
		return nil, err
	}
	return s, until(10*time.Second, mode+" peer to serve", func() bool { _, err := answer(s.url); return err == nil })
}

func startBind(b bins, addr, _ string) (server, error)      { return startOwn(b, addr, "bind") }
func startReuseport(b bins, addr, _ string) (server, error) { return startOwn(b, addr, "reuseport") }

func (s *ownSocket) upgrade() error {
	old := s.p
	if !s.overlapped {
		old.stop()
	}
	p, err := start(nil, s.argv...)
	if err != nil {
		return err
	}
	s.p = p
	want := fmt.Sprintf("ospid:%d", p.pid())
	if err := until(10*time.Second, "the new process to answer", func() bool { body, _ := answer(s.url); return body == want }); err != nil {
		return err
	}
	if s.overlapped {
		old.stop()
	}
	return nil
}

func (s *ownSocket) stop() { s.p.stop() }

// flip is the peer under tableflip: the running process is whichever the
// pid file names.
type flip struct {
	first   *proc
	pidFile string
	url     string
}

func startTableflip(b bins, addr, dir string) (server, error) {
	s := &flip{pidFile: filepath.Join(dir, "peer.pid"), url: "http://" + addr + "/"}
	var err error
	if s.first, err = start(nil, b.peer, "-mode", "tableflip", "-addr", addr, "-pidfile", s.pidFile); err != nil {
		return nil, err
	}
	return s, until(10*time.Second, "tableflip peer to serve", func() bool { _, err := answer(s.url); return err == nil && s.current() > 0 })
}

func (s *flip) current() int {
	b, _ := os.ReadFile(s.pidFile)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func (s *flip) upgrade() error {
	old := s.current()
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		return err
	}
	return until(30*time.Second, "tableflip's successor to take over", func() bool {
		cur := s.current()
		return cur != old && cur > 0 && !alive(old)
	})
}

func (s *flip) stop() {
	pid := s.current()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	_ = until(30*time.Second, "tableflip peer to exit", func() bool { return !alive(pid) })
	select {
	case <-s.first.done:
	default:
		s.first.stop()
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}
