package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDebounce is the quiet window after the last event of a change.
// The kubelet's atomic update takes milliseconds.
const DefaultDebounce = 500 * time.Millisecond

// retryEvery is how often watches that could not be set up are tried
// again: the node's inotify limits (shared by every container of the
// user) refused them, or the inotify instance stopped. A change
// meanwhile reloads once they are back, since the fingerprints are
// compared then. Nothing is armed while every watch is in place.
var retryEvery = 5 * time.Second

// maxBurst bounds a change, in debounce windows: events that never stop
// (a file rewritten every second) still reload, once per this many
// windows, rather than never.
const maxBurst = 10

// Watcher watches paths and calls onChange once per change, with every
// watched path the change concerns.
type Watcher struct {
	targets  []*target
	debounce time.Duration
	retry    time.Duration
	onChange func(paths []string)
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup
	closeErr error

	// Owned by run's goroutine once it has started:
	in      *inotify         // nil while there is none
	events  chan []rawEvent  // in's events; closed when its reader ends
	watches map[string]watch // the paths watched now
	byWD    map[int][]string // the paths of each watch descriptor
	missing bool             // a watch could not be set up: retry
	failing string           // the last setup failure logged, "" if none
	armed   map[*target]bool // targets with events since the last quiet
	first   time.Time        // the first event since quiet
	last    time.Time        // the last event
}

// watch is an inotify watch on a path, and what it asks for.
type watch struct {
	wd   int
	mask uint32
}

// target is one watched path: what it resolved to when last looked at,
// and its fingerprint then.
type target struct {
	path  string
	res   resolution
	print string
}

// Check reports whether path can be watched: it must lead to a file or a
// directory, which tini-hot can reach. A path that does not exist, or
// under a directory tini-hot may not search, is an error.
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

// New watches paths, each leading to an existing file or directory (see
// Check), and calls onChange from its own goroutine once per change, after
// debounce without events. Close stops it. A watch the system refuses now
// (its inotify limits reached) is logged and tried again every
// retryEvery, and a change made meanwhile reloads once it is in place.
func New(paths []string, debounce time.Duration, onChange func(paths []string), log *slog.Logger) (*Watcher, error) {
	w := &Watcher{debounce: debounce, retry: retryEvery, onChange: onChange, log: log,
		done: make(chan struct{}), watches: map[string]watch{}, byWD: map[int][]string{}, armed: map[*target]bool{}}
	for _, p := range paths {
		if err := Check(p); err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("--watch %s: %w", p, err)
		}
		if slices.ContainsFunc(w.targets, func(t *target) bool { return t.path == abs }) {
			continue
		}
		w.targets = append(w.targets, &target{path: abs, res: resolve(abs)})
	}
	err := w.sync()
	// Fingerprints after the watches: a change from here on gives events,
	// or, for a path not watched yet, a different fingerprint once it is.
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

// wanted is every path to watch and its mask: each directory on the way
// of each target, and what each leads to.
func (w *Watcher) wanted() map[string]uint32 {
	want := map[string]uint32{}
	for _, t := range w.targets {
		for dir := range t.res.way {
			want[dir] |= wayMask | unix.IN_ONLYDIR
		}
		switch {
		case t.res.final == "":
		case t.res.isDir:
			want[t.res.final] |= wayMask | contentsMask | unix.IN_ONLYDIR
		default:
			want[t.res.final] |= contentsMask
		}
	}
	return want
}

// sync makes the watches what the targets' resolutions ask for, creating
// the inotify instance first if there is none. It returns the first
// failure; the watches that failed are tried again at the next sync.
func (w *Watcher) sync() (first error) {
	if w.in == nil {
		in, err := newInotify()
		if err != nil {
			w.missing = true
			return err
		}
		w.in, w.events = in, make(chan []rawEvent)
		clear(w.watches)
		clear(w.byWD)
		go in.serve(w.events, w.done)
	}
	want := w.wanted()
	for path, cur := range w.watches {
		if _, ok := want[path]; !ok {
			w.forget(path, cur.wd)
		}
	}
	w.missing = false
	for path, mask := range want {
		if cur, ok := w.watches[path]; ok && cur.mask == mask {
			continue
		}
		wd, err := w.in.add(path, mask)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
				// Gone since it was resolved: its events are on the way.
				continue
			}
			w.missing = true
			if first == nil {
				first = fmt.Errorf("%s: %w", path, err)
			}
			continue
		}
		if cur, ok := w.watches[path]; ok && cur.wd != wd {
			w.forget(path, cur.wd) // another inode at that path now
		}
		w.watches[path] = watch{wd, mask}
		if !slices.Contains(w.byWD[wd], path) {
			w.byWD[wd] = append(w.byWD[wd], path)
		}
	}
	return first
}

// forget drops the watch of path, descriptor wd, and the descriptor once
// no path uses it.
func (w *Watcher) forget(path string, wd int) {
	delete(w.watches, path)
	w.byWD[wd] = slices.DeleteFunc(w.byWD[wd], func(p string) bool { return p == path })
	if len(w.byWD[wd]) == 0 {
		delete(w.byWD, wd)
		w.in.remove(wd)
	}
}

// unwatched logs that a path is not watched: once per distinct failure,
// so that a retry every few seconds does not flood the log.
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

// run handles events, the quiet window and retries on one goroutine.
func (w *Watcher) run() {
	defer w.wg.Done()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	var quietC <-chan time.Time // set while the window is armed
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var retryC <-chan time.Time // set while a retry is due
	schedule := func() {
		if retryC == nil {
			retry.Reset(w.retry)
			retryC = retry.C
		}
	}
	arm := func(ts ...*target) {
		now := time.Now()
		if quietC == nil {
			w.first = now
			quiet.Reset(w.debounce)
			quietC = quiet.C
		}
		w.last = now
		for _, t := range ts {
			w.armed[t] = true
		}
	}
	if w.missing {
		schedule()
	}
	defer func() {
		quiet.Stop()
		retry.Stop()
		if w.in != nil {
			w.closeErr = w.in.close()
		}
	}()
	for {
		select {
		case <-w.done:
			return
		case evs, ok := <-w.events:
			if !ok {
				w.lostAll()
				schedule()
				arm(w.targets...)
				continue
			}
			if ts, gone := w.concerned(evs); len(ts) > 0 {
				arm(ts...)
				if gone {
					schedule()
				}
			}
		case <-retryC:
			retryC = nil
			if err := w.sync(); err != nil {
				w.unwatched(err)
				schedule()
			} else if w.failing != "" {
				w.failing = ""
				w.log.Info("--watch: watching every path")
			}
			arm(w.targets...) // compare with the last fingerprints
		case <-quietC:
			// The window lasts until debounce has passed without an
			// event, or maxBurst windows since the first.
			if wait := time.Until(w.last.Add(w.debounce)); wait > 0 && time.Since(w.first) < maxBurst*w.debounce {
				quiet.Reset(wait)
				continue
			}
			quietC = nil
			if w.settle() {
				schedule()
			}
		}
	}
}

// concerned returns the targets a batch of events may change, and
// whether a watch was lost (its inode gone: the watches must be set up
// again). An event in a directory on a target's way concerns it when it
// names an entry the target resolves through; any event in or on the
// file or directory a target leads to concerns it. Events of other
// entries cost a map lookup: and the masks keep most from coming at all.
func (w *Watcher) concerned(evs []rawEvent) (ts []*target, gone bool) {
	hit := func(t *target) {
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	for _, ev := range evs {
		if ev.mask&unix.IN_Q_OVERFLOW != 0 {
			// The kernel dropped events: any path may have changed.
			w.log.Warn("--watch: events lost (inotify queue overflow); checking every watched path")
			return w.targets, false
		}
		if ev.mask&unix.IN_IGNORED != 0 {
			// The inode is gone (deleted, unmounted), or the watch was
			// removed by sync: the paths it was for are looked at again.
			for _, p := range w.byWD[ev.wd] {
				if cur, ok := w.watches[p]; ok && cur.wd == ev.wd {
					delete(w.watches, p)
					gone = true
				}
			}
			delete(w.byWD, ev.wd)
		}
		for _, dir := range w.byWD[ev.wd] {
			for _, t := range w.targets {
				switch {
				case dir == t.res.final:
					hit(t)
				case ev.name == "":
					if t.res.way[dir] != nil {
						hit(t) // a directory on its way moved or went
					}
				case t.res.way[dir][ev.name]:
					hit(t)
				}
			}
		}
	}
	return ts, gone
}

// settle ends a quiet window: the targets with events are resolved again,
// the watches follow, and the fingerprints say what changed. onChange is
// called once, with every path that changed. It reports whether a watch
// could not be set up (a retry is due).
func (w *Watcher) settle() (retry bool) {
	for t := range w.armed {
		t.res = resolve(t.path)
	}
	err := w.sync()
	if err != nil {
		w.unwatched(err)
	}
	var changed []string
	for _, t := range w.targets {
		if !w.armed[t] {
			continue
		}
		if print := t.fingerprint(); print != t.print {
			t.print = print
			changed = append(changed, t.path)
		} else {
			w.log.Debug("watch: events without a change", "path", t.path)
		}
	}
	clear(w.armed)
	if len(changed) > 0 {
		w.log.Info("watched path changed: reloading", "paths", strings.Join(changed, ", "))
		w.onChange(changed)
	}
	return w.missing // set by sync whenever a watch failed
}

// lostAll starts over after the inotify instance has stopped (its reader
// failed): nothing is watched until a retry sets it up again.
func (w *Watcher) lostAll() {
	_ = w.in.close()
	w.in, w.events = nil, nil
	clear(w.watches)
	clear(w.byWD)
	w.missing = true
	w.log.Warn("--watch: inotify stopped; watching again in " + w.retry.String())
}

// fingerprint identifies what t is now: for a file, what it resolves to
// and that file's identity; for a directory, the same for each entry.
func (t *target) fingerprint() string {
	if !t.res.isDir {
		return identity(t.path)
	}
	entries, err := os.ReadDir(t.path)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	b.WriteString(identity(t.path))
	b.WriteString("\n")
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
