package proctree

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/tini-hot/tini-hot/internal/wait"
	"golang.org/x/sys/unix"
)

// snapshot reads the table or fails the test.
func snapshot(t *testing.T) Table {
	t.Helper()
	tab, err := Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func pids(ps []Process) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Pid
	}
	return out
}

// start runs sh -c script in its own group with env added; cleanup kills
// whatever it left.
func start(t *testing.T, script string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tab, _ := Snapshot()
		for _, p := range tab.Descendants(cmd.Process.Pid) {
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		for p, proc := range tab {
			if proc.PGRP == cmd.Process.Pid {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestDescendants finds a grandchild whose parent is alive and one that
// called setsid.
func TestDescendants(t *testing.T) {
	cmd := start(t, "sleep 30 & setsid sleep 30 & wait")
	var got []Process
	wait.Until(t, "three descendants", func() bool {
		got = snapshot(t).Descendants(os.Getpid())
		return len(got) >= 3
	})
	if got[0].Pid != cmd.Process.Pid {
		t.Fatalf("Descendants = %v, want the shell %d first and its two sleeps", pids(got), cmd.Process.Pid)
	}
}

// TestGeneration finds a generation's main process, a child and a setsid
// grandchild, and nothing of another generation; once the main process
// counts as reaped, only the marked processes are found.
func TestGeneration(t *testing.T) {
	mine := start(t, "setsid sleep 30 & sleep 30 & wait", "TINI_HOT_GENERATION=77")
	other := start(t, "setsid sleep 30 & sleep 30 & wait", "TINI_HOT_GENERATION=78")
	var tree []int
	wait.Until(t, "generation 77's three processes", func() bool {
		tree = pids(snapshot(t).Generation(os.Getpid(), mine.Process.Pid, true, "TINI_HOT_GENERATION=77"))
		return len(tree) == 3
	})
	if !slices.Contains(tree, mine.Process.Pid) || slices.Contains(tree, other.Process.Pid) {
		t.Fatalf("Generation = %v, want the shell %d and its two sleeps, not %d", tree, mine.Process.Pid, other.Process.Pid)
	}
	// With the main pid no longer trusted, a process without the marker
	// in the same group is not taken.
	unmarked := start(t, "sleep 30 & wait")
	tree = pids(snapshot(t).Generation(os.Getpid(), unmarked.Process.Pid, false, "TINI_HOT_GENERATION=79"))
	if len(tree) != 0 {
		t.Errorf("Generation of a reaped main pid = %v, want nothing", tree)
	}
}

// TestSignalChecksIdentity: a Process whose start time does not match the
// process now holding the pid is never signalled.
func TestSignalChecksIdentity(t *testing.T) {
	cmd := start(t, "sleep 30")
	var p Process
	wait.Until(t, "the sleep in /proc", func() bool {
		var ok bool
		p, ok = snapshot(t)[cmd.Process.Pid]
		return ok
	})
	stale := p
	stale.Start++ // as if the pid now named another process
	if err := Signal(stale, unix.SIGKILL); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("Signal of a reused pid = %v, want ESRCH", err)
	}
	if err := unix.Kill(p.Pid, 0); err != nil {
		t.Fatalf("the process was hit: %v", err)
	}
	if err := Signal(p, unix.SIGKILL); err != nil {
		t.Fatalf("Signal of the same process: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the process survived SIGKILL")
	}
	if err := Signal(p, unix.SIGKILL); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("Signal of a reaped process = %v, want ESRCH", err)
	}
}
