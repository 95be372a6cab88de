package procs

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain, with PROCS_PRINT set, prints the processors the initialiser
// left and exits: the test binary as a program that imports the package.
func TestMain(m *testing.M) {
	if os.Getenv("PROCS_PRINT") == "1" {
		fmt.Println(runtime.GOMAXPROCS(0))
		os.Exit(0)
	}
	if v := os.Getenv("PROCS_RESERVE"); v != "" {
		n, _ := strconv.Atoi(v)
		Reserve(n)
		reserved := threads()
		// blocked goroutines in a system call at once: each holds its
		// thread, and the runtime wants another for the rest.
		var wg sync.WaitGroup
		for range blocked {
			wg.Go(func() {
				ts := syscall.NsecToTimespec(int64(100 * time.Millisecond))
				_ = syscall.Nanosleep(&ts, nil)
			})
		}
		wg.Wait()
		fmt.Println(reserved, threads())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// blocked is how many goroutines TestReserve blocks in a system call.
const blocked = 4

// threads is how many threads the Go runtime has started: its own count
// (the threadcreate profile), not /proc/self/task, where the race
// detector's runtime adds a thread of its own when it likes (1 run in 40
// under -race on a loaded machine, none in 100 without).
func threads() int { return pprof.Lookup("threadcreate").Count() }

// TestReserve: after Reserve(n), n goroutines blocked in system calls at
// once start no thread; without it they do (so the test can fail).
func TestReserve(t *testing.T) {
	for _, n := range []int{0, blocked} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCS_RESERVE="+strconv.Itoa(n))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("reserve %d: %v", n, err)
		}
		var reserved, after int
		if _, err := fmt.Sscan(string(out), &reserved, &after); err != nil {
			t.Fatalf("reserve %d: %q: %v", n, out, err)
		}
		t.Logf("reserve %d: %d threads, %d after %d blocked system calls", n, reserved, after, blocked)
		switch {
		case n == 0 && after <= reserved:
			t.Errorf("without a reserve, %d blocked system calls started no thread (%d, then %d): the test cannot fail", blocked, reserved, after)
		case n > 0 && after > reserved:
			t.Errorf("Reserve(%d): %d blocked system calls took %d threads to %d", n, blocked, reserved, after)
		}
	}
}

func TestBound(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"GOMAXPROCS=32", "1"}, // a node of 32 CPUs
		{"GOMAXPROCS=2", "1"},
		{"GOMAXPROCS=1", "1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCS_PRINT=1", c.env)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.env, err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s: processors bound %q, want %q", c.env, got, c.want)
		}
	}
}
