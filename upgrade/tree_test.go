package upgrade

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestTreeOf finds a generation's main process, a child and a setsid
// grandchild, and nothing of another generation.
func TestTreeOf(t *testing.T) {
	start := func(gen string) *exec.Cmd {
		cmd := exec.Command("sh", "-c", "setsid sleep 30 & sleep 30 & wait")
		cmd.Env = append(os.Environ(), generationEnv+"="+gen)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, pid := range treeOf(os.Getpid(), cmd.Process.Pid, 0) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd
	}
	mine, other := start("77"), start("78")
	var tree []int
	deadline := time.Now().Add(10 * time.Second)
	for len(tree) < 3 && time.Now().Before(deadline) {
		tree = treeOf(os.Getpid(), mine.Process.Pid, 77)
		time.Sleep(10 * time.Millisecond)
	}
	if len(tree) != 3 || !slices.Contains(tree, mine.Process.Pid) {
		t.Fatalf("treeOf = %v, want the shell %d and its two sleeps", tree, mine.Process.Pid)
	}
	if slices.Contains(tree, other.Process.Pid) {
		t.Errorf("treeOf = %v includes generation 78's shell %d", tree, other.Process.Pid)
	}
}
