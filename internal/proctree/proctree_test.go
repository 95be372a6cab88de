package proctree

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestDescendantsLoop: a table read while pids were reused may show a
// loop (the root's parent is its own descendant); each process is listed
// once and the walk ends.
func TestDescendantsLoop(t *testing.T) {
	tab := Table{5: {Pid: 5, PPID: 9}, 7: {Pid: 7, PPID: 5}, 9: {Pid: 9, PPID: 7}}
	got := make(chan []int, 1)
	go func() { got <- pids(tab.Descendants(5)) }()
	select {
	case ds := <-got:
		if !slices.Equal(ds, []int{7, 9}) {
			t.Fatalf("Descendants(5) = %v, want [7 9]", ds)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Descendants of a loop did not return")
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

// TestMember agrees with Generation about every process of a real table:
// a generation's shell, its child and its setsid grandchild are members,
// another generation's are not, nor is this process.
func TestMember(t *testing.T) {
	mine := start(t, "setsid sleep 30 & sleep 30 & wait", "TINI_HOT_GENERATION=77")
	start(t, "setsid sleep 30 & sleep 30 & wait", "TINI_HOT_GENERATION=78")
	self, main, marker := os.Getpid(), mine.Process.Pid, "TINI_HOT_GENERATION=77"
	var tab Table
	wait.Until(t, "generation 77's three processes", func() bool {
		tab = snapshot(t)
		return len(tab.Generation(self, main, true, marker)) == 3
	})
	want := pids(tab.Generation(self, main, true, marker))
	var got []int
	for _, p := range tab {
		if Member(p, self, main, marker) {
			got = append(got, p.Pid)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("members %v, Generation %v", got, want)
	}
}

// TestMemberAncestorEnded: a walk that meets an ancestor that has ended,
// or whose pid now names a younger process, reads the process again and
// follows its new parents; a process that has ended itself is no member.
func TestMemberAncestorEnded(t *testing.T) {
	const self, main = 1, 10
	for _, c := range []struct {
		name string
		// 30 sends; 20 is its parent when the walk begins, and ends at
		// the walk's first read; then 30 is self's.
		parent Process
		after  func(Table)
		marked bool
		want   bool
	}{
		{
			// A worker of the main process 10, in a group of its own,
			// marked: found again below self.
			name:   "ended",
			parent: Process{Pid: 20, PPID: 10, PGRP: 10, Start: 6},
			after:  func(tab Table) { delete(tab, 20) },
			marked: true,
			want:   true,
		},
		{
			// A process entered from outside (kubectl exec) and its
			// child, unmarked; pid 20 goes to a new worker of the main
			// process, which must not make 30 one.
			name:   "pid reused",
			parent: Process{Pid: 20, PGRP: 20, Start: 6},
			after:  func(tab Table) { tab[20] = Process{Pid: 20, PPID: 10, PGRP: 10, Start: 9} },
			want:   false,
		},
	} {
		tab := Table{
			1:  {Pid: 1},
			10: {Pid: 10, PPID: 1, PGRP: 10, Start: 5},
			20: c.parent,
		}
		sender := Process{Pid: 30, PPID: 20, PGRP: 30, Start: 7}
		tab[30] = sender
		reads := 0
		read := func(pid int) (Process, error) {
			if reads++; reads == 1 {
				c.after(tab)
				tab[30] = Process{Pid: 30, PPID: 1, PGRP: 30, Start: 7}
			}
			p, ok := tab[pid]
			if !ok {
				return Process{}, unix.ESRCH
			}
			return p, nil
		}
		if got := member(sender, self, main, read, func(int) bool { return c.marked }); got != c.want {
			t.Errorf("%s: member = %v, want %v", c.name, got, c.want)
		}
	}
	reused := func(pid int) (Process, error) {
		if pid == 30 {
			return Process{Pid: 30, PPID: 1, Start: 8}, nil
		}
		return Process{}, unix.ESRCH
	}
	if member(Process{Pid: 30, PPID: 20, PGRP: 30, Start: 7}, self, main, reused, func(int) bool { return true }) {
		t.Error("a process whose own pid was reused is a member")
	}
}

// FuzzMember: Member, which reads a process's ancestors, agrees with
// Generation, which reads the whole table, on any tree of processes.
func FuzzMember(f *testing.F) {
	f.Add([]byte("\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"), uint8(1), uint8(2), uint64(0xf0))
	f.Add([]byte("\x10\x00\x00\x01\x01\x02\x02\x03\x03"), uint8(0), uint8(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, selfAt, mainAt uint8, marks uint64) {
		tab, order := fuzzTree(b)
		if len(order) < 2 {
			return
		}
		self, main := order[int(selfAt)%len(order)], order[int(mainAt)%len(order)]
		if self == main {
			return
		}
		marked := func(pid int) bool { return marks>>(pid%64)&1 == 1 }
		read := func(pid int) (Process, error) {
			if p, ok := tab[pid]; ok {
				return p, nil
			}
			return Process{}, unix.ESRCH
		}
		gen := pids(tab.generation(self, main, true, marked))
		for _, pid := range order {
			if got, want := member(tab[pid], self, main, read, marked), slices.Contains(gen, pid); got != want {
				t.Fatalf("member(%d) = %v, Generation has it: %v; self %d, main %d, table %v", pid, got, want, self, main, tab)
			}
		}
	})
}

// fuzzTree makes a table of processes from b, two bytes each: which
// earlier process is its parent (or none in the table), and its group.
// Pids are not in the order of start, as after pids wrap; a parent
// starts before its children or in the same tick.
func fuzzTree(b []byte) (Table, []int) {
	tab := Table{}
	var order []int
	for i := 0; i+1 < len(b) && len(order) < 40; i += 2 {
		pid := 2 + (len(order)*37)%97
		p := Process{Pid: pid, PGRP: pid, Start: uint64(len(order))}
		if at := int(b[i]) % (len(order) + 1); at < len(order) {
			parent := tab[order[at]]
			p.PPID, p.Start = parent.Pid, parent.Start+uint64(b[i]%2)
		}
		switch g := int(b[i+1]) % 3; {
		case g == 1 && p.PPID != 0:
			p.PGRP = tab[p.PPID].PGRP
		case g == 2 && len(order) > 0:
			p.PGRP = order[int(b[i+1])%len(order)]
		}
		tab[pid] = p
		order = append(order, pid)
	}
	return tab, order
}

// TestAdopted: as a subreaper, this process adopts a shell's background
// sleep when the shell exits, and lists it; a child it reaped is gone.
func TestAdopted(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	out, err := exec.Command("sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = unix.Kill(orphan, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(orphan, &ws, 0, nil)
	}()
	kids, err := Adopted(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, orphan) {
		t.Fatalf("Adopted = %v, want the orphan %d", kids, orphan)
	}
	if err := unix.Kill(orphan, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(orphan, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if kids, _ := Adopted(os.Getpid()); slices.Contains(kids, orphan) {
		t.Fatalf("Adopted = %v after %d was reaped", kids, orphan)
	}
}
