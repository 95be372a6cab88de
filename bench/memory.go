package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// floorCollections is how many garbage collections the memory floor
// programs run: enough for the growth to stop (it stops after about 6,
// within the first tenth).
const floorCollections = 100

// memoryTable sets tini-hot's RssAnon growth across reloads beside the
// growth any Go program of the same libraries pays once its garbage
// collector has run: bench/floor -collect, without and with the
// libraries, median of 3 runs each. Each is also read after the first
// tenth of its work, which tells the Go runtime's one step at its first
// collections (the floor's) from a growth that would go on with the
// work.
func memoryTable(b bins, reloads int) string {
	type row struct {
		name, work         string
		idle, tenth, after int
		err                error
	}
	var rows []row
	for _, f := range []struct{ name, path string }{
		{"Go program, nothing linked", b.floor},
		{"… with tini-hot's libraries linked", b.floorLibs},
	} {
		r := row{name: f.name, work: fmt.Sprintf("%d collections", floorCollections)}
		r.idle, r.tenth, r.after, r.err = floorGrowth(f.path)
		rows = append(rows, r)
	}
	for _, t := range []struct {
		name string
		env  []string
	}{
		{"tini-hot, the demo, no load", nil},
		// The Go runtime makes a processor per CPU: what a node of 32
		// CPUs and a pod with no CPU limit would give it.
		{"… with GOMAXPROCS=32 in its environment", []string{"GOMAXPROCS=32"}},
	} {
		r := row{name: t.name, work: fmt.Sprintf("%d reloads", reloads)}
		r.idle, r.tenth, r.after, r.err = reloadGrowth(b, reloads, t.env...)
		rows = append(rows, r)
	}

	var t strings.Builder
	fmt.Fprintf(&t, "RssAnon before and after. `bench/floor -collect %d` does nothing but run %d garbage collections, each returning freed memory to the system as tini-hot does after a reload (median of 3 runs by growth); "+
		"tini-hot is read 1 s after it serves, then after back-to-back `tini-hot reload`s, a tenth of them and all of them, each time 1 s after the last drain has ended. "+
		"The floor shows the Go runtime's step at its first collections (the structures its collector keeps for each size class in use); what grows after the first tenth would go on growing with the work; "+
		"with GOMAXPROCS=32 the Go runtime makes 32 processors, as it would on a node of 32 CPUs for a pod with no CPU limit (tini-hot runs its own code on one, two while it subscribes to signals; the application keeps the variable).\n\n", floorCollections, floorCollections)
	t.WriteString("| program | work | RssAnon before | after a tenth of the work | after all of it | growth | of which in the last nine tenths |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		name := r.name
		if r.err != nil {
			name += " (error: " + r.err.Error() + ")"
		}
		fmt.Fprintf(&t, "| %s | %s | %d KiB | %d KiB | %d KiB | %+d KiB | %+d KiB |\n", name, r.work, r.idle, r.tenth, r.after, r.after-r.idle, r.after-r.tenth)
	}
	return t.String()
}

// floorGrowth runs `path -collect N` 3 times and returns the run of
// median growth.
func floorGrowth(path string) (idle, tenth, after int, err error) {
	type run struct{ idle, tenth, after int }
	var runs []run
	for range 3 {
		out, err := exec.Command(path, "-collect", fmt.Sprint(floorCollections)).Output()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s -collect: %v", path, err)
		}
		var r run
		if _, err := fmt.Sscan(string(out), &r.idle, &r.tenth, &r.after); err != nil {
			return 0, 0, 0, fmt.Errorf("%s -collect printed %q", path, out)
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(x, y run) int { return (x.after - x.idle) - (y.after - y.idle) })
	return runs[1].idle, runs[1].tenth, runs[1].after, nil
}

// reloadGrowth reads one tini-hot's RssAnon idle, after n/10 reloads and
// after n; env is added to its environment (and its application's).
func reloadGrowth(b bins, n int, env ...string) (idle, tenth, after int, err error) {
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	srv, err := startTiniHot("demo", env...)(b, freeAddr(), dir)
	if srv != nil {
		defer srv.stop()
	}
	if err != nil {
		return 0, 0, 0, err
	}
	pid := srv.(*tiniHot).p.pid()
	time.Sleep(time.Second)
	idle = statusKiB(pid, "RssAnon")
	// reloads runs them, then reads RssAnon once the last drain has
	// ended with the old generation's exit, and the memory has been
	// given back right after.
	reloads := func(from, to int) (int, error) {
		for i := from; i < to; i++ {
			if err := srv.upgrade(); err != nil {
				return 0, fmt.Errorf("reload %d: %w", i+1, err)
			}
		}
		if err := until(30*time.Second, "the last drain to end", func() bool { return len(children(pid)) == 1 }); err != nil {
			return 0, err
		}
		time.Sleep(time.Second)
		return statusKiB(pid, "RssAnon"), nil
	}
	if tenth, err = reloads(0, n/10); err != nil {
		return idle, 0, 0, err
	}
	after, err = reloads(n/10, n)
	return idle, tenth, after, err
}
