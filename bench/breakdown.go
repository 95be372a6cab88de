package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/upgrade"
)

// breakdownTable reloads the demo n times under tini-hot and splits each
// reload with tini-hot's own timestamps (status --json).
func breakdownTable(b bins, n int) string {
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	srv, err := startTiniHot("demo")(b, addr, dir)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	defer srv.stop()
	th := srv.(*tiniHot)
	l := startLoad("http://"+addr+"/", 2, 2)
	gens := map[int]upgrade.GenerationStatus{}
	collect := func() error {
		out, err := exec.Command(b.tiniHot, "status", "--json", "--control", th.control).Output()
		if err != nil {
			return err
		}
		var st upgrade.Status
		if err := json.Unmarshal(out, &st); err != nil {
			return err
		}
		for _, g := range st.Generations {
			gens[g.Number] = g
		}
		return nil
	}
	for i := 1; i <= n; i++ {
		if err := th.upgrade(); err != nil {
			return "error: " + err.Error() + "\n"
		}
		// status keeps the 16 last ended generations: collect often.
		if i%8 == 0 || i == n {
			// Let the last drains end first.
			_ = until(30*time.Second, "drains", func() bool { _ = collect(); g, ok := gens[i]; return ok && g.Ended != nil })
		}
	}
	samples := l.finish()
	failed := 0
	for _, s := range samples {
		if s.fail != "" {
			failed++
		}
	}
	var fork, ready, handover, drain []time.Duration
	for num := 2; num <= n+1; num++ {
		g, ok := gens[num]
		old, okOld := gens[num-1]
		if !ok || !okOld || g.Requested == nil || g.Ready == nil || old.DrainSignal == nil || old.Ended == nil {
			continue
		}
		fork = append(fork, g.Started.Sub(*g.Requested))
		ready = append(ready, g.Ready.Sub(g.Started))
		handover = append(handover, old.DrainSignal.Sub(*g.Ready))
		drain = append(drain, old.Ended.Sub(*old.DrainSignal))
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%d reloads (`tini-hot reload`) of the demo under load (%d requests, %d failed), from tini-hot's own timestamps in `status --json`: "+
		"the request's arrival, the fork, READY=1's arrival on the notify socket, the drain signal, the old generation's exit. %d reloads measured.\n\n",
		n, len(samples), failed, len(fork))
	t.WriteString("| step | whose | median | p99 |\n|---|---|---:|---:|\n")
	for _, row := range []struct {
		step, whose string
		ds          []time.Duration
	}{
		{"request → fork", "tini-hot", fork},
		{"fork → READY", "tini-hot's re-exec (it sets LISTEN_PID), then the application", ready},
		{"READY → drain signal", "tini-hot", handover},
		{"drain signal → exit", "the old generation", drain},
	} {
		fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", row.step, row.whose, us(percentile(row.ds, 50)), us(percentile(row.ds, 99)))
	}
	return t.String()
}

// us formats d in microseconds, or milliseconds from 10 ms on.
func us(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return ms(d)
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}
