package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk runs wrk against url for d and returns requests per second.
func wrk(url string, d time.Duration) (float64, error) {
	out, err := exec.Command("wrk", "-t2", "-c32", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk: no rate in %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// dataPathTable compares the demo bound alone with the demo behind
// tini-hot -l, steered (the default) and with --shared-sockets,
// interleaved, 3 times each.
func dataPathTable(b bins, d time.Duration) string {
	if _, err := exec.LookPath("wrk"); err != nil {
		return "wrk is not installed (Debian package wrk): no data-path figures.\n"
	}
	kinds := []struct {
		name  string
		flags []string // nil: alone
	}{
		{"demo alone", nil},
		{"behind tini-hot, steered", []string{}},
		{"behind tini-hot, --shared-sockets", []string{"--shared-sockets"}},
	}
	rates := make([][]float64, len(kinds))
	var errs []string
	for range 3 {
		for k, kind := range kinds {
			addr := freeAddr()
			var stop func()
			if kind.flags != nil {
				dir, _ := os.MkdirTemp("", "tini-hot-bench-")
				srv, err := startTiniHotWith("demo", kind.flags)(b, addr, dir)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				stop = func() { srv.stop(); os.RemoveAll(dir) }
			} else {
				p, err := start([]string{"ADDR=" + addr}, b.demo)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				if err := until(10*time.Second, "the demo", func() bool { _, err := answer("http://" + addr + "/"); return err == nil }); err != nil {
					errs = append(errs, err.Error())
				}
				stop = p.stop
			}
			rate, err := wrk("http://"+addr+"/", d)
			stop()
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			rates[k] = append(rates[k], rate)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "`wrk -t2 -c32 -d%v` against the demo, bound by itself and behind `tini-hot -l`, steered (a socket per generation, a classic BPF program choosing the serving one: docs/STEERING.md) and with `--shared-sockets`, interleaved, 3 runs each. tini-hot holds the sockets and is not on the data path: the ratios show only the machine's noise.\n\n", d)
	t.WriteString("| run |")
	for _, kind := range kinds {
		fmt.Fprintf(&t, " %s (req/s) |", kind.name)
	}
	t.WriteString("\n|---|" + strings.Repeat("---:|", len(kinds)) + "\n")
	for i := range 3 {
		fmt.Fprintf(&t, "| %d |", i+1)
		for k := range kinds {
			fmt.Fprintf(&t, " %s |", at(rates[k], i))
		}
		t.WriteString("\n")
	}
	t.WriteString("| mean |")
	for k := range kinds {
		fmt.Fprintf(&t, " %.0f |", mean(rates[k]))
	}
	fmt.Fprintf(&t, "\n\nRatio behind/alone: steered **%.3f**, shared **%.3f**\n", mean(rates[1])/mean(rates[0]), mean(rates[2])/mean(rates[0]))
	for _, e := range errs {
		fmt.Fprintf(&t, "\nerror: %s\n", e)
	}
	return t.String()
}

func at(xs []float64, i int) string {
	if i >= len(xs) {
		return "-"
	}
	return fmt.Sprintf("%.0f", xs[i])
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
