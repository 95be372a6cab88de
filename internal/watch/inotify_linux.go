package watch

import (
	"bytes"
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify is an inotify instance whose watches each ask for their own
// events. fsnotify, which tini-hot used before, gives every watch the same
// mask (it has the option unexported, "not yet supported" in v1.10.1): a
// watch on the directory of a watched file then reported every write to
// every other file there, and 240k writes a second to a neighbour cost
// tini-hot 97% of a CPU. Here a directory on the way to a watched path
// reports only entries created, deleted or moved; the contents of the
// file or directory it resolves to are watched on that inode.
type inotify struct {
	f  *os.File // non-blocking: reads wait in the runtime's poller
	fd int
	// read counts the events read, for the tests.
	read atomic.Int64
}

// rawEvent is an event as the kernel reports it: the watch, what
// happened, and the name of the entry for an event in a watched
// directory ("" for one on the watched inode itself).
type rawEvent struct {
	wd   int
	mask uint32
	name string
}

// Masks: what a directory on the way to a watched path reports (its
// entries come and go, or it does), and what the inode a watched path
// resolves to reports besides (its contents change).
const (
	wayMask      = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	contentsMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
)

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	return &inotify{f: os.NewFile(uintptr(fd), "inotify"), fd: fd}, nil
}

// add watches path (not following a last symlink) for mask, replacing
// the mask of a watch already on that inode, and returns its descriptor:
// the same for every path that is the same inode.
func (in *inotify) add(path string, mask uint32) (int, error) {
	wd, err := unix.InotifyAddWatch(in.fd, path, mask|unix.IN_DONT_FOLLOW)
	if err != nil {
		return 0, os.NewSyscallError("inotify_add_watch", err)
	}
	return wd, nil
}

// remove drops watch wd; one the kernel dropped already (its inode gone)
// is no error.
func (in *inotify) remove(wd int) {
	_, _ = unix.InotifyRmWatch(in.fd, uint32(wd)) // EINVAL: gone already
}

func (in *inotify) close() error { return in.f.Close() }

// serve delivers the events to out, a read's worth at a time, until the
// instance is closed or done is; then it closes out.
func (in *inotify) serve(out chan<- []rawEvent, done <-chan struct{}) {
	defer close(out)
	// Room for 64 events with the longest names at least (NAME_MAX 255).
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := in.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				_ = in.f.Close() // the reader failed: the watcher starts over
			}
			return
		}
		evs := parseEvents(buf[:n])
		in.read.Add(int64(len(evs)))
		select {
		case out <- evs:
		case <-done:
			return
		}
	}
}

// parseEvents reads a buffer of struct inotify_event, each followed by
// its NUL-padded name; a record cut short ends the parse.
func parseEvents(b []byte) []rawEvent {
	var evs []rawEvent
	for len(b) >= unix.SizeofInotifyEvent {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(raw.Len)
		if raw.Len > unix.PathMax || end > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		evs = append(evs, rawEvent{wd: int(raw.Wd), mask: raw.Mask, name: string(name)})
		b = b[end:]
	}
	return evs
}
