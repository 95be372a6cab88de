package watch

import (
	"os"
	"path/filepath"
	"strings"
)

// maxLinks is how many symbolic links a path may go through, as the
// kernel allows (MAXSYMLINKS): more is a loop.
const maxLinks = 40

// resolution is where a watched path leads, component by component, as
// the kernel resolves it: every directory it goes through, with the names
// looked up in each (a symbolic link's target resolved in turn, at every
// level), and what it ends at.
type resolution struct {
	// way maps each directory the path goes through to the names looked
	// up in it: an entry created, deleted or moved there may change
	// where the path leads.
	way map[string]map[string]bool
	// final is the real path the path leads to, "" when it leads nowhere
	// (a name missing on the way, a loop, a directory that cannot be
	// read); isDir says whether it is a directory.
	final string
	isDir bool
}

// resolve follows path (absolute), without the cache of a
// filepath.EvalSymlinks, noting every directory and name on the way.
func resolve(path string) resolution {
	r := resolution{way: map[string]map[string]bool{}}
	note := func(dir, name string) {
		if r.way[dir] == nil {
			r.way[dir] = map[string]bool{}
		}
		r.way[dir][name] = true
	}
	pending := strings.Split(path, "/")
	cur, links := "/", 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			// cur holds no link: its parent is the physical one.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		note(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return r // missing, or cur cannot be searched: watch cur for it
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if len(pending) > 0 && !fi.IsDir() {
				return r // a file in the middle: ENOTDIR, as the kernel says
			}
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return r // a loop
		}
		target, err := os.Readlink(next)
		if err != nil {
			return r
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	fi, err := os.Stat(cur)
	if err != nil {
		return r
	}
	r.final, r.isDir = cur, fi.IsDir()
	return r
}
