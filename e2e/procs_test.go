package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// schedTrace is the Go runtime's scheduler trace line (GODEBUG=schedtrace).
var schedTrace = regexp.MustCompile(`SCHED \d+ms: gomaxprocs=(\d+)`)

// TestProcessorsFixed: tini-hot fixes the processors its own Go code runs
// on when it starts. The Go runtime otherwise follows the CPUs it may use,
// about once a second, up as well: a pod resized in place, here a wider
// CPU affinity given to every thread of a tini-hot started on one CPU.
func TestProcessorsFixed(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() < 2 {
		need(t, "2 CPUs")
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		need(t, "taskset (util-linux)")
	}
	p := startInit(t, initBin{"tini-hot", taskset}, modes[1], []string{"GODEBUG=schedtrace=100"},
		"-c", "0", tiniHot, "--", "sleep", "1000")
	traces := func() []string {
		var procs []string
		for _, m := range schedTrace.FindAllStringSubmatch(p.stderr.String(), -1) {
			procs = append(procs, m[1])
		}
		return procs
	}
	waitFor(t, "tini-hot's first scheduler trace", func() (int, bool) { n := len(traces()); return n, n > 0 })

	var both unix.CPUSet
	both.Set(0)
	both.Set(1)
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.pid), "task"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := unix.SchedSetaffinity(tid, &both); err != nil && err != unix.ESRCH {
			t.Fatalf("affinity of thread %d: %v", tid, err)
		}
	}
	// About 3 s of traces: the runtime looks again about once a second.
	after := len(traces())
	waitFor(t, "30 more scheduler traces", func() (int, bool) { n := len(traces()); return n, n >= after+30 })
	for i, procs := range traces() {
		if procs != "1" {
			t.Fatalf("trace %d (%d after the affinity widened): gomaxprocs=%s, want 1", i, i-after, procs)
		}
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit status %d, want 143", code)
	}
}
