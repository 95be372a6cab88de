// Package pace bounds how often a loop goes round: at most Count rounds
// per Window; a round beyond waits for the window's end. A notify socket
// read in a loop and an endpoint accepting connections use it, so that a
// peer that floods them costs tini-hot a bounded share of a CPU, while
// what it sends waits in the kernel instead of being lost.
package pace

import "time"

// Pacer counts rounds in windows. The zero value with Count and Window
// set is ready; it is for one goroutine.
type Pacer struct {
	Count  int
	Window time.Duration
	start  time.Time // of the current window
	n      int       // rounds in it
}

// Wait counts one round; past Count in the current window, it waits for
// the window's end first. It reports false, at once, when done is closed
// while it waits.
func (p *Pacer) Wait(done <-chan struct{}) bool {
	now := time.Now()
	if now.Sub(p.start) >= p.Window {
		p.start, p.n = now, 0
	}
	if p.n++; p.n <= p.Count {
		return true
	}
	t := time.NewTimer(p.start.Add(p.Window).Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
		return false
	}
	p.start, p.n = time.Now(), 1
	return true
}
