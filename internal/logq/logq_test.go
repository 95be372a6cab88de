package logq

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/syncbuf"
)

// stalled is an output that takes nothing until opened, like a pipe whose
// reader is stuck.
type stalled struct {
	open chan struct{}
	syncbuf.Buffer
}

func (s *stalled) Write(p []byte) (int, error) {
	<-s.open
	return s.Buffer.Write(p)
}

// writeAll writes lines to w and fails t if that takes long: Write must
// not wait for the output.
func writeAll(t *testing.T, w *Writer, lines []string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, l := range lines {
			_, _ = w.Write([]byte(l))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for a stalled output")
	}
}

func numbered(from, to int) []string {
	var lines []string
	for i := from; i < to; i++ {
		lines = append(lines, fmt.Sprintf("line %05d %s\n", i, strings.Repeat("x", 100)))
	}
	return lines
}

// TestStalledOutput: while the output takes nothing, writes return at
// once; what fits in MaxQueued waits, the rest is dropped and counted;
// once the output takes lines again, they come out in order, with the
// count where lines are missing, and lines written once the queue has
// drained go out too.
func TestStalledOutput(t *testing.T) {
	out := &stalled{open: make(chan struct{})}
	w := New(out)
	lines := numbered(0, 2000) // 223 KB, over MaxQueued
	writeAll(t, w, lines)
	if w.Flush(50 * time.Millisecond) {
		t.Fatal("Flush reported the lines written while the output is stalled")
	}
	close(out.open)
	if !w.Flush(10 * time.Second) {
		t.Fatal("Flush timed out after the output opened")
	}
	writeAll(t, w, numbered(2000, 2002))
	if !w.Flush(10 * time.Second) {
		t.Fatal("Flush timed out")
	}
	got := strings.SplitAfter(out.String(), "\n")
	got = got[:len(got)-1] // after the last newline
	kept := 0
	for kept < len(got) && got[kept] == lines[kept] {
		kept++
	}
	if kept == 0 || kept*len(lines[0]) > MaxQueued {
		t.Fatalf("%d lines of %d bytes went out before the drop; MaxQueued is %d", kept, len(lines[0]), MaxQueued)
	}
	want := append(append([]string(nil), lines[:kept]...),
		fmt.Sprintf("tini-hot: %d log lines dropped: the log was not read\n", len(lines)-kept))
	want = append(want, numbered(2000, 2002)...)
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("output:\n%s\nwant the first %d lines, the count, then the last two", strings.Join(got[kept:], ""), kept)
	}
}

// TestDroppedAtTheEnd: lines dropped after the last one queued are counted
// by Flush.
func TestDroppedAtTheEnd(t *testing.T) {
	out := &stalled{open: make(chan struct{})}
	w := New(out)
	lines := numbered(0, 1000)
	writeAll(t, w, lines)
	close(out.open)
	if !w.Flush(10 * time.Second) {
		t.Fatal("Flush timed out")
	}
	got := out.String()
	if !strings.HasSuffix(got, " log lines dropped: the log was not read\n") {
		t.Fatalf("no count at the end:\n%s", got[max(0, len(got)-300):])
	}
	var n int
	last := got[strings.LastIndex(got[:len(got)-1], "\n")+1:]
	if _, err := fmt.Sscanf(last, "tini-hot: %d", &n); err != nil || strings.Count(got, "line ")+n != len(lines) {
		t.Fatalf("%d lines out and %d counted, want %d in all", strings.Count(got, "line "), n, len(lines))
	}
}

// TestFlowing: with an output that keeps up, nothing is dropped, however
// many lines go through in all (here over three times MaxQueued, from four
// goroutines).
func TestFlowing(t *testing.T) {
	out := &stalled{open: make(chan struct{})}
	close(out.open)
	w := New(out)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				_, _ = w.Write([]byte(fmt.Sprintf("g%d %03d %s\n", g, i, strings.Repeat("x", 100))))
				if i%50 == 0 {
					w.Flush(10 * time.Second) // let the output keep up
				}
			}
		})
	}
	wg.Wait()
	if !w.Flush(10 * time.Second) {
		t.Fatal("Flush timed out")
	}
	if got := strings.Count(out.String(), "\n"); got != 2000 || strings.Contains(out.String(), "dropped") {
		t.Fatalf("%d lines out, want 2000:\n%s", got, out.String()[:200])
	}
}

// TestLongLineCut: a line over MaxLine is written cut, saying so, not
// dropped whole (aa4f58b: a 100 KB line became "1 log lines dropped: the
// log was not read", which was false).
func TestLongLineCut(t *testing.T) {
	var out syncbuf.Buffer
	w := New(&out)
	long := strings.Repeat("x", 100<<10) + "\n"
	if n, err := w.Write([]byte(long)); n != len(long) || err != nil {
		t.Fatalf("Write: %d %v", n, err)
	}
	if !w.Flush(10 * time.Second) {
		t.Fatal("not flushed")
	}
	got := out.String()
	want := strings.Repeat("x", MaxLine) + fmt.Sprintf("… [%d bytes cut]\n", len(long)-MaxLine)
	if got != want {
		t.Fatalf("wrote %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-40):], len(want), want[len(want)-40:])
	}
}
