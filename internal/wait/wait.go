// Package wait is for tests: it waits for a condition by polling, bounded
// by a deadline, so that tests wait on events, not on fixed sleeps.
package wait

import (
	"testing"
	"time"
)

// Until polls cond every 5 ms for up to 10 s and fails t when it never
// holds.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
