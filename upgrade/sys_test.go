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
// a process of no generation, and judges a process once per generation,
// not once per notice; a sender that has ended is no member, and costs no
// judgement; a pid that names a new process is judged anew.
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
	m := newMembers(os.Getpid())
	judged := 0
	m.judge = func(p proctree.Process, self, pid int, marker string) bool {
		judged++
		return proctree.Member(p, self, pid, marker)
	}
	// reused makes the next reads see a new process with the worker's pid.
	reused := false
	m.read = func(pid int) (proctree.Process, error) {
		p, err := proctree.Read(pid)
		if reused && pid == worker {
			p.Start++
		}
		return p, err
	}
	ask := func(gen, sender int, want bool, wantJudged int) {
		t.Helper()
		if got := m.member(gen, main, sender); got != want || judged != wantJudged {
			t.Fatalf("member(%d, %d, %d) = %v after %d judgements, want %v after %d", gen, main, sender, got, judged, want, wantJudged)
		}
	}
	for range 3 {
		ask(5, worker, true, 1)
	}
	for range 3 {
		ask(5, other, false, 2)
	}
	ask(6, worker, true, 3) // another generation's question: asked anew
	reused = true
	ask(5, worker, true, 4)
	ask(5, worker, true, 4)
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	ask(5, ended.Process.Pid, false, 4)
}
