package watch

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/watch/kubelet"
)

// counter counts onChange calls.
type counter struct {
	mu    sync.Mutex
	n     int
	paths []string
	c     chan struct{}
}

func (c *counter) change(p string) {
	c.mu.Lock()
	c.n++
	c.paths = append(c.paths, p)
	c.mu.Unlock()
	c.c <- struct{}{}
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

const window = 50 * time.Millisecond

func start(t *testing.T, path string) *counter {
	t.Helper()
	c, _ := startLogging(t, path, io.Discard)
	return c
}

// startLogging watches path, logging to log at debug level.
func startLogging(t *testing.T, path string, log io.Writer) (*counter, *Watcher) {
	t.Helper()
	c := &counter{c: make(chan struct{}, 100)}
	h := slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})
	w, err := New([]string{path}, window, c.change, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return c, w
}

// next waits for the next reload.
func (c *counter) next(t *testing.T) {
	t.Helper()
	select {
	case <-c.c:
	case <-time.After(10 * time.Second):
		t.Fatalf("no reload after %d", c.count())
	}
}

// reloaded waits for the next reload, checks that no other follows it,
// and that it makes want reloads in all.
func (c *counter) reloaded(t *testing.T, want int) {
	t.Helper()
	c.next(t)
	c.none(t)
	if n := c.count(); n != want {
		t.Fatalf("%d reloads, want %d", n, want)
	}
}

// none checks that no reload comes within several quiet windows.
func (c *counter) none(t *testing.T) {
	t.Helper()
	select {
	case <-c.c:
		t.Fatalf("an extra reload (%d in all)", c.count())
	case <-time.After(10 * window):
	}
}

// TestKubeletUpdate: each atomic update of a ConfigMap volume gives
// exactly one reload, watching the directory or a file in it; nothing
// changing gives none.
func TestKubeletUpdate(t *testing.T) {
	for _, watchFile := range []bool{false, true} {
		name := "directory"
		if watchFile {
			name = "file"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := kubelet.Update(dir, map[string]string{"app.conf": "v0", "other.conf": "x"}); err != nil {
				t.Fatal(err)
			}
			path := dir
			if watchFile {
				path = filepath.Join(dir, "app.conf")
			}
			c := start(t, path)
			c.none(t)
			for i := 1; i <= 3; i++ {
				if err := kubelet.Update(dir, map[string]string{"app.conf": "v" + string(rune('0'+i)), "other.conf": "x"}); err != nil {
					t.Fatal(err)
				}
				c.reloaded(t, i)
			}
		})
	}
}

// TestPlainFile: an edit in place, or a replacement by rename, is a
// change; a file next to the watched one is not.
func TestPlainFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(path, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := start(t, path)
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.none(t)
	if err := os.WriteFile(path, []byte("bb"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.next(t)
	tmp := filepath.Join(dir, ".app.conf.swp")
	if err := os.WriteFile(tmp, []byte("ccc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	c.next(t)
	c.none(t)
	if c.count() != 2 || c.paths[0] != path {
		t.Fatalf("reloads %v", c.paths)
	}
}

func TestMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if err := Check(missing); err == nil || err.Error() != "--watch "+missing+": no such file or directory" {
		t.Fatalf("Check: %v", err)
	}
	if _, err := New([]string{missing}, window, func(string) {}, slog.Default()); err == nil {
		t.Fatal("New watched a missing path")
	}
}

// TestEndlessEvents: a file rewritten faster than the debounce window, for
// ever, still reloads, about once per maxBurst windows, not never.
func TestEndlessEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy")
	if err := os.WriteFile(path, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := start(t, path)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(window / 5):
			}
			_ = os.WriteFile(path, []byte(strings.Repeat("x", i%50+1)), 0o644)
		}
	}()
	c.next(t)
	close(stop)
	<-done
}
