package upgrade

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/tini-hot/tini-hot/internal/proctree"
	"github.com/tini-hot/tini-hot/internal/wait"
)

// started runs argv in its own process group, killed at the test's end.
func started(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// TestMembers: the real membership check tells a generation's worker from
// a process of no generation, and reads the process table once per
// process and generation, not once per notice; a sender that has ended is
// no member, and costs no snapshot.
func TestMembers(t *testing.T) {
	main := started(t, "sh", "-c", "sleep 30 & wait").Process.Pid
	other := started(t, "sleep", "30").Process.Pid
	var worker int
	wait.Until(t, "the worker", func() bool {
		tab, err := proctree.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if ds := tab.Descendants(main); len(ds) == 1 {
			worker = ds[0].Pid
		}
		return worker != 0
	})
	m := newMembers(os.Getpid(), false)
	snapshots := 0
	m.snapshot = func() (proctree.Table, error) {
		snapshots++
		return proctree.Snapshot()
	}
	ask := func(gen, sender int, want bool, wantSnapshots int) {
		t.Helper()
		if got := m.member(gen, main, sender); got != want || snapshots != wantSnapshots {
			t.Fatalf("member(%d, %d, %d) = %v after %d snapshots, want %v after %d", gen, main, sender, got, snapshots, want, wantSnapshots)
		}
	}
	for range 3 {
		ask(5, worker, true, 1)
	}
	for range 3 {
		ask(5, other, false, 2)
	}
	ask(6, worker, true, 3) // another generation's question: asked anew
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	ask(5, ended.Process.Pid, false, 3)
}
