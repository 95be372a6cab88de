package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShort runs `go run ./bench -short` as a user would and checks that
// it produces every table and both charts, with no error in them: the
// program cannot rot. The numbers are not checked: the test suite loads
// the machine.
func TestShort(t *testing.T) {
	if os.Geteuid() != 0 {
		need(t, "root (PID namespaces)")
	}
	for _, tool := range []string{"unshare", "tini", "dumb-init", "catatonit", "wrk", "gunicorn"} {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, "%s (Debian packages util-linux, tini, dumb-init, catatonit, wrk, gunicorn)", tool)
		}
	}
	dir := t.TempDir()
	doc := runBench(t, dir, "-short")
	for _, want := range []string{
		"## Upgrade methods under the same load", "| p99 of each round | p99 without upgrades |", "| keep-alive: p99 during upgrades | keep-alive: p99 without | over the p99 without upgrades, first 20ms of an upgrade |", "| tini-hot |", "| tini-hot, SIGHUP |", "| stop-then-start |", "| SO_REUSEPORT |", "| tableflip |", "| tini-hot, naive app |",
		"| tini-hot, naive app, shared sockets |", "| tini-hot, gunicorn |", "| tini-hot, gunicorn, shared sockets |", "| tini-hot, escaped process |", "| tini-hot, escaped process, shared sockets |",
		"## QUIC connections across upgrades", "| steered (?flows=quic) | 3 | ", "| shared (--shared-sockets) | 3 | ",
		"## PID-1 duties", "| tini |", "| dumb-init |", "| catatonit |",
		"| Go: fork, exec, wait |", "| … with tini-hot's libraries linked |", "| … and the signal subscriptions |",
		"## Reload latency breakdown", "| READY → drain signal | tini-hot |",
		"## Data path", "Ratio behind/alone",
		"## Soak", "| 3 |",
		"## Memory across reloads and probes", "| Go program, nothing linked | 100 collections | ", "| … with tini-hot's libraries linked | 100 collections | ", "| tini-hot, the demo, no load | 20 reloads | ", "| … with GOMAXPROCS=32 in its environment | 20 reloads | ", "| tini-hot, the demo, deploy/k8s's probes | 10 readiness probes, 2 liveness probes, 1 scrapes | ",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("no %q in:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "error") {
		t.Errorf("an error in the tables:\n%s", doc)
	}
	for _, svg := range []string{"BENCHMARKS-rps.svg", "BENCHMARKS-p99.svg"} {
		if b, err := os.ReadFile(filepath.Join(dir, svg)); err != nil || !strings.Contains(string(b), "<svg") {
			t.Errorf("chart %s: %v", svg, err)
		}
	}
}

// TestOnly runs one table alone with -only, and refuses a table that does
// not exist with a usage error.
func TestOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		need(t, "root (PID namespaces)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		need(t, "unshare (Debian package util-linux)")
	}
	doc := runBench(t, t.TempDir(), "-short", "-only", "breakdown")
	if !strings.Contains(doc, "## Reload latency breakdown") || strings.Count(doc, "\n## ") != 1 || strings.Contains(doc, "error") {
		t.Errorf("-only breakdown wrote:\n%s", doc)
	}
	cmd := exec.Command("go", "run", "./bench", "-only", "memory,nosuch")
	cmd.Dir = ".."
	// go run exits 1 and reports the program's own status.
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), `no table "nosuch"`) || !strings.Contains(string(msg), "exit status 2") {
		t.Errorf("-only memory,nosuch: %v, %s; want exit status 2 and the table named", err, msg)
	}
}

// runBench runs `go run ./bench ARGS -o DIR/BENCHMARKS.md` from the
// repository's root, as a user would, and returns the document.
func runBench(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, "BENCHMARKS.md")
	cmd := exec.Command("go", append(append([]string{"run", "./bench"}, args...), "-o", out)...)
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench %v: %v\n%s", args, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// need fails the test under CI and skips it elsewhere.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite under CI: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// TestDuringUpgrades checks the window arithmetic of the kinds table:
// samples are kept from an upgrade's start to 250 ms after its end, with
// their start counted from the upgrade's, and shares count what is over
// the limit.
func TestDuringUpgrades(t *testing.T) {
	ms := time.Millisecond
	r := runResult{
		upgrades: []window{{from: 1000 * ms, to: 1010 * ms}, {from: 3000 * ms, to: 3030 * ms}},
		samples: []sample{
			{at: 999 * ms, took: 9 * ms},                   // before the first
			{at: 1000 * ms, took: 5 * ms, keepAlive: true}, // at its start
			{at: 1019 * ms, took: 1 * ms},                  // in its first 20 ms
			{at: 1260 * ms, took: 2 * ms},                  // its last instant
			{at: 1261 * ms, took: 9 * ms},                  // after
			{at: 3100 * ms, took: 3 * ms, keepAlive: true}, // in the second, 100 ms in
		},
	}
	d := r.duringUpgrades()
	var at []time.Duration
	for _, s := range d {
		at = append(at, s.at)
	}
	if want := []time.Duration{0, 19 * ms, 260 * ms, 100 * ms}; !slices.Equal(at, want) {
		t.Fatalf("starts since the upgrade %v, want %v", at, want)
	}
	if got, want := latencies(d, keptKind, 0, forever), []time.Duration{5 * ms, 3 * ms}; !slices.Equal(got, want) {
		t.Errorf("keep-alive %v, want %v", got, want)
	}
	if got, want := latencies(d, freshKind, 0, upgradeStart), []time.Duration{1 * ms}; !slices.Equal(got, want) {
		t.Errorf("fresh in the first %v: %v, want %v", upgradeStart, got, want)
	}
	if got, want := latencies(d, anyKind, upgradeStart, forever), []time.Duration{2 * ms, 3 * ms}; !slices.Equal(got, want) {
		t.Errorf("after the first %v: %v, want %v", upgradeStart, got, want)
	}
	if got, want := slower(latencies(d, anyKind, 0, forever), 2*ms), "50.00% (2 of 4)"; got != want {
		t.Errorf("slower: %q, want %q", got, want)
	}
	if got := slower(nil, ms); got != "n/a" {
		t.Errorf("slower of nothing: %q", got)
	}
}
