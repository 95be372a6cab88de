// Package metrics serves tini-hot's Prometheus metrics (--metrics ADDR):
// GET /metrics renders, at each scrape, the supervisor's status (its
// reload counters, generations, histograms of ready and drain times, the
// container's memory) and the Go runtime and process figures.
//
// It owns nothing of the supervisor's: a scrape asks the supervisor for
// its status (one copy, made on the supervisor's loop without reading
// /proc there) and never blocks that loop; nothing in the supervisor
// calls into this package. Rendering uses github.com/VictoriaMetrics/metrics,
// chosen over prometheus/client_golang for its footprint (see docs/INTERNALS.md).
//
// The endpoint is a small server of its own (serve.go), not net/http's:
// one request per connection, GET or HEAD /metrics, its head read by
// net/textproto, deadlines on every read and write, at most 8 connections.
// net/http's server would add 1.9 MB to a binary every container carries.
package metrics
