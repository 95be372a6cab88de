// Package evict bounds the connections a server is still reading a
// request from. An idle connection costs the server a goroutine, a
// buffer and an fd, and a server that caps its connections can be held by
// a handful of clients that connect and send nothing (slowloris): instead,
// the connections still sending are kept in arrival order, and one more
// than the bound evicts the oldest that is idle (nothing sent waits to be
// read: see Waiting), so that a new client, which sends its request at
// once, is always read, and a burst of clients whose requests wait for
// their turn is not evicted. An attacker that reopens each connection as
// soon as it is evicted only evicts its own: a client's connection is the
// newest while it sends. Evictions are logged once per period, not
// once each: a client that opens thousands of idle connections must not
// flood the log either.
package evict

import (
	"container/list"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LogEvery bounds how often evictions are logged: the first of a period
// at once, the others of the period in one line at its end.
const LogEvery = 10 * time.Second

// logEvery is LogEvery, shorter in tests.
var logEvery = LogEvery

// Reading is the connections a server is still reading a request from.
// Its methods are safe from any goroutine.
type Reading struct {
	max  int
	what string // for the log: "control socket", "metrics endpoint"
	log  *slog.Logger

	mu      sync.Mutex
	l       *list.List // of io.Closer, oldest first
	evicted int        // in the current log period, not logged yet
	period  *time.Timer
}

// New bounds the connections still sending to max: one more evicts the
// oldest that has nothing waiting to be read; what names the server in
// the log.
func New(max int, what string, log *slog.Logger) *Reading {
	return &Reading{max: max, what: what, log: log, l: list.New()}
}

// Waiting reports whether c has something its server has not read yet:
// bytes, or its peer's end (poll(2) says readable). A connection with a
// request waiting is not idle, whatever its age: its goroutine has not
// run yet. A connection that cannot be asked counts as idle.
func Waiting(c io.Closer) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	_ = raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		// EINTR: counted idle, as any connection that cannot be asked.
		ready = err == nil && n == 1 && fds[0].Revents != 0
	})
	return ready
}

// Entry is a connection's place among those still sending.
type Entry struct{ e *list.Element }

// Add records c as still sending, and returns its entry and the oldest
// connection evicted to make room (nil when there was room). The caller
// closes the evicted connection, after a last word if it has one.
func (r *Reading) Add(c io.Closer) (Entry, io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := Entry{r.l.PushBack(c)}
	if r.l.Len() <= r.max {
		return e, nil
	}
	for old := r.l.Front(); old != e.e; old = old.Next() {
		if c := old.Value.(io.Closer); !Waiting(c) {
			r.l.Remove(old)
			r.noteEviction()
			return e, c
		}
	}
	// Every one has a request waiting (a burst): none is evicted, and
	// the bound is passed until they are read.
	return e, nil
}

// Done records that e's connection has sent its request (or ended); it
// does nothing for an entry already evicted or done.
func (r *Reading) Done(e Entry) {
	if e.e == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.l.Remove(e.e) // nothing for an element already removed
}

// Len is how many connections are still sending.
func (r *Reading) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.l.Len()
}

// noteEviction logs the first eviction of a period at once and counts
// the others, which the period's end logs. Called with r.mu held.
func (r *Reading) noteEviction() {
	if r.period != nil {
		r.evicted++
		return
	}
	r.log.Warn(r.what+": evicting the oldest connection that sent no request", "limit", r.max, "next_summary_in", logEvery)
	r.period = time.AfterFunc(logEvery, r.endPeriod)
}

// endPeriod logs what the period evicted after its first, and ends it.
func (r *Reading) endPeriod() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.period = nil
	if r.evicted > 0 {
		r.log.Warn(r.what+": connections that sent no request evicted", "count", r.evicted, "within", logEvery, "limit", r.max)
		r.evicted = 0
	}
}

// Close stops the period's timer; what it counted is not logged.
func (r *Reading) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.period != nil {
		r.period.Stop()
		r.period = nil
	}
}
