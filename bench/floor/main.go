// Command floor is the start-up floor of a container init written in Go,
// for the benchmark's start-up table: it runs its arguments as its child,
// waits for it and exits with its status, and does nothing else. Built
// with the tag libs, it also links the libraries tini-hot links, so that
// their initialisation runs; with the tag libs and the flag -signals, it
// subscribes to the signals tini-hot forwards before it starts the child.
package main

import (
	"os"
	"syscall"
)

// subscribe is set by libs.go.
var subscribe func()

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "-signals" {
		if subscribe == nil {
			os.Stderr.WriteString("floor: -signals needs the tag libs\n")
			os.Exit(2)
		}
		subscribe()
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "" || args[0][0] != '/' {
		os.Stderr.WriteString("usage: floor [-signals] /ABSOLUTE/PATH [ARG...]\n")
		os.Exit(2)
	}
	pid, err := syscall.ForkExec(args[0], args, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
	if err != nil {
		os.Stderr.WriteString("floor: " + err.Error() + "\n")
		os.Exit(127)
	}
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			break
		}
	}
	os.Exit(ws.ExitStatus())
}
