package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet window after the last event of a change.
// The kubelet's atomic update takes milliseconds.
const DefaultDebounce = 500 * time.Millisecond

// Watcher watches paths and calls onChange once per change of each.
type Watcher struct {
	fs       *fsnotify.Watcher
	targets  []*target
	debounce time.Duration
	onChange func(path string)
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup
}

// target is one watched path: a directory, watched itself, or a file,
// watched through its directory (an atomic update replaces the file, or
// the symlink it resolves through, and a watch on the file itself would
// follow the old inode).
type target struct {
	path  string
	dir   string // the directory whose events concern it
	isDir bool
	// Owned by the watcher's goroutine:
	print string      // the last fingerprint
	timer *time.Timer // the debounce, nil when quiet
	first time.Time   // the first event since quiet
}

// maxBurst bounds a change, in debounce windows: events that never stop
// (a file rewritten every second) still reload, once per this many
// windows, rather than never.
const maxBurst = 10

// Check reports whether path can be watched: it must exist.
func Check(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("--watch %s: %w", path, unwrapPath(err))
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// New watches paths, each an existing file or directory, and calls
// onChange(path) from its own goroutine once per change, after debounce
// without events. Close stops it.
func New(paths []string, debounce time.Duration, onChange func(path string), log *slog.Logger) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("--watch: %w", err)
	}
	w := &Watcher{fs: fw, debounce: debounce, onChange: onChange, log: log, done: make(chan struct{})}
	dirs := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			_ = fw.Close()
			return nil, fmt.Errorf("--watch %s: %w", p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			_ = fw.Close()
			return nil, fmt.Errorf("--watch %s: %w", p, unwrapPath(err))
		}
		t := &target{path: abs, dir: abs, isDir: st.IsDir()}
		if !t.isDir {
			t.dir = filepath.Dir(abs)
		}
		t.print = t.fingerprint()
		w.targets = append(w.targets, t)
		if !dirs[t.dir] {
			if err := fw.Add(t.dir); err != nil {
				_ = fw.Close()
				return nil, fmt.Errorf("--watch %s: %w", p, err)
			}
			dirs[t.dir] = true
		}
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// Close stops watching; no onChange call starts after it returns.
func (w *Watcher) Close() error {
	close(w.done)
	err := w.fs.Close()
	w.wg.Wait()
	return err
}

// run handles events and debounce timers on one goroutine.
func (w *Watcher) run() {
	defer w.wg.Done()
	quiet := make(chan *target)
	for {
		select {
		case <-w.done:
			for _, t := range w.targets {
				if t.timer != nil {
					t.timer.Stop()
				}
			}
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			for _, t := range w.targets {
				if t.concerns(ev.Name) {
					w.arm(t, quiet)
				}
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("watch", "err", err)
		case t := <-quiet:
			t.timer = nil
			print := t.fingerprint()
			if print == t.print {
				w.log.Debug("watch: events without a change", "path", t.path)
				continue
			}
			t.print = print
			w.log.Info("watched path changed: reloading", "path", t.path)
			w.onChange(t.path)
		}
	}
}

// arm (re)starts t's quiet window, unless its burst of events has lasted
// maxBurst windows already.
func (w *Watcher) arm(t *target, quiet chan<- *target) {
	if t.timer != nil {
		if time.Since(t.first) >= maxBurst*w.debounce {
			return // let it end now
		}
		t.timer.Stop()
	} else {
		t.first = time.Now()
	}
	t.timer = time.AfterFunc(w.debounce, func() {
		select {
		case quiet <- t:
		case <-w.done:
		}
	})
}

// concerns reports whether an event on name may change t: anything in a
// watched directory; for a file, an event on itself or on an entry its
// path resolves through (the kubelet's ..data symlink and the
// ..TIMESTAMP directories).
func (t *target) concerns(name string) bool {
	if t.isDir || name == t.path {
		return true
	}
	return filepath.Dir(name) == t.dir && strings.HasPrefix(filepath.Base(name), "..")
}

// fingerprint identifies what t is now: for a file, what it resolves to
// and that file's identity; for a directory, the same for each entry.
func (t *target) fingerprint() string {
	if !t.isDir {
		return identity(t.path)
	}
	entries, err := os.ReadDir(t.path)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Name())
		b.WriteString("=")
		b.WriteString(identity(filepath.Join(t.path, e.Name())))
		b.WriteString("\n")
	}
	return b.String()
}

// identity is where path resolves and its inode, size and change time.
func identity(path string) string {
	var parts []string
	if target, err := os.Readlink(path); err == nil {
		parts = append(parts, "-> "+target)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return strings.Join(append(parts, "error: "+unwrapPath(err).Error()), " ")
	}
	st, err := os.Stat(real)
	if err != nil {
		return strings.Join(append(parts, "error: "+unwrapPath(err).Error()), " ")
	}
	parts = append(parts, real, fmt.Sprint(st.Size()), st.ModTime().String())
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		parts = append(parts, fmt.Sprint(sys.Dev, sys.Ino, sys.Ctim.Nano()))
	}
	return strings.Join(parts, " ")
}
