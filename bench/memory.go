package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tini-hot/tini-hot/upgrade"
)

// floorCollections is how many garbage collections the memory floor
// programs run: enough for the growth to stop (it stops after about 6,
// within the first tenth).
const floorCollections = 100

// probeTick is the pace of the probes in the memory table: deploy/k8s's
// readiness probe runs every 2 s, its liveness probe every 10 s; here
// they come 4 times as often, with a scrape every 8 ticks (16 s, sped up
// the same).
const probeTick = 500 * time.Millisecond

// readings are one program's RssAnon figures in KiB for the memory
// table; -1 where the program has none.
type readings struct {
	idle    int // before the work: 1 s after tini-hot serves
	settled int // tini-hot, idle still, once its release after activity has run
	tenth   int // after a tenth of the work
	after   int // after all of it
	high    int // the highest during the work
}

// memoryTable sets tini-hot's RssAnon growth across reloads, and under
// deploy/k8s's probes, beside the growth any Go program of the same
// libraries pays once its garbage collector has run: bench/floor
// -collect, without and with the libraries, median of 3 runs each. Each
// is also read after the first tenth of its work, which tells the Go
// runtime's one step at its first collections (the floor's) from a
// growth that would go on with the work.
func memoryTable(b bins, reloads, probes int) string {
	type row struct {
		name, work string
		r          readings
		err        error
	}
	var rows []row
	for _, f := range []struct{ name, path string }{
		{"Go program, nothing linked", b.floor},
		{"… with tini-hot's libraries linked", b.floorLibs},
	} {
		r := row{name: f.name, work: fmt.Sprintf("%d collections", floorCollections)}
		r.r, r.err = floorGrowth(f.path)
		rows = append(rows, r)
	}
	// The instances of tini-hot run side by side: each is read alone,
	// and most of the time is spent waiting for them to settle.
	th := []row{
		{name: "tini-hot, the demo, no load", work: fmt.Sprintf("%d reloads", reloads)},
		{name: "… with GOMAXPROCS=32 in its environment", work: fmt.Sprintf("%d reloads", reloads)},
		{name: "tini-hot, the demo, deploy/k8s's probes", work: fmt.Sprintf("%d readiness probes, %d liveness probes, %d scrapes", probes, (probes+4)/5, (probes+4)/8)},
	}
	var wg sync.WaitGroup
	wg.Go(func() { th[0].r, th[0].err = reloadGrowth(b, reloads) })
	// The Go runtime makes a processor per CPU: what a node of 32 CPUs
	// and a pod with no CPU limit would give it.
	wg.Go(func() { th[1].r, th[1].err = reloadGrowth(b, reloads, "GOMAXPROCS=32") })
	wg.Go(func() { th[2].r, th[2].err = probeGrowth(b, probes) })
	wg.Wait()
	rows = append(rows, th...)

	var t strings.Builder
	fmt.Fprintf(&t, "RssAnon before and after. `bench/floor -collect %d` does nothing but run %d garbage collections, each returning freed memory to the system as tini-hot does after a reload (median of 3 runs by growth). "+
		"tini-hot is read 1 s after it serves, again %v after it serves (it gives memory back %v after activity; it has run two collections once its first generation started, footprint.Trim), then after back-to-back `tini-hot reload`s, a tenth of them and all of them, each time 1 s after the last drain has ended; "+
		"or under deploy/k8s's readiness and liveness probes (`tini-hot probe`) and Prometheus scrapes, %d times as often (a readiness probe every %v, a liveness probe every 5th, a scrape every 8th), read %v after the last; the highest figure is sampled every 50 ms during the work. "+
		"The growth is counted from the first reading. "+
		"The floor shows the Go runtime's step at its first collections (the structures its collector keeps for each size class in use); what grows after the first tenth would go on growing with the work; "+
		"with GOMAXPROCS=32 the Go runtime makes 32 processors, as it would on a node of 32 CPUs for a pod with no CPU limit (tini-hot runs its own code on one; the application keeps the variable).\n\n",
		floorCollections, floorCollections, settled, upgrade.SettleAfter, int(2*time.Second/probeTick), probeTick, settled)
	t.WriteString("| program | work | RssAnon before | idle still, settled | after a tenth of the work | after all of it | growth | of which in the last nine tenths | highest during the work |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	kib := func(n int) string {
		if n < 0 {
			return "—"
		}
		return fmt.Sprintf("%d KiB", n)
	}
	for _, r := range rows {
		name := r.name
		if r.err != nil {
			name += " (error: " + r.err.Error() + ")"
		}
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s | %+d KiB | %+d KiB | %s |\n", name, r.work, kib(r.r.idle), kib(r.r.settled), kib(r.r.tenth), kib(r.r.after), r.r.after-r.r.idle, r.r.after-r.r.tenth, kib(r.r.high))
	}
	return t.String()
}

// settled is how long tini-hot is left alone before its RssAnon is read:
// its release after activity, and a second for it to finish.
const settled = upgrade.SettleAfter + time.Second

// highest samples pid's RssAnon every 50 ms until the returned function
// is called, which returns the highest figure seen.
func highest(pid int) func() int {
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		high := statusKiB(pid, "RssAnon")
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				high = max(high, statusKiB(pid, "RssAnon"))
			case <-stop:
				done <- max(high, statusKiB(pid, "RssAnon"))
				return
			}
		}
	}()
	return func() int { close(stop); return <-done }
}

// floorGrowth runs `path -collect N` 3 times and returns the run of
// median growth.
func floorGrowth(path string) (readings, error) {
	var runs []readings
	for range 3 {
		out, err := exec.Command(path, "-collect", fmt.Sprint(floorCollections)).Output()
		if err != nil {
			return readings{}, fmt.Errorf("%s -collect: %v", path, err)
		}
		r := readings{settled: -1, high: -1}
		if _, err := fmt.Sscan(string(out), &r.idle, &r.tenth, &r.after); err != nil {
			return readings{}, fmt.Errorf("%s -collect printed %q", path, out)
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(x, y readings) int { return (x.after - x.idle) - (y.after - y.idle) })
	return runs[1], nil
}

// memoryRun starts tini-hot serving the demo, with more flags and env
// added to its environment (and its application's), reads it idle (see
// idle), then runs work on it and stops it.
func memoryRun(b bins, flags, env []string, work func(th *tiniHot, r *readings) error) (r readings, err error) {
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	srv, err := startTiniHotWith("demo", flags, env...)(b, freeAddr(), dir)
	if srv != nil {
		defer srv.stop()
	}
	if err != nil {
		return r, err
	}
	th := srv.(*tiniHot)
	r.idle, r.settled = idle(th.p.pid())
	err = work(th, &r)
	return r, err
}

// idle reads pid's RssAnon 1 s after it serves, and again once settled.
func idle(pid int) (first, settledKiB int) {
	time.Sleep(time.Second)
	first = statusKiB(pid, "RssAnon")
	time.Sleep(settled - time.Second)
	return first, statusKiB(pid, "RssAnon")
}

// reloadGrowth reads one tini-hot's RssAnon 1 s after it serves, settled,
// after n/10 reloads and after n, and the highest during the reloads;
// env is added to its environment (and its application's).
func reloadGrowth(b bins, n int, env ...string) (readings, error) {
	return memoryRun(b, nil, env, func(th *tiniHot, r *readings) (err error) {
		pid := th.p.pid()
		stop := highest(pid)
		defer func() { r.high = stop() }()
		// reloads runs them, then reads RssAnon once the last drain has
		// ended with the old generation's exit, and the memory has been
		// given back right after.
		reloads := func(from, to int) (int, error) {
			for i := from; i < to; i++ {
				if err := th.upgrade(); err != nil {
					return 0, fmt.Errorf("reload %d: %w", i+1, err)
				}
			}
			if err := until(30*time.Second, "the last drain to end", func() bool { return len(children(pid)) == 1 }); err != nil {
				return 0, err
			}
			time.Sleep(time.Second)
			return statusKiB(pid, "RssAnon"), nil
		}
		if r.tenth, err = reloads(0, n/10); err != nil {
			return err
		}
		r.after, err = reloads(n/10, n)
		return err
	})
}

// probeGrowth reads one tini-hot's RssAnon, serving the demo with its
// metrics endpoint: 1 s after it serves and settled, then under n ticks
// of deploy/k8s's probes (see probeTick), settled after n/10 and after n,
// and the highest during the ticks.
func probeGrowth(b bins, n int) (readings, error) {
	metrics := freeAddr()
	return memoryRun(b, []string{"--metrics", metrics}, nil, func(th *tiniHot, r *readings) (err error) {
		pid := th.p.pid()
		ticks := func(from, to int) (int, error) {
			stop := highest(pid)
			defer func() { r.high = max(r.high, stop()) }()
			for i := from; i < to; i++ {
				next := time.Now().Add(probeTick)
				err := th.client("probe")
				if err == nil && i%5 == 0 {
					err = th.client("probe", "--liveness")
				}
				if err == nil && i%8 == 3 {
					_, err = answer("http://" + metrics + "/metrics")
				}
				if err != nil {
					return 0, err
				}
				time.Sleep(time.Until(next))
			}
			time.Sleep(settled)
			return statusKiB(pid, "RssAnon"), nil
		}
		if r.tenth, err = ticks(0, n/10); err != nil {
			return err
		}
		r.after, err = ticks(n/10, n)
		return err
	})
}
