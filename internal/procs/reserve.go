package procs

import "runtime"

// Reserved is how many idle threads tini-hot keeps for later (see
// [Reserve]).
const Reserved = 8

// Reserve makes the runtime start n threads now and keep them idle, so
// that it needs no new one later. A container at its pids limit (an
// application that leaks threads or forks without end) can give no thread
// more, and a Go program whose runtime cannot start a thread it needs
// dies (`fatal error: newosproc`); as PID 1 it takes the container with
// it. The runtime starts a thread whenever every thread it has is busy,
// in a system call most often, and never ends an idle one: threads
// started here while the container has room are there when it has none.
//
// Each of n goroutines locks itself to a thread and blocks, so that each
// holds a thread of its own and the runtime starts another to go on; once
// all are blocked, they unlock and end, and their threads stay, idle.
func Reserve(n int) {
	locked := make(chan struct{})
	release := make(chan struct{})
	done := make(chan struct{})
	for range n {
		go func() {
			runtime.LockOSThread()
			locked <- struct{}{}
			<-release
			runtime.UnlockOSThread()
			done <- struct{}{}
		}()
	}
	for range n {
		<-locked
	}
	close(release)
	for range n {
		<-done
	}
}
