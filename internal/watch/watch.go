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

// retryEvery is how often a directory that is not watched is tried again:
// one whose watch could not be set up (the node's inotify limits, shared
// by every container of the user), or was lost (the directory removed or
// moved away). A change meanwhile reloads once the watch is back, since
// the fingerprints are compared then. Nothing is armed while every
// directory is watched.
var retryEvery = 5 * time.Second

// Watcher watches paths and calls onChange once per change of each.
type Watcher struct {
	targets  []*target
	dirs     []string // the directories to watch, each once
	debounce time.Duration
	retry    time.Duration
	onChange func(path string)
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup
	closeErr error

	// Owned by run's goroutine once it has started:
	fs      *fsnotify.Watcher // nil while inotify cannot be had
	watched map[string]bool   // the directories watched now
	failing string            // the last setup failure logged, "" if none
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
// without events. Close stops it. Only a path that does not exist is an
// error: a watch the system refuses now (its inotify limits reached) is
// logged and tried again every retryEvery, and a change made meanwhile
// reloads once it is in place.
func New(paths []string, debounce time.Duration, onChange func(path string), log *slog.Logger) (*Watcher, error) {
	w := &Watcher{debounce: debounce, retry: retryEvery, onChange: onChange, log: log,
		done: make(chan struct{}), watched: map[string]bool{}}
	dirs := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("--watch %s: %w", p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("--watch %s: %w", p, unwrapPath(err))
		}
		t := &target{path: abs, dir: abs, isDir: st.IsDir()}
		if !t.isDir {
			t.dir = filepath.Dir(abs)
		}
		w.targets = append(w.targets, t)
		if !dirs[t.dir] {
			dirs[t.dir] = true
			w.dirs = append(w.dirs, t.dir)
		}
	}
	_, err := w.setup()
	// Fingerprints after the watches: a change from here on gives events,
	// or, for a directory not watched yet, a different fingerprint once
	// it is.
	for _, t := range w.targets {
		t.print = t.fingerprint()
	}
	if err != nil {
		w.unwatched(err)
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// setup watches every directory not watched yet, creating the inotify
// instance first if there is none. It returns the directories it began to
// watch, and the first failure.
func (w *Watcher) setup() (added map[string]bool, first error) {
	if w.fs == nil {
		fs, err := fsnotify.NewWatcher()
		if err != nil {
			return nil, err
		}
		w.fs = fs
	}
	added = map[string]bool{}
	for _, d := range w.dirs {
		if w.watched[d] {
			continue
		}
		// A directory moved away is still watched under its old path;
		// forget it before watching what is there now.
		_ = w.fs.Remove(d)
		if err := w.fs.Add(d); err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", d, err)
			}
			continue
		}
		w.watched[d] = true
		added[d] = true
	}
	return added, first
}

// unwatched logs that a directory is not watched: once per distinct
// failure, so that a retry every few seconds does not flood the log.
func (w *Watcher) unwatched(err error) {
	msg := describe(err)
	if msg == w.failing {
		w.log.Debug("--watch: still not watching", "err", msg)
		return
	}
	w.failing = msg
	w.log.Warn("--watch: not watching (a change meanwhile reloads once watched); trying again every "+w.retry.String(), "err", msg)
}

// describe adds to an inotify error the limit it usually means.
func describe(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return err.Error() + " (the inotify instance limit fs.inotify.max_user_instances, or the open-file limit)"
	case errors.Is(err, syscall.ENOSPC):
		return err.Error() + " (the inotify watch limit fs.inotify.max_user_watches)"
	}
	return err.Error()
}

// Close stops watching; no onChange call starts after it returns.
func (w *Watcher) Close() error {
	close(w.done)
	w.wg.Wait()
	return w.closeErr
}

// run handles events, debounce timers and retries on one goroutine.
func (w *Watcher) run() {
	defer w.wg.Done()
	quiet := make(chan *target)
	var retry *time.Timer // armed while a directory is not watched
	var retryC <-chan time.Time
	schedule := func() {
		if retryC != nil {
			return
		}
		if retry == nil {
			retry = time.NewTimer(w.retry)
		} else {
			retry.Reset(w.retry)
		}
		retryC = retry.C
	}
	if len(w.watched) < len(w.dirs) {
		schedule()
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
		for _, t := range w.targets {
			if t.timer != nil {
				t.timer.Stop()
			}
		}
		if w.fs != nil {
			w.closeErr = w.fs.Close()
		}
	}()
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		if w.fs != nil {
			events, errs = w.fs.Events, w.fs.Errors
		}
		select {
		case <-w.done:
			return
		case ev, ok := <-events:
			if !ok {
				w.lostAll(schedule)
				continue
			}
			if w.watched[ev.Name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself is gone or moved: its watch with it.
				delete(w.watched, ev.Name)
				w.log.Info("--watch: directory gone; watching it again once it is back, every "+w.retry.String(), "dir", ev.Name)
				schedule()
			}
			for _, t := range w.targets {
				if t.concerns(ev.Name) {
					w.arm(t, quiet)
				}
			}
		case err, ok := <-errs:
			if !ok {
				w.lostAll(schedule)
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// The kernel dropped events: any path may have changed.
				w.log.Warn("--watch: events lost (inotify queue overflow); checking every watched path")
				for _, t := range w.targets {
					w.arm(t, quiet)
				}
				continue
			}
			w.log.Warn("watch", "err", err)
		case <-retryC:
			retryC = nil
			added, err := w.setup()
			for _, t := range w.targets {
				if added[t.dir] {
					w.arm(t, quiet) // compare with the last fingerprint
				}
			}
			if err != nil {
				w.unwatched(err)
				schedule()
				continue
			}
			w.failing = ""
			w.log.Info("--watch: watching every path")
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

// lostAll starts over after the inotify instance has stopped (its reader
// failed): no directory is watched until a retry sets them up again.
func (w *Watcher) lostAll(schedule func()) {
	_ = w.fs.Close()
	w.fs = nil
	clear(w.watched)
	w.log.Warn("--watch: inotify stopped; watching again in " + w.retry.String())
	schedule()
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
