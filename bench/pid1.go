package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// initProg is a container init: tini-hot or a peer, with how it is told
// the command to run (pre comes before the command's argv).
type initProg struct {
	name, path string
	pre        []string // as PID 1
	preSub     []string // not PID 1: tini needs -s to reap
}

func inits(b bins) []initProg {
	out := []initProg{{"tini-hot", b.tiniHot, []string{"--"}, []string{"--"}}}
	for _, p := range []initProg{
		{"tini", "tini", []string{"--"}, []string{"-s", "--"}},
		{"dumb-init", "dumb-init", nil, nil},
		{"catatonit", "catatonit", []string{"--"}, []string{"--"}},
	} {
		if path, err := exec.LookPath(p.path); err == nil {
			p.path = path
			out = append(out, p)
		}
	}
	return out
}

// asPID1 runs argv under init as PID 1 of a new PID namespace and returns
// the unshare process and the init's host pid.
func asPID1(in initProg, env []string, argv ...string) (*proc, int, error) {
	all := append(append([]string{"unshare", "-p", "-f", "--kill-child", "--mount-proc", in.path}, in.pre...), argv...)
	p, err := start(env, all...)
	if err != nil {
		return nil, 0, err
	}
	var pid int
	err = until(10*time.Second, in.name+" as PID 1", func() bool {
		if kids := children(p.pid()); len(kids) == 1 {
			pid = kids[0]
			// …and its own child, the command, has started.
			return len(children(pid)) > 0
		}
		return false
	})
	return p, pid, err
}

// wakeups counts pid's context switches, all threads.
func wakeups(pid int) int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	n := 0
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "ctxt_switches:") {
				v, _ := strconv.Atoi(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]))
				n += v
			}
		}
	}
	return n
}

// wakeupSettle is when, after an init's start, its idle wake-ups begin
// to be counted.
const wakeupSettle = 5 * time.Second

// pid1Table measures every init side by side.
func pid1Table(b bins, o options) string {
	ins := inits(b)
	type row struct {
		rss, anon, size, wake int
		startup, made, reaped time.Duration
		err                   error
	}
	rows := make([]row, len(ins))
	var floorErr error
	// Idle figures, all inits at once, over the same window.
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &rows[i]
			if st, err := os.Stat(in.path); err == nil {
				r.size = int(st.Size())
			}
			p, pid, err := asPID1(in, nil, "sleep", "1000")
			if err != nil {
				r.err = err
				if p != nil {
					p.stop()
				}
				return
			}
			defer p.stop()
			time.Sleep(time.Second)
			r.rss, r.anon = statusKiB(pid, "VmRSS"), statusKiB(pid, "RssAnon")
			// Wake-ups once start-up is over (tini-hot's default
			// readiness delay is 2 s; the Go runtime's first
			// scavenging follows its start).
			time.Sleep(wakeupSettle - time.Second)
			w0 := wakeups(pid)
			time.Sleep(o.wakeups)
			r.wake = wakeups(pid) - w0
		}()
	}
	wg.Wait()
	// Start-up, interleaved rounds of 10, the floor programs with the
	// inits.
	floors := floorProgs(b)
	floorTimes := make([]time.Duration, len(floors))
	startup := func(in initProg) (time.Duration, error) {
		t0 := time.Now()
		for range 10 {
			cmd := exec.Command(in.path, append(append([]string{}, in.preSub...), "/bin/true")...)
			if err := cmd.Run(); err != nil {
				return 0, fmt.Errorf("%s /bin/true: %v", in.name, err)
			}
		}
		return time.Since(t0), nil
	}
	for round := 0; round < o.startups/10; round++ {
		for i, in := range ins {
			d, err := startup(in)
			rows[i].startup += d
			rows[i].err = firstErr(rows[i].err, err)
		}
		for i, f := range floors {
			d, err := startup(f)
			floorTimes[i] += d
			floorErr = firstErr(floorErr, err)
		}
	}
	// Orphans, one init at a time.
	for i, in := range ins {
		rows[i].made, rows[i].reaped, rows[i].err = reapOrphans(in, o.orphans, rows[i].err)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Each init as PID 1 of a new PID namespace (unshare), running `sleep`; idle figures after 1 s, wake-ups (context switches, all threads) over %v from %v after the start; "+
		"start-up is `INIT -- /bin/true`, mean of %d runs interleaved in rounds of 10; orphans: %d background jobs of 100-job subshells that exit at once, timed from the release until none is left as a zombie.\n\n",
		o.wakeups, wakeupSettle, o.startups, o.orphans)
	t.WriteString("| init | idle VmRSS | idle RssAnon | binary | wake-ups | start-up | orphans made | all reaped |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, in := range ins {
		r := rows[i]
		name := in.name
		if r.err != nil {
			name += " (error: " + r.err.Error() + ")"
		}
		fmt.Fprintf(&t, "| %s | %d KiB | %d KiB | %d B | %d | %s | %s | %s |\n", name, r.rss, r.anon, r.size, r.wake,
			ms(r.startup/time.Duration(max(o.startups, 1))), ms(r.made), ms(r.reaped))
	}
	// The floor: what a Go init pays before any work of tini-hot's own.
	var tini time.Duration
	for i, in := range ins {
		if in.name == "tini" {
			tini = rows[i].startup
		}
	}
	t.WriteString("\nThe start-up floor of a Go init, from the same rounds: `bench/floor` forks and execs `/bin/true`, waits for it and exits, and does nothing else; " +
		"built with tini-hot's libraries linked (their initialisation runs), and then also subscribing, as tini-hot does before it starts the command, to the 17 signals it must not miss (reaper.New, every thread on one CPU meanwhile: affinity.Pin; tini-hot takes the 40 others 5 ms after the fork, which `/bin/true` does not wait for).\n\n")
	if floorErr != nil {
		fmt.Fprintf(&t, "(error: %v)\n\n", floorErr)
	}
	t.WriteString("| program | start-up | × tini |\n|---|---:|---:|\n")
	ratio := func(d time.Duration) string {
		if tini == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f", float64(d)/float64(tini))
	}
	line := func(name string, d time.Duration) {
		fmt.Fprintf(&t, "| %s | %s | %s |\n", name, ms(d/time.Duration(max(o.startups, 1))), ratio(d))
	}
	line("tini", tini)
	for i, f := range floors {
		line(f.name, floorTimes[i])
	}
	line("tini-hot", rows[0].startup)
	return t.String()
}

// floorProgs are the start-up floor programs, as inits that take the
// command's path.
func floorProgs(b bins) []initProg {
	return []initProg{
		{name: "Go: fork, exec, wait", path: b.floor},
		{name: "… with tini-hot's libraries linked", path: b.floorLibs},
		{name: "… and the signal subscriptions", path: b.floorLibs, preSub: []string{"-signals"}},
	}
}

// orphanScript makes N orphans (N/100 subshells of 100 background jobs
// that exit at once), between two waits on the fifo $GO.
const orphanScript = `
echo idle >> "$OUT"; read x < "$GO"
i=0
while [ $i -lt $((N/100)) ]; do
	( j=0; while [ $j -lt 100 ]; do : & j=$((j+1)); done )
	i=$((i+1))
done
echo done >> "$OUT"; read x < "$GO"
`

// reapOrphans times making and reaping n orphans under in as PID 1.
func reapOrphans(in initProg, n int, prev error) (made, reaped time.Duration, err error) {
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	out, fifo := filepath.Join(dir, "out"), filepath.Join(dir, "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return 0, 0, err
	}
	p, pid, err := asPID1(in, []string{"OUT=" + out, "GO=" + fifo, "N=" + strconv.Itoa(n)}, "sh", "-c", orphanScript)
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	has := func(word string) bool { b, _ := os.ReadFile(out); return strings.Contains(string(b), word) }
	release := func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
	}
	if err := until(10*time.Second, "idle", func() bool { return has("idle") }); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	release()
	if err := until(5*time.Minute, "orphans made", func() bool { return has("done") }); err != nil {
		return 0, 0, err
	}
	made = time.Since(t0)
	err = until(5*time.Minute, "orphans reaped", func() bool { return zombiesBelow(pid) == 0 })
	reaped = time.Since(t0)
	release()
	return made, reaped, firstErr(prev, err)
}

// zombiesBelow counts the zombie children of pid.
func zombiesBelow(pid int) int {
	n := 0
	for _, c := range children(pid) {
		if !alive(c) {
			n++
		}
	}
	return n
}
