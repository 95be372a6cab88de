package watch

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/syncbuf"
	"github.com/tini-hot/tini-hot/internal/wait"
	"golang.org/x/sys/unix"
)

// fastRetry makes unwatched directories retried every d for one test.
func fastRetry(t *testing.T, d time.Duration) {
	old := retryEvery
	retryEvery = d
	t.Cleanup(func() { retryEvery = old })
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOverflowChecksEveryPath: when the kernel drops events (its queue
// overflowed), every watched path is compared again, so a change whose
// events were lost still reloads, once.
func TestOverflowChecksEveryPath(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a.conf")
	b := filepath.Join(t.TempDir(), "b.conf")
	write(t, a, "a")
	write(t, b, "b")
	log := &syncbuf.Buffer{}
	c, w := startLoggingAll(t, []string{a, b}, log)
	w.events <- []rawEvent{{wd: -1, mask: unix.IN_Q_OVERFLOW}}
	wait.Until(t, "both paths compared", func() bool {
		return strings.Count(log.String(), "events without a change") == 2
	})
	c.none(t)
	write(t, b, "bb")
	w.events <- []rawEvent{{wd: -1, mask: unix.IN_Q_OVERFLOW}}
	c.reloaded(t, 1)
	if c.paths[0] != b {
		t.Fatalf("reloaded for %v, want %s", c.paths, b)
	}
}

// TestSetupRetried: a watch the system refuses at start is not fatal. It
// is logged with the limit it means (here no fd is left for the inotify
// instance, as when the node's fs.inotify.max_user_instances is reached)
// and tried again; a change made meanwhile reloads once the watch is in
// place, and later changes reload too.
func TestSetupRetried(t *testing.T) {
	fastRetry(t, 20*time.Millisecond)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	write(t, path, "a")
	next := filepath.Join(dir, ".next")
	write(t, next, "bb")

	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	// The kernel gives the lowest free fd: below this one, none is free.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lowest := uint64(f.Fd())
	f.Close()
	low := limit
	low.Cur = lowest
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	log := &syncbuf.Buffer{}
	c, _ := startLogging(t, path, log)
	// A change while nothing watches; a rename takes no fd.
	renamed := os.Rename(next, path)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	if renamed != nil {
		t.Fatal(renamed)
	}
	if !strings.Contains(log.String(), "fs.inotify.max_user_instances") {
		t.Fatalf("no warning naming the limit:\n%s", log)
	}
	c.reloaded(t, 1)
	if !strings.Contains(log.String(), "--watch: watching every path") {
		t.Fatalf("recovery not logged:\n%s", log)
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, log)
	}
	write(t, path, "ccc")
	c.reloaded(t, 2)
}

// TestDirectoryBack: a watched directory removed is a change; once a
// directory is back at its path (here one moved there) it is watched
// again: it reloads once, and its later changes reload too.
func TestDirectoryBack(t *testing.T) {
	fastRetry(t, 20*time.Millisecond)
	parent := t.TempDir()
	dir := filepath.Join(parent, "vol")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a"), "1")
	c, _ := startLogging(t, dir, &syncbuf.Buffer{})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c.next(t)
	other := filepath.Join(parent, "new")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(other, "a"), "2")
	if err := os.Rename(other, dir); err != nil {
		t.Fatal(err)
	}
	c.reloaded(t, 2)
	write(t, filepath.Join(dir, "b"), "3")
	c.reloaded(t, 3)
}

// TestInotifyStopped: when the inotify instance stops (its reader ends),
// a new one takes over, and a change made meanwhile reloads.
func TestInotifyStopped(t *testing.T) {
	fastRetry(t, 20*time.Millisecond)
	path := filepath.Join(t.TempDir(), "app.conf")
	write(t, path, "a")
	c, w := startLogging(t, path, &syncbuf.Buffer{})
	if err := w.in.close(); err != nil {
		t.Fatal(err)
	}
	write(t, path, "bb")
	c.reloaded(t, 1)
	write(t, path, "ccc")
	c.reloaded(t, 2)
}
