package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/net/netutil"
)

// Source is the supervisor's status, read at each scrape.
type Source func(ctx context.Context) (upgrade.Status, error)

// maxConns bounds the endpoint's open connections.
const maxConns = 8

// scrapeTimeout bounds the wait for the supervisor's status.
const scrapeTimeout = 5 * time.Second

func init() {
	// One TYPE line per metric family: what the Prometheus text format
	// asks for, and what gives histograms their type.
	vm.ExposeMetadata(true)
}

// Handler serves GET /metrics from src.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		st, err := src(ctx)
		if err != nil {
			http.Error(w, "tini-hot status: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		Write(w, &st)
	})
	return mux
}

// Write renders st and the process's own figures in the Prometheus text
// format.
func Write(w io.Writer, st *upgrade.Status) {
	set := vm.NewSet()
	r := st.Reloads
	for _, c := range []struct {
		result string
		n      int
	}{{"succeeded", r.Succeeded}, {"failed", r.Failed}, {"coalesced", r.Coalesced}, {"refused", r.Refused}} {
		set.NewCounter(`tini_hot_reloads_total{result="` + c.result + `"}`).Set(uint64(c.n))
	}
	set.NewCounter("tini_hot_reaped_total").Set(st.Reaped)

	serving := 0
	count := map[string]float64{"starting": 0, "serving": 0, "draining": 0}
	memory := map[string]float64{"starting": 0, "serving": 0, "draining": 0}
	for _, g := range st.Generations {
		if _, live := count[g.State]; !live {
			continue
		}
		count[g.State]++
		if g.GenerationUsage != nil {
			memory[g.State] += float64(g.MemoryBytes)
		}
		if g.State == "serving" {
			serving = g.Number
		}
	}
	gauge(set, "tini_hot_generation", float64(serving))
	for state, n := range count {
		gauge(set, `tini_hot_generations{state="`+state+`"}`, n)
		gauge(set, `tini_hot_generation_memory_bytes{state="`+state+`"}`, memory[state])
	}
	c := st.Container
	gauge(set, "tini_hot_container_memory_limit_bytes", float64(c.MemoryLimitBytes))
	gauge(set, "tini_hot_container_memory_usage_bytes", float64(c.MemoryUsageBytes))
	set.NewCounter("tini_hot_oom_kills_total").Set(c.OOMKills)
	set.RegisterMetricsWriter(func(w io.Writer) {
		histogram(w, "tini_hot_generation_ready_seconds", st.ReadySeconds)
		histogram(w, "tini_hot_generation_drain_seconds", st.DrainSeconds)
	})
	set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}

func gauge(set *vm.Set, name string, v float64) { set.NewGauge(name, nil).Set(v) }

// histogram writes h, which the supervisor has already counted, as a
// Prometheus histogram: the library's own histograms count observations
// themselves, and cannot take counts made elsewhere.
func histogram(w io.Writer, name string, h upgrade.Histogram) {
	vm.WriteMetadataIfNeeded(w, name, "histogram")
	for i, b := range h.Bounds {
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), h.Counts[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.Count)
	fmt.Fprintf(w, "%s_sum %s\n", name, strconv.FormatFloat(h.Sum, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", name, h.Count)
}

// Server is the metrics endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (host:port) and serves src there until Close.
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	// PID 1 must not pay for a flood of connections: more wait in the
	// kernel's backlog.
	ln = netutil.LimitListener(ln, maxConns)
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           Handler(src),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      scrapeTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics endpoint stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address bound (with the port chosen for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving at once.
func (s *Server) Close() error { return s.srv.Close() }
