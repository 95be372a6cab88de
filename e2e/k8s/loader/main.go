// Command loader is e2e/k8s's load generator. It runs in a pod of the
// cluster under test, so that the load reaches the Service's ClusterIP
// and the pods' IPs from inside the cluster, as clients do, on any
// cluster (kind's ClusterIPs are not reachable from the host).
//
//	loader -idle          the pod's process: waits for SIGTERM
//	loader -url URL       load URL until SIGTERM (or -stop), then print
//	                      the counts as one JSON line; "started" once the
//	                      URL has answered and the clients run
//	loader -stop          SIGTERM to every load of this container
//	loader -get URL       print the body of GET URL
//
// The load is 4 clients of each kind: fresh-connection GETs, keep-alive
// GETs, and keep-alive POSTs, which Go's client never sends again on its
// own (it re-sends a GET whose kept-alive connection closed under it,
// which would hide a failure).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is what a load prints at its end.
type Result struct {
	// Counts is client kind → outcome ("ok", or how it failed) → requests.
	Counts map[string]map[string]int `json:"counts"`
	// FirstMS and LastMS are when requests failed, in ms since the load
	// began; Seconds how long it ran.
	FirstMS int64   `json:"first_ms"`
	LastMS  int64   `json:"last_ms"`
	Seconds float64 `json:"seconds"`
}

func main() {
	idle := flag.Bool("idle", false, "wait for SIGTERM")
	url := flag.String("url", "", "load `URL` until SIGTERM")
	stop := flag.Bool("stop", false, "stop every load of this container")
	get := flag.String("get", "", "print the body of GET `URL`")
	flag.Parse()
	var err error
	switch {
	case *idle:
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		<-term
	case *url != "":
		err = load(*url)
	case *stop:
		err = stopLoads()
	case *get != "":
		err = fetch(*get)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loader:", err)
		os.Exit(1)
	}
}

func load(url string) error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	// The URL must answer before the load begins: kube-proxy programs a
	// new Service's endpoints up to a second after they are ready, and
	// rejects connections to it meanwhile.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", url, err)
		}
	}
	var (
		mu          sync.Mutex
		res         = Result{Counts: map[string]map[string]int{}}
		first, last time.Duration
		wg          sync.WaitGroup
		done        = make(chan struct{})
		start       = time.Now()
	)
	run := func(kind string, c *http.Client, post bool) {
		defer wg.Done()
		counts := map[string]int{}
		defer func() {
			mu.Lock()
			if res.Counts[kind] == nil {
				res.Counts[kind] = map[string]int{}
			}
			for k, n := range counts {
				res.Counts[kind][k] += n
			}
			mu.Unlock()
		}()
		for {
			select {
			case <-done:
				return
			default:
			}
			var resp *http.Response
			var err error
			if post {
				resp, err = c.Post(url, "text/plain", strings.NewReader("ping"))
			} else {
				resp, err = c.Get(url)
			}
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			k := classify(err)
			counts[k]++
			if k != "ok" {
				at := time.Since(start)
				mu.Lock()
				if first == 0 || at < first {
					first = at
				}
				last = max(last, at)
				mu.Unlock()
			}
		}
	}
	for _, k := range []struct {
		kind        string
		fresh, post bool
	}{{"fresh GET", true, false}, {"keep-alive GET", false, false}, {"keep-alive POST", false, true}} {
		for range 4 {
			wg.Add(1)
			tr := &http.Transport{DisableKeepAlives: k.fresh, MaxIdleConnsPerHost: 1}
			go run(k.kind, &http.Client{Timeout: 30 * time.Second, Transport: tr}, k.post)
		}
	}
	fmt.Println("started")
	<-term
	close(done)
	wg.Wait()
	res.FirstMS, res.LastMS, res.Seconds = first.Milliseconds(), last.Milliseconds(), time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// classify names a request's outcome: ok, refused, reset, EOF, timeout or
// other.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// stopLoads sends SIGTERM to every other loader process of this
// container that runs a load.
func stopLoads() error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmd), "\x00-url\x00") {
			continue
		}
		if syscall.Kill(pid, syscall.SIGTERM) == nil {
			n++
		}
	}
	if n == 0 {
		return errors.New("no load runs")
	}
	return nil
}

func fetch(url string) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
