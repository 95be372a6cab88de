package main

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sample is one request: when it started (since the load began), how long
// it took, how it failed ("" when it did not) and whether its client keeps
// its connection alive.
type sample struct {
	at, took  time.Duration
	fail      string
	keepAlive bool
}

// load is HTTP clients hitting one URL until stopped: fresh ones open a
// connection per request, keep-alive ones reuse theirs.
type load struct {
	start   time.Time
	count   atomic.Int64 // requests so far
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []sample
}

func startLoad(url string, fresh, keepAlive int) *load {
	l := &load{start: time.Now(), stop: make(chan struct{})}
	run := func(c *http.Client, keepAlive bool) {
		defer l.wg.Done()
		var mine []sample
		defer func() {
			l.mu.Lock()
			l.samples = append(l.samples, mine...)
			l.mu.Unlock()
		}()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			t0 := time.Now()
			s := sample{at: t0.Sub(l.start), keepAlive: keepAlive}
			resp, err := c.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			s.took = time.Since(t0)
			l.count.Add(1)
			if err != nil {
				s.fail = classify(err)
			}
			mine = append(mine, s)
		}
	}
	for range fresh {
		l.wg.Add(1)
		go run(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, false)
	}
	for range keepAlive {
		l.wg.Add(1)
		go run(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}, true)
	}
	return l
}

// finish stops the clients and returns every sample, in start order.
func (l *load) finish() []sample {
	close(l.stop)
	l.wg.Wait()
	slices.SortFunc(l.samples, func(a, b sample) int { return int(a.at - b.at) })
	return l.samples
}

// classify names a failed request's kind: refused, reset, EOF or other.
func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "EOF"):
		return "EOF"
	}
	return "other"
}

// percentile is the p-th percentile (0-100) of ds, 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
