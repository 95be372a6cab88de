package e2e

import (
	"regexp"
	"testing"
)

// initTrace is a line of the Go runtime's package initialisation trace
// (GODEBUG=inittrace=1).
var initTrace = regexp.MustCompile(`(?m)^init (\S+) @`)

// TestTrampolineSkipsLibraries: the trampoline that starts each
// generation with its own pid in LISTEN_PID execs the application before
// the libraries tini-hot links are initialised; only tini-hot itself pays
// for them, once. GODEBUG reaches tini-hot, then the trampoline, which
// inherits the application's environment, so both trace their
// initialisation to the same stderr, one after the other.
func TestTrampolineSkipsLibraries(t *testing.T) {
	t.Parallel()
	p := startInit(t, initBin{"tini-hot", tiniHot}, modes[0], []string{"GODEBUG=inittrace=1"},
		"-l", "tcp://127.0.0.1:0", "--", "true")
	if code := p.wait(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	inits := map[string]int{}
	for _, m := range initTrace.FindAllStringSubmatch(p.stderr.String(), -1) {
		inits[m[1]]++
	}
	// In both: what the trampoline itself needs.
	if n := inits["golang.org/x/sys/unix"]; n != 2 {
		t.Fatalf("golang.org/x/sys/unix initialised %d times, want 2: once by tini-hot, once by the trampoline", n)
	}
	for _, pkg := range []string{
		"github.com/prometheus/procfs",
		"github.com/VictoriaMetrics/metrics",
		"github.com/containerd/cgroups/v3/cgroup1/stats",
		"google.golang.org/protobuf/proto",
		"github.com/cilium/ebpf",
		"regexp",
	} {
		if n := inits[pkg]; n != 1 {
			t.Errorf("%s initialised %d times, want 1: by tini-hot only", pkg, n)
		}
	}
}
