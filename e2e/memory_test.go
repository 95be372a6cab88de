package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tini-hot/tini-hot/internal/usage"
)

// memoryRoot is the v1 memory controller's mount on this machine (see
// ENVIRONMENT.md; the v2 code is tested on a fake tree in internal/usage).
const memoryRoot = "/sys/fs/cgroup/memory"

// memCgroup creates a memory cgroup limited to limitMiB (swap included)
// and removes it at the end of the test, once empty.
func memCgroup(t *testing.T, limitMiB int) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(memoryRoot, "memory.limit_in_bytes")); err != nil || os.Geteuid() != 0 {
		need(t, "root and the cgroup v1 memory controller at %s", memoryRoot)
	}
	dir := newCgroup(t, memoryRoot)
	limit := fmt.Sprint(limitMiB << 20)
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(limit), 0o644); err != nil && f == "memory.limit_in_bytes" {
			t.Fatal(err)
		}
	}
	return dir
}

// startDemoIn runs the demo holding holdMiB of anonymous memory under
// tini-hot as PID 1, inside cgroup cg.
func startDemoIn(t *testing.T, cg string, holdMiB int, flags ...string) (*proc, string) {
	t.Helper()
	addr := freeAddr(t)
	args := []string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg, tiniHot, "-l", "http=tcp://" + addr, "--ready", "notify"}
	args = append(append(args, flags...), "--", demo)
	p := startInit(t, initBin{"tini-hot", "sh"}, mode{"pid1", true}, []string{fmt.Sprintf("DEMO_HOLD_MIB=%d", holdMiB)}, args...)
	url := "http://" + addr + "/"
	waitFor(t, "the demo to answer", func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil
	})
	return p, url
}

// oomKills reads the cgroup's OOM-kill count.
func oomKills(t *testing.T, cg string) int {
	t.Helper()
	var n int
	for _, line := range strings.Split(readFile(filepath.Join(cg, "memory.oom_control")), "\n") {
		if _, err := fmt.Sscanf(line, "oom_kill %d", &n); err == nil {
			return n
		}
	}
	t.Fatalf("no oom_kill in %s/memory.oom_control", cg)
	return 0
}

// TestMemoryHeadroom: a 120 MiB app under a 200 MiB limit. refuse: the
// reload exits 1 naming memory and the old pid serves on; restart: the
// reload succeeds. Both under load with no failed request and no OOM
// kill. Under a 400 MiB limit, refuse reloads.
func TestMemoryHeadroom(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		limit int
	}{{"refuse", 200}, {"restart", 200}, {"refuse", 400}} {
		t.Run(fmt.Sprintf("%s-%dMiB", tc.mode, tc.limit), func(t *testing.T) {
			cg := memCgroup(t, tc.limit)
			p, url := startDemoIn(t, cg, 120, "--on-low-memory", tc.mode)
			st := p.status()
			if c := st.Container; c.Cgroup != "v1" || c.MemoryLimitBytes != uint64(tc.limit)<<20 || c.MemoryUsageBytes < 120<<20 {
				t.Fatalf("container %+v", c)
			}
			if g, _ := generation(st, 1); g.GenerationUsage == nil || g.MemoryBytes < 120<<20 || g.Processes != 1 || g.Threads < 2 || g.FDs < 4 {
				t.Fatalf("generation 1 figures %+v", g.GenerationUsage)
			}
			l := startLoad(url, 6, 4)
			time.Sleep(200 * time.Millisecond) // some load before the reload: not a wait for an event
			out, code := p.reload()
			fits := tc.limit == 400
			switch {
			case tc.mode == "refuse" && !fits:
				if code != 1 || !strings.Contains(out, "not enough memory for a second generation: limit 200 MiB") || !strings.Contains(out, "--on-low-memory restart") {
					t.Fatalf("reload: %d %q, want refused for memory", code, out)
				}
				if _, ok := generation(p.status(), 2); ok {
					t.Fatal("a generation was started")
				}
			default:
				if code != 0 || out != "generation 2 serving" {
					t.Fatalf("reload: %d %q", code, out)
				}
			}
			want := "gen:1"
			if code == 0 {
				want = "gen:2"
			}
			body := waitServed(t, url, want)
			time.Sleep(200 * time.Millisecond) // load after the reload too
			l.finish(t)
			if n := oomKills(t, cg); n != 0 {
				t.Errorf("%d OOM kills", n)
			}
			st = p.status()
			t.Logf("%s under %d MiB: reload %d %q; %d requests, %d failed, longest %v; now %s; refused %d",
				tc.mode, tc.limit, code, out, l.ok.Load()+l.failed.Load(), l.failed.Load(), time.Duration(l.longest.Load()).Round(time.Millisecond), body, st.Reloads.Refused)
			p.signal(syscall.SIGTERM)
			if c := p.wait(); c != 0 {
				t.Errorf("exit %d", c)
			}
		})
	}
}

// TestOOMKilled: an app that allocates past the limit is reported as
// killed by the OOM killer, and tini-hot exits 137.
func TestOOMKilled(t *testing.T) {
	cg := memCgroup(t, 64)
	p := startInit(t, initBin{"tini-hot", "sh"}, mode{"pid1", true}, []string{"DEMO_HOLD_MIB=200"},
		"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg, tiniHot, "-l", "http=tcp://"+freeAddr(t), "--", demo)
	if code := p.wait(); code != 137 {
		t.Fatalf("exit %d, want 137", code)
	}
	if !regexp.MustCompile(`generation 1 \(pid \d+\) killed by the OOM killer \(limit 64 MiB\)`).MatchString(p.stderr.String()) {
		t.Fatalf("no OOM kill named in:\n%s", p.stderr)
	}
}

// TestMetrics: after 3 reloads and 1 failed one, /metrics parses strictly
// and tells the real counts, the serving generation, the histograms and
// the memory.
func TestMetrics(t *testing.T) {
	cg := memCgroup(t, 400)
	fail := filepath.Join(t.TempDir(), "fail")
	metricsAddr, addr := freeAddr(t), freeAddr(t)
	p := startInit(t, initBin{"tini-hot", "sh"}, mode{"pid1", true}, nil,
		"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg, tiniHot, "-l", "http=tcp://"+addr, "--ready", "notify", "--metrics", metricsAddr,
		"--", "sh", "-c", `if [ -e "$0" ]; then exit 3; fi; exec "$1"`, fail, demo)
	url := "http://" + addr + "/"
	waitFor(t, "the demo to answer", func() (string, bool) {
		body, err := get(http.DefaultClient, url)
		return body, err == nil
	})
	for i := 2; i <= 4; i++ {
		if out, code := p.reload(); code != 0 {
			t.Fatalf("reload %d: %d %s", i, code, out)
		}
	}
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := p.reload(); code != 1 || !strings.Contains(out, "generation 5 exited with status 3 before ready") {
		t.Fatalf("failing reload: %d %s", code, out)
	}
	st := settled(t, p)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body.Bytes()))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body.String())
	}
	get := func(name string, label ...string) *dto.Metric {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			if len(label) == 0 || (len(m.Label) == 1 && m.Label[0].GetName() == label[0] && m.Label[0].GetValue() == label[1]) {
				return m
			}
		}
		t.Fatalf("no %s%v in:\n%s", name, label, body.String())
		return nil
	}
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{get("tini_hot_reloads_total", "result", "succeeded").GetCounter().GetValue(), 3, "succeeded"},
		{get("tini_hot_reloads_total", "result", "failed").GetCounter().GetValue(), 1, "failed"},
		{get("tini_hot_generation").GetGauge().GetValue(), 4, "serving generation"},
		{get("tini_hot_generations", "state", "serving").GetGauge().GetValue(), 1, "generations serving"},
		{float64(get("tini_hot_generation_ready_seconds").GetHistogram().GetSampleCount()), 4, "ready observations"},
		{float64(get("tini_hot_generation_drain_seconds").GetHistogram().GetSampleCount()), 3, "drain observations"},
		{get("tini_hot_container_memory_limit_bytes").GetGauge().GetValue(), 400 << 20, "limit"},
		{get("tini_hot_reaped_total").GetCounter().GetValue(), float64(st.Reaped), "reaped"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, name := range []string{"tini_hot_container_memory_usage_bytes", "process_resident_memory_bytes", "go_goroutines"} {
		if get(name).GetGauge().GetValue() <= 0 {
			t.Errorf("%s is not positive", name)
		}
	}
	if get("tini_hot_generation_memory_bytes", "state", "serving").GetGauge().GetValue() <= 0 {
		t.Error("serving generation's memory is not positive")
	}
	if fams["tini_hot_generation_ready_seconds"].GetType() != dto.MetricType_HISTOGRAM || len(get("tini_hot_generation_ready_seconds").GetHistogram().GetBucket()) < 2 {
		t.Error("ready seconds is no histogram with buckets")
	}
	t.Logf("/metrics: %d families, %d bytes; reaped %d", len(fams), body.Len(), st.Reaped)
}

// TestMemoryShared: the headroom counts shared memory, and counts a page
// that several processes share once, in a real memory cgroup under load.
//   - shmem: the demo holds 110 MiB of MAP_SHARED|MAP_ANONYMOUS memory
//     under a 200 MiB limit. A second copy does not fit: the reload is
//     refused and the old generation serves on. aa4f58b counted RssAnon
//     only (4 MiB), started generation 2, and the OOM killer ended the
//     container.
//   - cow: gunicorn --preload with 3 workers, whose master allocated
//     60 MiB before it forked them, under a 256 MiB limit. The generation
//     uses about 90 MiB, each worker's RSS counting the 60 MiB again
//     (aa4f58b summed 320 MiB of RssAnon and refused); the reload fits,
//     and happens.
func TestMemoryShared(t *testing.T) {
	gunicorn, testdata := needGunicorn(t)
	for _, tc := range []struct {
		name  string
		limit int
		env   []string
		app   []string
		fits  bool
	}{
		{"shmem", 200, []string{"DEMO_SHARED_MIB=110"}, []string{demo}, false},
		{"cow", 256, []string{"WSGI_HOLD_MIB=60"}, []string{gunicorn, "--chdir", testdata, "--preload", "-w", "3", "wsgiapp:app"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := memCgroup(t, tc.limit)
			addr := freeAddr(t)
			args := append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg, tiniHot, "-l", "http=tcp://" + addr, "--ready", "notify", "--"}, tc.app...)
			p := startInit(t, initBin{"tini-hot", "sh"}, mode{"pid1", true}, tc.env, args...)
			url := "http://" + addr + "/"
			waitFor(t, "the application to answer", func() (string, bool) {
				body, err := get(http.DefaultClient, url)
				return body, err == nil
			})
			st := p.status()
			g1, _ := generation(st, 1)
			ws := st.Container.MemoryUsageBytes
			l := startLoad(url, 4, 4)
			waitFor(t, "requests to be answered", func() (int64, bool) { return l.ok.Load(), l.ok.Load() >= 100 })
			out, code := p.reload()
			want := "gen:1"
			switch {
			case tc.fits && (code != 0 || out != "generation 2 serving"):
				t.Errorf("reload: %d %q, want generation 2 serving", code, out)
			case !tc.fits && (code != 1 || !strings.Contains(out, "not enough memory for a second generation: limit 200 MiB")):
				t.Errorf("reload: %d %q, want refused for memory", code, out)
			case tc.fits:
				want = "gen:2"
			}
			waitServed(t, url, want)
			before := l.ok.Load()
			waitFor(t, "requests after the reload", func() (int64, bool) { return l.ok.Load(), l.ok.Load() >= before+100 })
			l.finish(t)
			oom := oomKills(t, cg)
			if oom != 0 {
				t.Errorf("%d OOM kills", oom)
			}
			st = p.status()
			t.Logf("%s under %d MiB: generation 1 used %s (working set then %s); reload %d %q; %d requests, %d failed, %d OOM kills; refused %d, succeeded %d",
				tc.name, tc.limit, usage.MiB(g1.MemoryBytes), usage.MiB(ws), code, out, l.ok.Load()+l.failed.Load(), l.failed.Load(), oom, st.Reloads.Refused, st.Reloads.Succeeded)
			p.signal(syscall.SIGTERM)
			if c := p.wait(); c != 0 {
				t.Errorf("exit %d", c)
			}
		})
	}
}
