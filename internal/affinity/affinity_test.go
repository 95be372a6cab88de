package affinity

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPin: while pinned, every thread runs on the one CPU, those the
// runtime starts meanwhile too; once unpinned, every thread, old and
// new, has the CPUs of before.
func TestPin(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	var mine cpuSet
	if err := getaffinity(0, &mine); err != nil || mine.count() != orig.Count() {
		t.Fatalf("getaffinity: %d CPUs, %v; x/sys/unix reads %d", mine.count(), err, orig.Count())
	}
	for c := range 1024 {
		if mine.isSet(c) != orig.IsSet(c) {
			t.Fatalf("CPU %d: set %v, x/sys/unix reads %v", c, mine.isSet(c), orig.IsSet(c))
		}
	}
	if orig.Count() < 2 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI machine with %d CPU: Pin cannot be tested", orig.Count())
		}
		t.Skipf("%d CPU: Pin does nothing", orig.Count())
	}
	before := len(threads())
	unpin := sync.OnceFunc(Pin())
	defer unpin()
	var cpu int
	for i, tid := range readAll(t) {
		if tid.set.Count() != 1 {
			t.Fatalf("thread %d pinned to %d CPUs", tid.tid, tid.set.Count())
		}
		for c := range 1024 {
			if tid.set.IsSet(c) {
				if i > 0 && c != cpu {
					t.Fatalf("threads on CPUs %d and %d", cpu, c)
				}
				cpu = c
			}
		}
	}
	// Threads the runtime starts now, each goroutine blocked in a system
	// call holding one, inherit the one CPU: more goroutines than there
	// are threads, so that idle ones cannot serve them all.
	blockAll(before + 2)
	during := readAll(t)
	if len(during) <= before {
		t.Fatalf("%d threads, %d before: no thread started while pinned, the test cannot fail", len(during), before)
	}
	for _, th := range during {
		if th.set.Count() != 1 {
			t.Fatalf("thread %d started while pinned has %d CPUs", th.tid, th.set.Count())
		}
	}
	// A process forked meanwhile waits for unpin, and gets the CPUs of
	// before. Without the wait it would be forked at once: 50 ms is how
	// long the test gives it to break the rule.
	child := exec.Command("grep", "Cpus_allowed_list", "/proc/self/status")
	var out strings.Builder
	child.Stdout = &out
	started := make(chan error, 1)
	go func() { started <- child.Start() }()
	select {
	case err := <-started:
		t.Fatalf("a process was forked while pinned (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	unpin()
	for _, th := range readAll(t) {
		if th.set != orig {
			t.Errorf("thread %d after unpin: %d CPUs, want the %d of before", th.tid, th.set.Count(), orig.Count())
		}
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(own), out.String()) {
		t.Errorf("child forked during Pin: %q; want this process's", strings.TrimSpace(out.String()))
	}
}

type thread struct {
	tid int
	set unix.CPUSet
}

// readAll reads the CPUs of every thread.
func readAll(t *testing.T) []thread {
	t.Helper()
	var out []thread
	for _, tid := range threads() {
		var s unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &s); err == nil {
			out = append(out, thread{tid, s})
		}
	}
	return out
}

// blockAll blocks n goroutines in a system call at once, so that the
// runtime starts threads for them; it keeps them, idle, afterwards.
func blockAll(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ts := syscall.NsecToTimespec(int64(50 * time.Millisecond))
			_ = syscall.Nanosleep(&ts, nil)
		})
	}
	wg.Wait()
}

// TestPinWhileThreadsStart: threads that start while Pin and unpin set
// the others, started by one not set yet, are set too. Goroutines that
// end locked to their thread end it, and the next need a new one.
func TestPinWhileThreadsStart(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Count() < 2 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI machine with %d CPU: Pin cannot be tested", orig.Count())
		}
		t.Skipf("%d CPU: Pin does nothing", orig.Count())
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	var started atomic.Int64
	for range 4 {
		churn.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
					started.Add(1)
					ts := syscall.NsecToTimespec(int64(20 * time.Microsecond))
					_ = syscall.Nanosleep(&ts, nil)
				}()
				<-done
			}
		})
	}
	defer func() { close(stop); churn.Wait() }()
	for round := range 200 {
		unpin := Pin()
		for _, th := range readAll(t) {
			if th.set.Count() != 1 {
				unpin()
				t.Fatalf("round %d: thread %d pinned to %d CPUs", round, th.tid, th.set.Count())
			}
		}
		unpin()
		for _, th := range readAll(t) {
			if th.set != orig {
				t.Fatalf("round %d: thread %d after unpin: %d CPUs, want the %d of before", round, th.tid, th.set.Count(), orig.Count())
			}
		}
	}
	if started.Load() < 200 {
		t.Fatalf("%d threads started in 200 rounds: the test cannot fail", started.Load())
	}
}
