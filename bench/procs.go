package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tini-hot/tini-hot/internal/freeport"
)

// bins are the programs the benchmark runs, built into a temporary
// directory by build.
type bins struct {
	tiniHot, demo, peer string
	// floor and floorLibs are the start-up and memory floor of a Go init, without
	// and with tini-hot's libraries (bench/floor).
	floor, floorLibs string
}

// build compiles tini-hot (stripped and static, as the image ships it),
// the demo, the peer application and the floor programs into dir, the
// same way.
func build(dir string) (bins, error) {
	b := bins{tiniHot: dir + "/tini-hot", demo: dir + "/demo", peer: dir + "/peer", floor: dir + "/floor", floorLibs: dir + "/floor-libs"}
	for _, p := range []struct{ out, pkg, tags string }{
		{b.tiniHot, "./cmd/tini-hot", ""},
		{b.demo, "./examples/demo", ""},
		{b.peer, "./bench/peer", ""},
		{b.floor, "./bench/floor", ""},
		{b.floorLibs, "./bench/floor", "libs"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-tags="+p.tags, "-o", p.out, p.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %v: %s", p.pkg, err, msg)
		}
	}
	return b, nil
}

// freeAddr is a loopback address with a port free right now (see
// freeport: not from the ephemeral range, which the load clients take
// from).
func freeAddr() string {
	addr, err := freeport.Addr()
	if err != nil {
		panic(err)
	}
	return addr
}

// proc is a started process whose output is discarded.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(env []string, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits; SIGKILL to the group after 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// answer is the body of GET url with a fresh connection.
func answer(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	return strings.TrimSpace(string(body)), err
}

// until polls cond every millisecond for up to d.
func until(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// statusKiB reads a kB field of /proc/PID/status (VmRSS, RssAnon).
func statusKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return -1
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}
