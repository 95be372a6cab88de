// Package procs bounds the processors (GOMAXPROCS) tini-hot runs its own Go
// code on, from its initialiser. A program imports it for that effect
// alone.
//
// The Go runtime makes one processor per CPU (of the node, or of the pod's
// CPU limit), and each brings threads and caches of memory; a supervisor
// has no use for more than two: one for its loop, one for a request or a
// collection beside it. Two, not one: the signal subscriptions, each a
// round trip between two threads, take 0.5 ms more at start on one, and
// going down to one after them raised idle RssAnon by 350 KiB (the cached
// spans of the processor dropped moved to the collector's lists at once).
//
// The bound is set in process, never through GOMAXPROCS, which is the
// application's and reaches it unchanged. It is set even when the
// runtime's default is already at most [Max]: the runtime would otherwise
// keep following the CPUs it may use, up as well (a pod resized in
// place), and a set value stops that.
//
// It is set from this package's initialiser because the package imports
// nothing but the runtime: the Go specification initialises a package as
// soon as everything it imports is, taking first the package whose import
// path sorts first, so this one comes before the libraries tini-hot links,
// whose initialisers would otherwise run on one processor per CPU and
// leave memory cached on several. Measured with GOMAXPROCS=32 (a node of 32
// CPUs), idle as PID 1, 14 runs each: RssAnon 1,856-2,120 KiB, against
// 1,888-3,048 KiB (4 runs over 2,400) when it was set in main.
package procs

import "runtime"

// Max is the most processors tini-hot's own Go code runs on.
const Max = 2

func init() {
	runtime.GOMAXPROCS(min(runtime.GOMAXPROCS(0), Max))
}
