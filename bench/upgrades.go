package main

import (
	"fmt"
	"os"
	"slices"
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

// upgradeTable runs every method with and without upgrades, o.rounds
// times in turn, and renders the table of the sums over the rounds; it
// returns the first round's runs with upgrades for the charts.
func upgradeTable(b bins, o options) (string, []runResult) {
	type total struct {
		requests, ok, baseOK int
		kinds                map[string]int
		during               []time.Duration
		p99s                 []time.Duration // of each round
		base                 []time.Duration // all requests of the runs without upgrades
		err                  error
	}
	totals := make([]total, len(methods))
	var first []runResult
	for round := range o.rounds {
		for i, m := range methods {
			base := runMethod(b, m, o, 0)
			r := runMethod(b, m, o, o.reloads)
			if round == 0 {
				first = append(first, r)
			}
			tt := &totals[i]
			if tt.kinds == nil {
				tt.kinds = map[string]int{}
			}
			tt.requests += len(r.samples)
			tt.ok += r.ok()
			tt.baseOK += base.ok()
			for _, s := range base.samples {
				tt.base = append(tt.base, s.took)
			}
			for _, s := range r.samples {
				if s.fail != "" {
					tt.kinds[s.fail]++
				}
			}
			during := r.duringUpgrades()
			tt.during = append(tt.during, during...)
			tt.p99s = append(tt.p99s, percentile(during, 99))
			tt.err = firstErr(tt.err, r.err, base.err)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%d fresh-connection and %d keep-alive clients, %v per run, %d upgrades per run evenly spaced; %d rounds, in each of which every method runs once without upgrades and once with them, in turn: "+
		"the figures are sums over the rounds. Latency is that of the requests that began during an upgrade or in the 250 ms after it, over all rounds, and the p99 of each round (lowest–highest); "+
		"beside it, the p99 of every request of the same method's runs without upgrades, and the throughput relative to those runs.\n\n",
		o.clients, o.clients, o.duration, o.reloads, o.rounds)
	t.WriteString("| method | requests | failed | refused | reset | EOF | other | p50 during upgrades | p99 during upgrades | p99 of each round | p99 without upgrades | throughput vs no upgrades |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, m := range methods {
		tt := totals[i]
		ratio := "n/a"
		if tt.baseOK > 0 {
			ratio = fmt.Sprintf("%.2f", float64(tt.ok)/float64(tt.baseOK))
		}
		name := m.name
		if tt.err != nil {
			name += " (error: " + strings.ReplaceAll(tt.err.Error(), "|", "/") + ")"
		}
		fmt.Fprintf(&t, "| %s | %d | %d | %d | %d | %d | %d | %s | %s | %s–%s | %s | %s |\n", name, tt.requests, tt.requests-tt.ok,
			tt.kinds["refused"], tt.kinds["reset"], tt.kinds["EOF"], tt.kinds["other"],
			ms(percentile(tt.during, 50)), ms(percentile(tt.during, 99)),
			strings.TrimSuffix(ms(slices.Min(tt.p99s)), " ms"), ms(slices.Max(tt.p99s)), ms(percentile(tt.base, 99)), ratio)
	}
	t.WriteString("\nMethods:\n\n")
	for _, m := range methods {
		fmt.Fprintf(&t, "- **%s**: %s\n", m.name, m.about)
	}
	return t.String(), first
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
