package metrics

import (
	"bytes"
	"io"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tini-hot/tini-hot/upgrade"
)

// Parse reads the exposition strictly, as Prometheus does.
func Parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

// value is the value of the metric of family name whose labels include
// the label pairs given (name, value, ...).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func status() upgrade.Status {
	h := func(vals ...float64) upgrade.Histogram {
		bounds := []float64{0.1, 1, 10}
		out := upgrade.Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds))}
		for _, v := range vals {
			out.Count++
			out.Sum += v
			for i, b := range bounds {
				if v <= b {
					out.Counts[i]++
				}
			}
		}
		return out
	}
	use := func(mem uint64) *upgrade.GenerationUsage {
		return &upgrade.GenerationUsage{MemoryBytes: mem, Processes: 1}
	}
	return upgrade.Status{
		Reloads: upgrade.ReloadCounters{Requested: 6, Succeeded: 3, Failed: 1, Coalesced: 1, Refused: 1},
		Generations: []upgrade.GenerationStatus{
			{Number: 3, State: "exited"},
			{Number: 4, State: "draining", GenerationUsage: use(100)},
			{Number: 5, State: "failed"},
			{Number: 6, State: "serving", GenerationUsage: use(200)},
		},
		Container: upgrade.ContainerStatus{Cgroup: "v1", MemoryLimitBytes: 128 << 20, MemoryUsageBytes: 64 << 20, OOMKills: 2},
		// Two unnamed listeners share the name "unknown".
		Listeners: []upgrade.ListenerStatus{
			{Name: "unknown", Address: "tcp://0.0.0.0:80", Listening: true, Restored: 2},
			{Name: "unknown", Address: "unix:///run/a.sock", Listening: false},
		},
		Reaped:       9,
		ReadySeconds: h(0.05, 0.5, 0.7, 20),
		DrainSeconds: h(3),
	}
}

func TestWrite(t *testing.T) {
	st := status()
	var b bytes.Buffer
	Write(&b, &st)
	fams := Parse(t, &b)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tini_hot_reloads_total", []string{"result", "succeeded"}, 3},
		{"tini_hot_reloads_total", []string{"result", "failed"}, 1},
		{"tini_hot_reloads_total", []string{"result", "coalesced"}, 1},
		{"tini_hot_reloads_total", []string{"result", "refused"}, 1},
		{"tini_hot_generation", nil, 6},
		{"tini_hot_generations", []string{"state", "serving"}, 1},
		{"tini_hot_generations", []string{"state", "draining"}, 1},
		{"tini_hot_generations", []string{"state", "starting"}, 0},
		{"tini_hot_generation_memory_bytes", []string{"state", "serving"}, 200},
		{"tini_hot_generation_memory_bytes", []string{"state", "draining"}, 100},
		{"tini_hot_reaped_total", nil, 9},
		{"tini_hot_container_memory_limit_bytes", nil, 128 << 20},
		{"tini_hot_container_memory_usage_bytes", nil, 64 << 20},
		{"tini_hot_oom_kills_total", nil, 2},
		{"tini_hot_listener_up", []string{"listener", "unknown", "fd", "3"}, 1},
		{"tini_hot_listener_up", []string{"listener", "unknown", "fd", "4"}, 0},
		{"tini_hot_listener_restored_total", []string{"fd", "3"}, 2},
		{"tini_hot_listener_restored_total", []string{"fd", "4"}, 0},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if fams["tini_hot_reloads_total"].GetType() != dto.MetricType_COUNTER {
		t.Error("reloads not a counter")
	}
	ready := fams["tini_hot_generation_ready_seconds"]
	if ready.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("ready seconds: type %v", ready.GetType())
	}
	hist := ready.Metric[0].Histogram
	if hist.GetSampleCount() != 4 || hist.GetSampleSum() != 21.25 || len(hist.Bucket) != 4 || hist.Bucket[3].GetCumulativeCount() != 4 || hist.Bucket[0].GetCumulativeCount() != 1 || hist.Bucket[1].GetCumulativeCount() != 3 || hist.Bucket[2].GetUpperBound() != 10 {
		t.Fatalf("ready histogram %v", hist)
	}
	if fams["tini_hot_generation_drain_seconds"].Metric[0].Histogram.GetSampleCount() != 1 {
		t.Fatal("drain histogram")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}
