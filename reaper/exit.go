package reaper

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Exit is the end of one reaped process.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
}

// Code is the shell's view of the exit: the exit code of a process that
// exited, 128+N for one killed by signal N, like sh, bash and tini.
func (e Exit) Code() int {
	switch {
	case e.Status.Exited():
		return e.Status.ExitStatus()
	case e.Status.Signaled():
		return 128 + int(e.Status.Signal())
	default:
		// wait4 without WUNTRACED/WCONTINUED reports only ends; keep a
		// defined value rather than a negative one.
		return 255
	}
}

// String says how the process ended: "exited with status 1",
// "killed by signal 15 (terminated)".
func (e Exit) String() string {
	if e.Status.Signaled() {
		s := e.Status.Signal()
		return fmt.Sprintf("killed by signal %d (%v)", int(s), s)
	}
	return fmt.Sprintf("exited with status %d", e.Code())
}
