package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScrapeFlood: 200 clients scraping /metrics as fast as they can, each
// on a fresh connection (hey -c 200), never make a liveness probe miss its
// 900 ms: scrapes within a second share one rendering. aa4f58b rendered
// each (a status, /proc and the cgroup read), ran at 50-100% of a CPU,
// and failed 2-6 of 40 probes in the attack run.
func TestScrapeFlood(t *testing.T) {
	metricsAddr := freeAddr(t)
	p, _ := startDemo(t, mode{"pid1", true}, "--metrics", metricsAddr)
	pid := p.initPid()
	url := "http://" + metricsAddr + "/metrics"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapes, failed atomic.Int64
	for range 200 {
		wg.Go(func() {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				scrapes.Add(1)
			}
		})
	}
	waitFor(t, "the flood to be answered", func() (int64, bool) { return scrapes.Load(), scrapes.Load() >= 200 })
	cpu, start := cpuSeconds(t, pid), time.Now()
	var probeFails []string
	var slowest time.Duration
	for i := range 40 {
		out, code, took := p.probe("--liveness")
		slowest = max(slowest, took)
		if code != 0 {
			probeFails = append(probeFails, fmt.Sprintf("probe %d: %d %q after %v", i, code, out, took.Round(time.Millisecond)))
		}
		time.Sleep(100 * time.Millisecond) // a probe period, shortened: not a wait for an event
	}
	elapsed, used := time.Since(start), cpuSeconds(t, pid)-cpu
	close(stop)
	wg.Wait()
	t.Logf("flood: %d scrapes answered, %d failed; tini-hot used %.2fs of CPU in %v (%.0f%% of a CPU); 40 liveness probes, %d failed, slowest %v",
		scrapes.Load(), failed.Load(), used, elapsed.Round(time.Millisecond), used/elapsed.Seconds()*100, len(probeFails), slowest.Round(time.Millisecond))
	if len(probeFails) > 0 {
		t.Fatalf("liveness failed under a scrape flood:\n%s", strings.Join(probeFails, "\n"))
	}
}

// TestSlowlorisScrapes: 8 connections to /metrics that never send, each
// reopened as soon as it is dropped, never make a scrape wait: aa4f58b
// served 8 connections at a time, each read for up to 10 s, so every
// scrape timed out meanwhile.
func TestSlowlorisScrapes(t *testing.T) {
	metricsAddr := freeAddr(t)
	startDemo(t, mode{"pid1", true}, "--metrics", metricsAddr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				c, err := net.Dial("tcp", metricsAddr)
				if err != nil {
					return
				}
				opened.Add(1)
				dropped := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, c); close(dropped) }()
				select {
				case <-dropped:
					c.Close()
				case <-stop:
					c.Close()
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "8 idle connections", func() (int64, bool) { return opened.Load(), opened.Load() >= 8 })
	client := &http.Client{Timeout: 2 * time.Second}
	var slowest time.Duration
	for i := range 12 {
		start := time.Now()
		resp, err := client.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %d with 8 idle connections open: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowest = max(slowest, time.Since(start))
		time.Sleep(250 * time.Millisecond) // spread over 3 s: not a wait for an event
	}
	t.Logf("12 scrapes among 8 idle connections (%d opened): slowest %v", opened.Load(), slowest.Round(time.Millisecond))
}
