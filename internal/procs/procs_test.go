package procs

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestMain, with PROCS_PRINT set, prints the processors the initialiser
// left, those Paired runs its function on and those after it, and exits:
// the test binary as a program that imports the package.
func TestMain(m *testing.M) {
	if os.Getenv("PROCS_PRINT") == "1" {
		bound := runtime.GOMAXPROCS(0)
		var paired int
		Paired(func() { paired = runtime.GOMAXPROCS(0) })
		fmt.Println(bound, paired, runtime.GOMAXPROCS(0))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBound(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"GOMAXPROCS=32", "1 2 1"}, // a node of 32 CPUs
		{"GOMAXPROCS=2", "1 2 1"},
		{"GOMAXPROCS=1", "1 1 1"}, // never more than the runtime would use
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCS_PRINT=1", c.env)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.env, err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s: processors bound, in Paired and after %q, want %q", c.env, got, c.want)
		}
	}
}
