package metrics

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/upgrade"
)

func init() {
	// One TYPE line per metric family: what the Prometheus text format
	// asks for, and what gives histograms their type.
	vm.ExposeMetadata(true)
}

// writing lets one scrape at a time read the process's own figures from
// /proc: a goroutine in a system call holds a thread, and a container at
// its pids limit has none to give (upgrade.Supervisor.Status, the same).
var writing sync.Mutex

// Write renders st and the process's own figures in the Prometheus text
// format.
func Write(w io.Writer, st *upgrade.Status) {
	writing.Lock()
	defer writing.Unlock()
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
	for i, l := range st.Listeners {
		// Names repeat (unnamed ones are all "unknown"), fds do not; a
		// name is letters, digits, '_', '.' and '-' (listen.Parse).
		labels := `{listener="` + l.Name + `",fd="` + strconv.Itoa(launch.ListenFdsStart+i) + `"}`
		up := 0.0
		if l.Listening {
			up = 1
		}
		gauge(set, "tini_hot_listener_up"+labels, up)
		set.NewCounter("tini_hot_listener_restored_total" + labels).Set(uint64(l.Restored))
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
