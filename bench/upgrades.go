package main

import (
	"fmt"
	"math"
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

// duringUpgrades is the requests that began during an upgrade or in the
// 250 ms after it, each with its start counted from the upgrade's.
func (r runResult) duringUpgrades() []sample {
	var out []sample
	for _, s := range r.samples {
		for _, w := range r.upgrades {
			if s.at >= w.from && s.at <= w.to+250*time.Millisecond {
				s.at -= w.from
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// upgradeStart is the part of an upgrade window the kinds table tells
// apart: the handover itself (tini-hot's takes about 17 ms from the
// request to the old generation's exit; a restart's hole, a few ms).
const upgradeStart = 20 * time.Millisecond

// latencies is how long each of samples took, for those whose client kind
// keep takes (keep-alive or fresh) and that began in [from, to).
func latencies(samples []sample, keep func(keepAlive bool) bool, from, to time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range samples {
		if keep(s.keepAlive) && s.at >= from && s.at < to {
			out = append(out, s.took)
		}
	}
	return out
}

// slower is the share of ds over limit, as "P% (N of M)".
func slower(ds []time.Duration, limit time.Duration) string {
	n := 0
	for _, d := range ds {
		if d > limit {
			n++
		}
	}
	if len(ds) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f%% (%d of %d)", 100*float64(n)/float64(len(ds)), n, len(ds))
}

// upgradeTable runs every method with and without upgrades, o.rounds
// times in turn, and renders the table of the sums over the rounds; it
// returns the first round's runs with upgrades for the charts.
func upgradeTable(b bins, o options) (string, []runResult) {
	type total struct {
		requests, ok, baseOK int
		kinds                map[string]int
		during               []sample        // since their upgrade began
		p99s                 []time.Duration // of each round
		base                 []sample        // all requests of the runs without upgrades
		err                  error
	}
	totals := make([]total, len(methods))
	first := make([]runResult, len(methods))
	for round := range o.rounds {
		// Each round starts one method later, so that no method always
		// runs first, after the build or after the previous round.
		for k := range methods {
			i := (k + round) % len(methods)
			m := methods[i]
			base := runMethod(b, m, o, 0)
			r := runMethod(b, m, o, o.reloads)
			if round == 0 {
				first[i] = r
			}
			tt := &totals[i]
			if tt.kinds == nil {
				tt.kinds = map[string]int{}
			}
			tt.requests += len(r.samples)
			tt.ok += r.ok()
			tt.baseOK += base.ok()
			tt.base = append(tt.base, base.samples...)
			for _, s := range r.samples {
				if s.fail != "" {
					tt.kinds[s.fail]++
				}
			}
			during := r.duringUpgrades()
			tt.during = append(tt.during, during...)
			tt.p99s = append(tt.p99s, percentile(latencies(during, anyKind, 0, forever), 99))
			tt.err = firstErr(tt.err, r.err, base.err)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%d fresh-connection and %d keep-alive clients, %v per run, %d upgrades per run evenly spaced; %d rounds, in each of which every method runs once without upgrades and once with them, in turn, each round starting one method later: "+
		"the figures are sums over the rounds. Latency is that of the requests that began during an upgrade or in the 250 ms after it, over all rounds, and the p99 of each round (lowest–highest); "+
		"beside it, the p99 of every request of the same method's runs without upgrades, and the throughput relative to those runs.\n\n",
		o.clients, o.clients, o.duration, o.reloads, o.rounds)
	t.WriteString("| method | requests | failed | refused | reset | EOF | other | p50 during upgrades | p99 during upgrades | p99 of each round | p99 without upgrades | throughput vs no upgrades |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	// Every request of a method during upgrades, and without them, and
	// the p99 of those without: each table uses them.
	during, base, baseP99 := make([][]time.Duration, len(methods)), make([][]time.Duration, len(methods)), make([]time.Duration, len(methods))
	for i, tt := range totals {
		during[i], base[i] = latencies(tt.during, anyKind, 0, forever), latencies(tt.base, anyKind, 0, forever)
		baseP99[i] = percentile(base[i], 99)
	}
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
			ms(percentile(during[i], 50)), ms(percentile(during[i], 99)),
			strings.TrimSuffix(ms(slices.Min(tt.p99s)), " ms"), ms(slices.Max(tt.p99s)), ms(baseP99[i]), ratio)
	}
	fmt.Fprintf(&t, "\nBy client kind, the same requests. A p99 over both kinds mixes two populations: the fresh-connection requests, about a third of all, are the slow ones, "+
		"so that p99 falls where the fresh requests' latencies climb steeply, and moves with small changes in the mix. "+
		"The last two columns count the requests slower than the method's p99 without upgrades (1%% of the requests without upgrades, by definition), "+
		"among those that began in the first %v of an upgrade, and among the rest of the window: a hole in service shows as a share well over 1%% in the first %v.\n\n",
		upgradeStart, upgradeStart)
	t.WriteString("| method | fresh: p99 during upgrades | fresh: p99 without | keep-alive: p99 during upgrades | keep-alive: p99 without | over the p99 without upgrades, first " + upgradeStart.String() + " of an upgrade | over it, rest of the window |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for i, m := range methods {
		tt := totals[i]
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s | %s |\n", m.name,
			ms(percentile(latencies(tt.during, freshKind, 0, forever), 99)), ms(percentile(latencies(tt.base, freshKind, 0, forever), 99)),
			ms(percentile(latencies(tt.during, keptKind, 0, forever), 99)), ms(percentile(latencies(tt.base, keptKind, 0, forever), 99)),
			slower(latencies(tt.during, anyKind, 0, upgradeStart), baseP99[i]), slower(latencies(tt.during, anyKind, upgradeStart, forever), baseP99[i]))
	}
	t.WriteString("\nMethods:\n\n")
	for _, m := range methods {
		fmt.Fprintf(&t, "- **%s**: %s\n", m.name, m.about)
	}
	return t.String(), first
}

// Client kinds for latencies.
var (
	anyKind   = func(bool) bool { return true }
	freshKind = func(keepAlive bool) bool { return !keepAlive }
	keptKind  = func(keepAlive bool) bool { return keepAlive }
)

// forever is latencies' end of time.
const forever = time.Duration(math.MaxInt64)

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
