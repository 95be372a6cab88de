package pace

import (
	"testing"
	"time"
)

// TestPacer: 3 windows' worth of rounds take at least two windows (a
// lower bound: a slow machine only makes it longer); a closed done ends a
// wait at once.
func TestPacer(t *testing.T) {
	p := Pacer{Count: 5, Window: 50 * time.Millisecond}
	start := time.Now()
	for range 15 {
		if !p.Wait(nil) {
			t.Fatal("Wait false with no done")
		}
	}
	if took := time.Since(start); took < 2*p.Window {
		t.Fatalf("15 rounds at 5 per %v in %v: not paced", p.Window, took)
	}
	done := make(chan struct{})
	close(done)
	q := Pacer{Count: 1, Window: time.Hour}
	if !q.Wait(done) {
		t.Fatal("the first round waited")
	}
	if q.Wait(done) {
		t.Fatal("a round past the count did not end with done")
	}
}
