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
// left and exits: the test binary as a program that imports the package.
func TestMain(m *testing.M) {
	if os.Getenv("PROCS_PRINT") == "1" {
		fmt.Println(runtime.GOMAXPROCS(0))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBound(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"GOMAXPROCS=32", "2"}, // a node of 32 CPUs
		{"GOMAXPROCS=1", "1"},  // never more than the runtime would use
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCS_PRINT=1", c.env)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.env, err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s: %s processors, want %s", c.env, got, c.want)
		}
	}
}
