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
// tini-hot -l, interleaved, 3 times each.
func dataPathTable(b bins, d time.Duration) string {
	if _, err := exec.LookPath("wrk"); err != nil {
		return "wrk is not installed (Debian package wrk): no data-path figures.\n"
	}
	var alone, behind []float64
	var errs []string
	for range 3 {
		for _, behindTiniHot := range []bool{false, true} {
			addr := freeAddr()
			var stop func()
			if behindTiniHot {
				dir, _ := os.MkdirTemp("", "tini-hot-bench-")
				srv, err := startTiniHot("demo")(b, addr, dir)
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
			if behindTiniHot {
				behind = append(behind, rate)
			} else {
				alone = append(alone, rate)
			}
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "`wrk -t2 -c32 -d%v` against the demo, bound by itself and behind `tini-hot -l`, interleaved, 3 runs each. tini-hot holds the socket and is not on the data path: the ratio shows only the machine's noise.\n\n", d)
	t.WriteString("| run | demo alone (req/s) | behind tini-hot (req/s) |\n|---|---:|---:|\n")
	for i := range max(len(alone), len(behind)) {
		fmt.Fprintf(&t, "| %d | %s | %s |\n", i+1, at(alone, i), at(behind, i))
	}
	fmt.Fprintf(&t, "| mean | %.0f | %.0f |\n\nRatio behind/alone: **%.3f**\n", mean(alone), mean(behind), mean(behind)/mean(alone))
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
