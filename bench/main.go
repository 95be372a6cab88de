// Command bench measures tini-hot against what users do today and writes
// markdown tables and SVG charts:
//
//	go run ./bench -o docs/BENCHMARKS.md          # the full run
//	go run ./bench -short -o /tmp/b/BENCHMARKS.md # under 2 minutes
//
// Run it as root on an otherwise idle machine, from the repository's root;
// it needs unshare (util-linux), tini, dumb-init, catatonit, wrk and
// gunicorn (Debian packages of those names). Every number in the output comes from
// the run that wrote it; runs that failed say so in the table.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// options are the run's sizes.
type options struct {
	short                              bool
	duration                           time.Duration // per upgrade-method run
	reloads, clients                   int           // per upgrade-method run
	rounds                             int           // of the upgrade-method runs
	breakdown, soak, orphans, startups int
	probes                             int // ticks of deploy/k8s's probes in the memory table
	soakRequests                       int
	wakeups, wrk                       time.Duration
	only                               map[string]bool // tables to run; all when empty
}

// tables are the names -only takes, in the order of the document.
var tables = []string{"methods", "quic", "pid1", "breakdown", "datapath", "soak", "memory"}

func main() {
	var o options
	out := flag.String("o", "docs/BENCHMARKS.md", "write the tables to `FILE`, and the charts next to it")
	flag.BoolVar(&o.short, "short", false, "small sizes: under 2 minutes")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of each upgrade-method run")
	flag.IntVar(&o.reloads, "reloads", 10, "upgrades in each upgrade-method run")
	flag.IntVar(&o.clients, "clients", 4, "fresh-connection clients, and as many keep-alive ones")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the upgrade-method runs, every method in turn in each")
	flag.IntVar(&o.breakdown, "breakdown", 200, "reloads timed for the latency breakdown")
	flag.IntVar(&o.soak, "soak", 1000, "reloads of each of the 3 soak instances, at least")
	flag.IntVar(&o.soakRequests, "soak-requests", 1000000, "requests the soak serves, at least")
	flag.IntVar(&o.orphans, "orphans", 10000, "orphans each init reaps")
	flag.IntVar(&o.startups, "startups", 200, "start-ups timed per init")
	flag.IntVar(&o.probes, "probes", 120, "ticks of deploy/k8s's probes, sped up 4 times, in the memory table")
	flag.DurationVar(&o.wakeups, "wakeups", 10*time.Second, "window for counting idle wake-ups")
	flag.DurationVar(&o.wrk, "wrk", 5*time.Second, "length of each wrk run")
	only := flag.String("only", "", "run only these tables, comma-separated (`"+strings.Join(tables, ",")+"`), to try a change; the document then has only them")
	flag.Parse()
	o.only = map[string]bool{}
	for _, name := range strings.FieldsFunc(*only, func(r rune) bool { return r == ',' }) {
		if !slices.Contains(tables, name) {
			fmt.Fprintf(os.Stderr, "bench: -only: no table %q (tables: %s)\n", name, strings.Join(tables, ", "))
			os.Exit(2)
		}
		o.only[name] = true
	}
	if o.short {
		o.duration, o.reloads, o.clients, o.rounds = 3*time.Second, 3, 2, 1
		o.breakdown, o.soak, o.soakRequests, o.orphans, o.startups, o.probes = 20, 20, 10000, 1000, 30, 10
		o.wakeups, o.wrk = 2*time.Second, time.Second
	}
	if o.rounds < 1 || o.reloads < 1 || o.clients < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -reloads and -clients must be at least 1")
		os.Exit(2)
	}
	if err := run(o, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options, out string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the PID-1 figures use PID namespaces")
	}
	tmp, err := os.MkdirTemp("", "tini-hot-bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rev := commit() // what is built now; the run writes into the tree
	b, err := build(tmp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	began := time.Now()
	var doc strings.Builder
	step := func(name, title string, f func() string) {
		if len(o.only) > 0 && !o.only[name] {
			return
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s…\n", title)
		fmt.Fprintf(&doc, "## %s\n\n%s\n", title, f())
		fmt.Fprintf(os.Stderr, "bench: %s took %v\n", title, time.Since(t0).Round(time.Second))
	}
	var runs []runResult
	step("methods", "Upgrade methods under the same load", func() string {
		table, r := upgradeTable(b, o)
		runs = r
		return table
	})
	if runs != nil {
		rps, p99 := strings.TrimSuffix(out, ".md")+"-rps.svg", strings.TrimSuffix(out, ".md")+"-p99.svg"
		if err := charts(runs, rps, p99); err != nil {
			return err
		}
		fmt.Fprintf(&doc, "![requests per second over time](%s)\n\n![p99 latency over time](%s)\n\n", filepath.Base(rps), filepath.Base(p99))
	}
	step("quic", "QUIC connections across upgrades", func() string { return quicTable(b, o) })
	step("pid1", "PID-1 duties", func() string { return pid1Table(b, o) })
	step("breakdown", "Reload latency breakdown", func() string { return breakdownTable(b, o.breakdown) })
	step("datapath", "Data path", func() string { return dataPathTable(b, o.wrk) })
	step("soak", "Soak", func() string { return soakTable(b, o.soak, o.soakRequests, o.clients) })
	step("memory", "Memory across reloads and probes", func() string { return memoryTable(b, o.soak, o.probes) })

	head := fmt.Sprintf("# tini-hot benchmarks\n\nWritten by `go run ./bench%s -o %s` on %s, commit %s, in %v.\n\nMachine: %s.\n\n",
		map[bool]string{true: " -short", false: ""}[o.short], out, began.UTC().Format("2006-01-02 15:04 MST"), rev, time.Since(began).Round(time.Second), machine())
	return os.WriteFile(out, []byte(head+doc.String()), 0o644)
}

// commit names the checked-out commit, marked when the tree has changes.
func commit() string {
	c, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(c))
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		s += " (with uncommitted changes)"
	}
	return s
}

// machine describes the CPU, cores, memory and kernel.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(string(b))[1]
		var kb int
		fmt.Sscan(mem, &kb)
		mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%s, %d cores%s, Linux %s, %s", cpu, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)), runtime.Version())
}
