package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShort runs `go run ./bench -short` as a user would and checks that
// it produces every table and both charts, with no error in them: the
// program cannot rot. The numbers are not checked: the test suite loads
// the machine.
func TestShort(t *testing.T) {
	if os.Geteuid() != 0 {
		need(t, "root (PID namespaces)")
	}
	for _, tool := range []string{"unshare", "tini", "dumb-init", "catatonit", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, "%s (Debian packages util-linux, tini, dumb-init, catatonit, wrk)", tool)
		}
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS.md")
	cmd := exec.Command("go", "run", "./bench", "-short", "-o", out)
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench -short: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{
		"## Upgrade methods under the same load", "| p99 of each round | p99 without upgrades |", "| tini-hot |", "| tini-hot, SIGHUP |", "| stop-then-start |", "| SO_REUSEPORT |", "| tableflip |", "| tini-hot, naive app |",
		"## PID-1 duties", "| tini |", "| dumb-init |", "| catatonit |",
		"| Go: fork, exec, wait |", "| … with tini-hot's libraries linked |", "| … and the signal subscriptions |",
		"## Reload latency breakdown", "| READY → drain signal | tini-hot |",
		"## Data path", "Ratio behind/alone",
		"## Soak", "| 3 |",
		"## Memory across reloads", "| Go program, nothing linked | 100 collections |", "| … with tini-hot's libraries linked | 100 collections |", "| tini-hot, the demo, no load | 20 reloads |", "| … with GOMAXPROCS=32 in its environment | 20 reloads |",
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

// need fails the test under CI and skips it elsewhere.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite under CI: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}
