// Command floor is the start-up floor of a container init written in Go,
// for the benchmark's start-up table: it runs its arguments as its child,
// waits for it and exits with its status, and does nothing else. Built
// with the tag libs, it also links the libraries tini-hot links, so that
// their initialisation runs; with the tag libs and the flag -signals, it
// also subscribes to the signals tini-hot takes before it starts the
// child (reaper.New: those it must not miss; tini-hot takes the others
// 5 ms after the fork).
//
// With -collect N it is the memory floor instead, for the benchmark's
// memory table: it prints its RssAnon in KiB, then again after N/10 and
// after N garbage collections with no work between them, each returning
// freed memory to the system as tini-hot does after a reload, and exits.
package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// subscribe is set by libs.go.
var subscribe func()

func main() {
	args := os.Args[1:]
	if len(args) == 2 && args[0] == "-collect" {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			os.Stderr.WriteString("usage: floor -collect N\n")
			os.Exit(2)
		}
		idle := rssAnon()
		for range n / 10 {
			debug.FreeOSMemory()
		}
		tenth := rssAnon()
		for range n - n/10 {
			debug.FreeOSMemory()
		}
		os.Stdout.WriteString(idle + " " + tenth + " " + rssAnon() + "\n")
		return
	}
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

// rssAnon is this process's RssAnon in KiB, from /proc/self/status.
func rssAnon() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		os.Stderr.WriteString("floor: " + err.Error() + "\n")
		os.Exit(1)
	}
	_, rest, ok := strings.Cut(string(b), "RssAnon:")
	if !ok {
		os.Stderr.WriteString("floor: no RssAnon in /proc/self/status\n")
		os.Exit(1)
	}
	return strings.Fields(rest)[0]
}
