package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// goroutines reads go_goroutines from a tini-hot's /metrics.
func goroutines(metricsAddr string) int {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

func countFds(pid int) int {
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(e)
}

// warmUp is how many reloads the soak counts as warming up: the Go
// runtime's first garbage collections set up its working memory.
const warmUp = 100

// kib is a KiB figure, or "-" for one not read.
func kib(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// soakTable runs 3 tini-hot instances in parallel, each upgraded n times
// under load.
func soakTable(b bins, n, minRequests, clients int) string {
	type inst struct {
		srv                        *tiniHot
		url, metrics               string
		anon0, fds0, gor0          int
		anon1, fds1, gor1, reloads int
		// RssAnon after the first warmUp reloads, and 1,000 after.
		anonWarm, anon1000 int
		err                error
		samples            []sample
	}
	insts := make([]*inst, 3)
	for i := range insts {
		dir, err := os.MkdirTemp("", "tini-hot-bench-")
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		defer os.RemoveAll(dir)
		addr, metrics := freeAddr(), freeAddr()
		control := dir + "/control.sock"
		p, err := start(nil, b.tiniHot, "-l", "tcp://"+addr, "--ready", "notify", "--control", control, "--metrics", metrics, "--", b.demo)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		in := &inst{srv: &tiniHot{p: p, control: control, bin: b.tiniHot}, url: "http://" + addr + "/", metrics: metrics}
		insts[i] = in
		defer in.srv.stop()
		if err := until(10*time.Second, "tini-hot to serve", func() bool { _, err := answer(in.url); return err == nil }); err != nil {
			return "error: " + err.Error() + "\n"
		}
		time.Sleep(time.Second) // as the memory table reads it: tini-hot's start is over
		in.anon0, in.fds0, in.gor0 = statusKiB(p.pid(), "RssAnon"), countFds(p.pid()), goroutines(metrics)
	}
	start := time.Now()
	var wg sync.WaitGroup
	loads := make([]*load, len(insts))
	requests := func() int64 {
		var sum int64
		for _, l := range loads {
			sum += l.count.Load()
		}
		return sum
	}
	for i, in := range insts {
		loads[i] = startLoad(in.url, clients, clients)
	}
	for _, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least n reloads each, and on until the instances have
			// served minRequests between them.
			for in.reloads < n || requests() < int64(minRequests) {
				if err := in.srv.upgrade(); err != nil {
					in.err = err
					break
				}
				in.reloads++
				switch in.reloads {
				case warmUp:
					in.anonWarm = statusKiB(in.srv.p.pid(), "RssAnon")
				case warmUp + 1000:
					in.anon1000 = statusKiB(in.srv.p.pid(), "RssAnon")
				}
			}
		}()
	}
	wg.Wait()
	for i, in := range insts {
		in.samples = loads[i].finish()
	}
	took := time.Since(start)
	// Let the last drains end, then the figures after.
	time.Sleep(2 * time.Second)
	var t strings.Builder
	total, failed, reloads := 0, 0, 0
	kinds := map[string]int{}
	for _, in := range insts {
		pid := in.srv.p.pid()
		in.anon1, in.fds1, in.gor1 = statusKiB(pid, "RssAnon"), countFds(pid), goroutines(in.metrics)
		total += len(in.samples)
		reloads += in.reloads
		for _, s := range in.samples {
			if s.fail != "" {
				failed++
				kinds[s.fail]++
			}
		}
	}
	fmt.Fprintf(&t, "3 tini-hot instances in parallel, each with the demo under %d fresh and %d keep-alive clients, each upgraded back to back with `tini-hot reload`, at least %d times and until %d requests were served; %v in all.\n\n",
		clients, clients, n, minRequests, took.Round(time.Second))
	fmt.Fprintf(&t, "**%d requests, %d failed** (refused %d, reset %d, EOF %d, other %d); **%d reloads**.\n\n", total, failed, kinds["refused"], kinds["reset"], kinds["EOF"], kinds["other"], reloads)
	fmt.Fprintf(&t, "RssAnon is read idle (1 s after it serves, before any load), after the first %d reloads, 1,000 reloads later, and at the end (- when the run was shorter).\n\n", warmUp)
	fmt.Fprintf(&t, "| instance | reloads | requests | failed | RssAnon idle → %d reloads → %d → end | fds before → after | goroutines before → after |\n|---|---:|---:|---:|---|---|---|\n", warmUp, warmUp+1000)
	for i, in := range insts {
		f := 0
		for _, s := range in.samples {
			if s.fail != "" {
				f++
			}
		}
		name := strconv.Itoa(i + 1)
		if in.err != nil {
			name += " (error: " + in.err.Error() + ")"
		}
		fmt.Fprintf(&t, "| %s | %d | %d | %d | %d → %s → %s → %d KiB | %d → %d | %d → %d |\n", name, in.reloads, len(in.samples), f, in.anon0, kib(in.anonWarm), kib(in.anon1000), in.anon1, in.fds0, in.fds1, in.gor0, in.gor1)
	}
	return t.String()
}
