package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"testing"
)

// initTrace is a line of the Go runtime's package initialisation trace
// (GODEBUG=inittrace=1).
var initTrace = regexp.MustCompile(`(?m)^init (\S+) @`)

// initialised is the packages a trace shows initialised, in order.
func initialised(trace string) []string {
	var pkgs []string
	for _, m := range initTrace.FindAllStringSubmatch(trace, -1) {
		pkgs = append(pkgs, m[1])
	}
	return pkgs
}

// libraries are packages tini-hot links whose initialisers do work
// (regexps compiled, descriptors registered, files read): each appears in
// the trace.
var libraries = []string{
	"github.com/prometheus/procfs",
	"github.com/VictoriaMetrics/metrics",
	"github.com/containerd/cgroups/v3/cgroup1/stats",
	"google.golang.org/protobuf/proto",
	"github.com/cilium/ebpf",
	"regexp",
}

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
	for _, pkg := range initialised(p.stderr.String()) {
		inits[pkg]++
	}
	// In both: what the trampoline itself needs.
	if n := inits["os"]; n != 2 {
		t.Fatalf("os initialised %d times, want 2: once by tini-hot, once by the trampoline", n)
	}
	// Nor what the trampoline would wait for if it imported x/sys/unix
	// (sorted after most of what tini-hot links), fmt or strings (after
	// crypto, encoding/json and flag), which tini-hot's libraries import.
	for _, pkg := range append(libraries, "golang.org/x/sys/unix", "crypto/sha256", "encoding/json", "flag") {
		if n := inits[pkg]; n != 1 {
			t.Errorf("%s initialised %d times, want 1: by tini-hot only", pkg, n)
		}
	}
}

// TestProcessorsBoundFirst: tini-hot bounds its processors before the
// libraries' initialisers run, so that they never run on one processor per
// CPU; TestSignalsHeldFirst: it holds the signals that would end it before
// them too, so that they do not lengthen the window in which the Go
// runtime would exit 2 on them, and after it has read the signal state it
// inherited (internal/launch).
func TestProcessorsBoundFirst(t *testing.T) {
	firstInit(t, "github.com/tini-hot/tini-hot/internal/procs")
}

func TestSignalsHeldFirst(t *testing.T) {
	order := firstInit(t, "github.com/tini-hot/tini-hot/internal/sighold/atstart")
	if slices.Index(order, "github.com/tini-hot/tini-hot/internal/launch") > slices.Index(order, "github.com/tini-hot/tini-hot/internal/sighold/atstart") {
		t.Errorf("signals held before the inherited signal state was read: %v", order)
	}
}

// firstInit checks that pkg is initialised before every library, and
// returns the order.
func firstInit(t *testing.T, pkg string) []string {
	t.Parallel()
	cmd := exec.Command(tiniHot, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tini-hot --version: %v\n%s", err, out)
	}
	order := initialised(string(out))
	first := slices.Index(order, pkg)
	if first < 0 {
		t.Fatalf("no initialisation of %s traced:\n%s", pkg, out)
	}
	for _, lib := range libraries {
		switch i := slices.Index(order, lib); {
		case i < 0:
			t.Errorf("no initialisation of %s traced", lib)
		case i < first:
			t.Errorf("%s initialised at step %d, before %s (step %d)", lib, i+1, pkg, first+1)
		}
	}
	return order
}
