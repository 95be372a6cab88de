package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// runResult is one method's run under load.
type runResult struct {
	method   string
	samples  []sample
	dur      time.Duration
	upgrades []window // when each upgrade ran, since the load began
	err      error
}

type window struct{ from, to time.Duration }

// ok counts the samples that succeeded.
func (r runResult) ok() int {
	n := 0
	for _, s := range r.samples {
		if s.fail == "" {
			n++
		}
	}
	return n
}

// runMethod starts m's server, loads it for dur and upgrades it n times,
// evenly spaced.
func runMethod(b bins, m method, o options, n int) runResult {
	r := runResult{method: m.name, dur: o.duration}
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	srv, err := m.start(b, addr, dir)
	if err != nil {
		r.err = err
		if srv != nil {
			srv.stop()
		}
		return r
	}
	l := startLoad("http://"+addr+"/", o.clients, o.clients)
	every := o.duration / time.Duration(n+1)
	for i := 1; i <= n; i++ {
		time.Sleep(time.Until(l.start.Add(time.Duration(i) * every)))
		from := time.Since(l.start)
		if err := srv.upgrade(); err != nil && r.err == nil {
			r.err = fmt.Errorf("upgrade %d: %w", i, err)
		}
		r.upgrades = append(r.upgrades, window{from, time.Since(l.start)})
	}
	time.Sleep(time.Until(l.start.Add(o.duration)))
	r.samples = l.finish()
	srv.stop()
	return r
}

// duringUpgrades is the latency of the requests that began during an
// upgrade or in the 250 ms after it.
func (r runResult) duringUpgrades() []time.Duration {
	var out []time.Duration
	for _, s := range r.samples {
		for _, w := range r.upgrades {
			if s.at >= w.from && s.at <= w.to+250*time.Millisecond {
				out = append(out, s.took)
				break
			}
		}
	}
	return out
}

// upgradeTable runs every method with and without upgrades and renders
// the table; it returns the runs with upgrades for the charts.
func upgradeTable(b bins, o options) (string, []runResult) {
	var t strings.Builder
	fmt.Fprintf(&t, "%d fresh-connection and %d keep-alive clients, %v per run, %d upgrades per run evenly spaced; "+
		"latency of the requests that began during an upgrade or in the 250 ms after it; throughput relative to the same method's run without upgrades.\n\n",
		o.clients, o.clients, o.duration, o.reloads)
	t.WriteString("| method | requests | failed | refused | reset | EOF | other | p50 during upgrades | p99 during upgrades | throughput vs no upgrades |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var runs []runResult
	for _, m := range methods {
		base := runMethod(b, m, o, 0)
		r := runMethod(b, m, o, o.reloads)
		runs = append(runs, r)
		kinds := map[string]int{}
		for _, s := range r.samples {
			if s.fail != "" {
				kinds[s.fail]++
			}
		}
		failed := len(r.samples) - r.ok()
		during := r.duringUpgrades()
		ratio := "n/a"
		if base.ok() > 0 {
			ratio = fmt.Sprintf("%.2f", float64(r.ok())/float64(base.ok()))
		}
		name := m.name
		if err := firstErr(r.err, base.err); err != nil {
			name += " (error: " + strings.ReplaceAll(err.Error(), "|", "/") + ")"
		}
		fmt.Fprintf(&t, "| %s | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", name, len(r.samples), failed,
			kinds["refused"], kinds["reset"], kinds["EOF"], kinds["other"],
			ms(percentile(during, 50)), ms(percentile(during, 99)), ratio)
	}
	t.WriteString("\nMethods:\n\n")
	for _, m := range methods {
		fmt.Fprintf(&t, "- **%s**: %s\n", m.name, m.about)
	}
	return t.String(), runs
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
