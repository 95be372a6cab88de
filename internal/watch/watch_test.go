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

func (c *counter) change(ps []string) {
	c.mu.Lock()
	c.n++
	c.paths = append(c.paths, strings.Join(ps, ","))
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
	return startLoggingAll(t, []string{path}, log)
}

// startLoggingAll watches paths, logging to log at debug level.
func startLoggingAll(t *testing.T, paths []string, log io.Writer) (*counter, *Watcher) {
	t.Helper()
	c := &counter{c: make(chan struct{}, 100)}
	h := slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})
	w, err := New(paths, window, c.change, slog.New(h))
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
	if _, err := New([]string{missing}, window, func([]string) {}, slog.Default()); err == nil {
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

// symlink makes link point at target, atomically: a new link renamed over
// the old one, as a deployment swaps a "current" link.
func symlink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// TestLinkToDirectorySwapped: --watch rel/current, current -> v1 (a
// relative link to a directory), swapped to v2: one reload; then an edit
// in v2 reloads, one in the old v1 does not. aa4f58b watched v1 through
// the link for good: the swap and v2's edits gave nothing, v1's gave
// reloads.
func TestLinkToDirectorySwapped(t *testing.T) {
	rel := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(rel, v), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(rel, v, "app.conf"), v)
	}
	current := filepath.Join(rel, "current")
	if err := os.Symlink("v1", current); err != nil {
		t.Fatal(err)
	}
	c := start(t, current)
	symlink(t, "v2", current)
	c.reloaded(t, 1)
	write(t, filepath.Join(rel, "v2", "app.conf"), "v2 edited")
	c.reloaded(t, 2)
	write(t, filepath.Join(rel, "v1", "app.conf"), "v1 edited")
	c.none(t)
}

// TestLinkToFileElsewhere: --watch lnk, lnk -> ext/conf in another
// directory: an edit of ext/conf, and its atomic replacement, each reload
// once; so does the link moved to another file, whose edits then count.
// aa4f58b watched only lnk's directory: 0 reloads.
func TestLinkToFileElsewhere(t *testing.T) {
	ext := t.TempDir()
	conf := filepath.Join(ext, "conf")
	write(t, conf, "a")
	link := filepath.Join(t.TempDir(), "lnk")
	if err := os.Symlink(conf, link); err != nil {
		t.Fatal(err)
	}
	c := start(t, link)
	write(t, conf, "bb")
	c.reloaded(t, 1)
	write(t, conf+".tmp", "ccc")
	if err := os.Rename(conf+".tmp", conf); err != nil {
		t.Fatal(err)
	}
	c.reloaded(t, 2)
	other := filepath.Join(t.TempDir(), "other")
	write(t, other, "x")
	symlink(t, other, link)
	c.reloaded(t, 3)
	write(t, other, "xy")
	c.reloaded(t, 4)
	write(t, conf, "dddd") // no longer where the link leads
	c.none(t)
}

// TestLinkChain: a link to a link to a directory holding a link, each
// level moved in turn: every move that changes where the path leads
// reloads once.
func TestLinkChain(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, p, content)
	}
	mk(filepath.Join(root, "a", "conf.1"), "1")
	mk(filepath.Join(root, "b", "conf.1"), "2")
	mk(filepath.Join(root, "a", "conf.2"), "3")
	if err := os.Symlink("conf.1", filepath.Join(root, "a", "conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("conf.1", filepath.Join(root, "b", "conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "a"), filepath.Join(root, "dir")); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(t.TempDir(), "top")
	if err := os.Symlink(filepath.Join(root, "dir", "conf"), top); err != nil {
		t.Fatal(err)
	}
	c := start(t, top)
	symlink(t, "conf.2", filepath.Join(root, "a", "conf")) // the last level
	c.reloaded(t, 1)
	symlink(t, filepath.Join(root, "b"), filepath.Join(root, "dir")) // the middle
	c.reloaded(t, 2)
	write(t, filepath.Join(root, "b", "conf.1"), "edited") // where it leads now
	c.reloaded(t, 3)
	write(t, filepath.Join(root, "a", "conf.2"), "edited") // where it led
	c.none(t)
}

// TestOneUpdateOneReload: two watched paths that one update changes (a
// ConfigMap directory and a file in it) give one reload, naming both.
// aa4f58b gave one per path.
func TestOneUpdateOneReload(t *testing.T) {
	dir := t.TempDir()
	if err := kubelet.Update(dir, map[string]string{"app.conf": "v0"}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "app.conf")
	c, _ := startLoggingAll(t, []string{dir, file}, io.Discard)
	if err := kubelet.Update(dir, map[string]string{"app.conf": "v1"}); err != nil {
		t.Fatal(err)
	}
	c.reloaded(t, 1)
	if c.paths[0] != dir+","+file {
		t.Fatalf("reloaded for %q, want both paths", c.paths[0])
	}
}

// TestUnrelatedWritesCostNothing: writes to another file in the directory
// of a watched file give the watcher no event at all: the directory is
// watched for entries created, deleted and moved only. (aa4f58b, through
// fsnotify, got one per write: 240k writes a second cost tini-hot 97% of
// a CPU.)
func TestUnrelatedWritesCostNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conf")
	write(t, path, "a")
	other, err := os.Create(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, w := startLogging(t, path, io.Discard)
	in := w.in // set before New returns, and kept: nothing fails here
	for range 10000 {
		if _, err := other.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// Then a change of the watched file: its events come after any of
	// the writes', and a reload says they have been read.
	write(t, path, "bb")
	c.reloaded(t, 1)
	// The watched file's own change is a handful of events (its
	// truncation, write and close; the kernel merges repeats only while
	// they are unread, so a loaded machine, reading them one by one, sees
	// more: 7 seen). One per unrelated write would be 10,000.
	if n := in.read.Load(); n > 20 {
		t.Fatalf("%d events read for 10,000 writes to another file and one to the watched one", n)
	}
}
