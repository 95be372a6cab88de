// Package logq writes tini-hot's log without ever blocking the writer.
//
// tini-hot's stderr is the container's log pipe, and whoever reads it (the
// container runtime's log copier, a log driver shipping to a remote
// service) can stall: a full disk, a log service down, a driver in
// blocking mode. A write to a full pipe blocks, and a supervisor blocked
// in a log line reaps nothing, forwards no signal, and never ends the
// container on SIGTERM. So lines are queued, up to a bound, and written by
// a goroutine of their own; when the queue is full, lines are dropped and
// counted, and the count is written where they are missing once the
// reader is back.
package logq

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// MaxQueued bounds the bytes of the lines waiting to be written.
const MaxQueued = 64 << 10

// MaxLine bounds one line: a longer one (an error that quotes a 100 KB
// path) is cut, and says so, rather than dropped whole.
const MaxLine = 4 << 10

// Writer queues each Write as one line (a log record) and writes it to
// its output from a goroutine of its own.
type Writer struct {
	out  io.Writer
	wake chan struct{} // a write is waiting; capacity 1

	mu      sync.Mutex
	queue   []entry
	size    int // bytes queued
	dropped int // lines dropped since the last one queued
}

// entry is a line to write, or a flush's marker, closed when every line
// queued before it has been written.
type entry struct {
	line    []byte
	dropped int // lines dropped just before this one
	flushed chan struct{}
}

// New starts writing to out. The goroutine lives as long as the process:
// a write blocked for good must not keep anything else waiting.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, wake: make(chan struct{}, 1)}
	go w.run()
	return w
}

// Write queues a copy of p, cut to MaxLine, or drops it when MaxQueued
// bytes wait already. It never blocks on the output and never fails.
func (w *Writer) Write(p []byte) (int, error) {
	var line []byte
	if len(p) > MaxLine {
		cut := fmt.Sprintf("… [%d bytes cut]\n", len(p)-MaxLine)
		line = append(append(make([]byte, 0, MaxLine+len(cut)), p[:MaxLine]...), cut...)
	} else {
		line = append([]byte(nil), p...)
	}
	w.mu.Lock()
	if w.size+len(line) > MaxQueued {
		w.dropped++
		w.mu.Unlock()
		return len(p), nil
	}
	w.queue = append(w.queue, entry{line: line, dropped: w.dropped})
	w.size += len(line)
	w.dropped = 0
	w.mu.Unlock()
	w.signal()
	return len(p), nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Flush waits until every line queued before it has been written, or
// until d has passed, and reports whether they were. Lines dropped at the
// end are reported by a last line, if the output takes it.
func (w *Writer) Flush(d time.Duration) bool {
	done := make(chan struct{})
	w.mu.Lock()
	w.queue = append(w.queue, entry{dropped: w.dropped, flushed: done})
	w.dropped = 0
	w.mu.Unlock()
	w.signal()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (w *Writer) run() {
	for range w.wake {
		for {
			w.mu.Lock()
			batch := w.queue
			w.queue = nil
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				if e.dropped > 0 {
					fmt.Fprintf(w.out, "tini-hot: %d log lines dropped: the log was not read\n", e.dropped)
				}
				if e.line != nil {
					_, _ = w.out.Write(e.line)
					w.mu.Lock()
					w.size -= len(e.line)
					w.mu.Unlock()
				}
				if e.flushed != nil {
					close(e.flushed)
				}
			}
		}
	}
}
