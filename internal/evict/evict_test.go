package evict

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"github.com/tini-hot/tini-hot/internal/wait"
)

type conn struct{ n int }

func (conn) Close() error { return nil }

// TestReading: one more than the bound evicts the oldest still sending;
// a connection done sending is never evicted; Done twice, or after an
// eviction, does nothing.
func TestReading(t *testing.T) {
	var logged syncbuf.Buffer
	r := New(2, "test server", slog.New(slog.NewTextHandler(&logged, nil)))
	defer r.Close()
	e1, ev := r.Add(conn{1})
	if ev != nil {
		t.Fatal("evicted below the bound")
	}
	e2, _ := r.Add(conn{2})
	r.Done(e1)
	r.Done(e1)
	if _, ev := r.Add(conn{3}); ev != nil {
		t.Fatalf("evicted %v with room left", ev)
	}
	if _, ev := r.Add(conn{4}); ev != (conn{2}) {
		t.Fatalf("evicted %v, want the oldest still sending, 2", ev)
	}
	r.Done(e2) // already evicted
	if r.Len() != 2 {
		t.Fatalf("%d still sending, want 2", r.Len())
	}
	r.Done(Entry{})
}

// TestEvictionsSummed: the first eviction of a period is logged at once,
// the others in one line at its end.
func TestEvictionsSummed(t *testing.T) {
	defer func(d time.Duration) { logEvery = d }(logEvery)
	logEvery = 50 * time.Millisecond
	var logged syncbuf.Buffer
	r := New(1, "test server", slog.New(slog.NewTextHandler(&logged, nil)))
	defer r.Close()
	for i := range 101 {
		r.Add(conn{i})
	}
	if n := strings.Count(logged.String(), "msg="); n != 1 {
		t.Fatalf("%d lines at once, want 1:\n%s", n, logged.String())
	}
	wait.Until(t, "the summary of the 99 other evictions", func() bool { return strings.Contains(logged.String(), "count=99") })
	if n := strings.Count(logged.String(), "msg="); n != 2 {
		t.Fatalf("%d lines, want 2:\n%s", n, logged.String())
	}
}
