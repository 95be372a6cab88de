// Package procs bounds the processors (GOMAXPROCS) tini-hot runs its own Go
// code on, from its initialiser. A program imports it for that effect.
//
// The Go runtime makes one processor per CPU (of the node, or of the pod's
// CPU limit), and each brings threads, wake-ups and caches of memory. A
// supervisor's work is a few short steps per event, so one processor
// serves it: with two, each goroutine woken also wakes a second thread
// to look for work, and the threads hand the work back and forth.
// Measured as PID 1 over 1,000 back-to-back reloads of the bench's
// application, three runs each, one processor against two: tini-hot's
// CPU 512-551 µs per reload against 838-931; RssAnon after the reloads
// 2,608-2,656 KiB against 2,820-2,968; READY=1 to the drain signal 5-6 µs
// at the median and 56-75 µs at p99, against 8-10 and 55-210 µs.
//
// The bound is set in process, never through GOMAXPROCS, which is the
// application's and reaches it unchanged. It is set even when the
// runtime's default is already [Max]: the runtime would otherwise keep
// following the CPUs it may use, up as well (a pod resized in place), and
// a set value stops that.
//
// It is set from this package's initialiser because the package imports
// nothing but the runtime: the Go specification initialises a package as
// soon as everything it imports is, taking first the package whose import
// path sorts first, so this one comes before the libraries tini-hot links,
// whose initialisers would otherwise run on one processor per CPU and
// leave memory cached on several. Measured with GOMAXPROCS=32 (a node of 32
// CPUs), idle as PID 1, 14 runs each: RssAnon 1,856-2,120 KiB with a bound
// of two set here, against 1,888-3,048 KiB (4 runs over 2,400) when it was
// set in main.
package procs

import "runtime"

// Max is the most processors tini-hot's own Go code runs on.
const Max = 1

// available is the runtime's processors before the bound: one per CPU it
// may use, or GOMAXPROCS.
var available = runtime.GOMAXPROCS(0)

func init() {
	runtime.GOMAXPROCS(min(available, Max))
}
