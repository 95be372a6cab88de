package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/cli"
	"github.com/tini-hot/tini-hot/internal/imagebuild"
	"github.com/tini-hot/tini-hot/internal/watch/kubelet"
	"github.com/tini-hot/tini-hot/upgrade"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Images the container test builds from the repository's Dockerfile.
const (
	binImage  = "localhost/tini-hot-e2e:test"
	demoImage = "localhost/tini-hot-e2e-demo:test"
)

// podman runs podman with args and returns its trimmed output; it fails
// the test on an error.
func podman(t testing.TB, args ...string) string {
	t.Helper()
	out, code := podmanCode(args...)
	if code != 0 {
		t.Fatalf("podman %s: status %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// podmanCode runs podman with args; it returns the output and exit status.
func podmanCode(args ...string) (string, int) {
	cmd, err := imagebuild.Podman(args...)
	if err != nil {
		return err.Error(), -1
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), exitCode(err)
}

// requirePodman checks that podman can run containers here.
func requirePodman(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		need(t, "root (podman)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		need(t, "podman (Debian packages podman and runc)")
	}
	if out, code := podmanCode("info", "--format", "{{.Host.OCIRuntime.Name}}"); code != 0 {
		need(t, "a working podman: %s", out)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		need(t, "a static busybox at /bin/busybox (Debian package busybox-static) for the offline build image")
	}
}

// imagesBuilt is set once buildImages has built the images in this run.
var imagesBuilt atomic.Bool

// buildImages builds both targets of the repository's Dockerfile, once
// per run. They are removed when the run ends (runTests).
func buildImages(t *testing.T) {
	t.Helper()
	helpersMu.Lock()
	defer helpersMu.Unlock()
	if imagesBuilt.Load() {
		return
	}
	defer func() { imagesBuilt.Store(!t.Failed()) }()
	for _, target := range []struct{ name, tag string }{{"demo", demoImage}, {"tini-hot", binImage}} {
		start := time.Now()
		if err := imagebuild.Build("..", target.name, target.tag, "e2e"); err != nil {
			t.Fatal(err)
		}
		size := podman(t, "image", "inspect", "--format", "{{.Size}}", target.tag)
		t.Logf("image %s (target %s): %s bytes, built in %v", target.tag, target.name, size, time.Since(start).Round(time.Second))
	}
}

// podSpec is the pod of deploy/k8s/deployment.yaml.
func podSpec(t *testing.T) corev1.PodSpec {
	t.Helper()
	b, err := os.ReadFile("../deploy/k8s/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	return d.Spec.Template.Spec
}

// configMap is deploy/k8s/configmap.yaml.
func configMap(t *testing.T) corev1.ConfigMap {
	t.Helper()
	b, err := os.ReadFile("../deploy/k8s/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatalf("configmap.yaml: %v", err)
	}
	return cm
}

// container is a running demo container.
type container struct {
	t    *testing.T
	name string
	url  string
}

func (c *container) exec(args ...string) (string, int) {
	return podmanCode(append([]string{"exec", c.name}, args...)...)
}

// pidOf asks the demo who answers and returns the pid.
func pidOf(t *testing.T, url string) string {
	t.Helper()
	body, err := get(http.DefaultClient, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return strings.Fields(body)[0]
}

// TestContainer builds the images from the Dockerfile and plays a
// kubelet's part against the demo container: readiness probe, upgrades
// under load with `kill -HUP 1` and `tini-hot reload`, an exec orphan,
// preStop, then `podman stop` within the grace period.
func TestContainer(t *testing.T) {
	requirePodman(t)
	buildImages(t)

	// The image without the demo: nothing but a static /tini-hot.
	if out := podman(t, "run", "--rm", binImage, "version"); !regexp.MustCompile(`^tini-hot e2e \(commit [0-9a-f]{40}, go1\.`).MatchString(out) {
		t.Errorf("tini-hot image: version %q", out)
	}

	// The container as deploy/k8s runs it: its command, user, read-only
	// root with a writable /run, probes and preStop hook.
	pod := podSpec(t)
	app := pod.Containers[0]
	grace := *pod.TerminationGracePeriodSeconds
	entrypoint, _ := json.Marshal(app.Command)
	sc := app.SecurityContext
	// An emptyDir: a fresh directory, mode 0777.
	run := t.TempDir()
	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	// The ConfigMap volume, laid out and updated as the kubelet does.
	cm := configMap(t)
	config := t.TempDir()
	if err := os.Chmod(config, 0o755); err != nil { // the pod's user reads it
		t.Fatal(err)
	}
	if err := kubelet.Update(config, cm.Data); err != nil {
		t.Fatal(err)
	}
	var volumes []string
	for _, vm := range app.VolumeMounts {
		if vm.Name == "config" {
			volumes = append(volumes, "-v", config+":"+vm.MountPath+":ro")
		}
	}
	addr := freeAddr(t)
	c := &container{t: t, name: fmt.Sprintf("tini-hot-e2e-%d", os.Getpid()), url: "http://" + addr + "/"}
	args := []string{"run", "-d", "--name", c.name, "-p", addr + ":8080", "--entrypoint", string(entrypoint),
		"--user", fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup), "--read-only", "-v", run + ":/run"}
	args = append(args, volumes...)
	for _, e := range app.Env {
		args = append(args, "-e", e.Name+"="+e.Value)
	}
	podman(t, append(args, "--cap-drop", "all", "-e", "TINI_HOT_VERBOSE=2", demoImage)...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := podmanCode("logs", c.name)
			t.Logf("container log:\n%s", out)
		}
		_, _ = podmanCode("rm", "-f", "-t", "0", c.name)
	})

	start := time.Now()
	waitFor(t, "the readiness probe to pass", func() (string, bool) {
		_, code := c.exec(app.ReadinessProbe.Exec.Command...)
		return "", code == 0
	})
	if out, code := c.exec(app.LivenessProbe.Exec.Command...); code != 0 {
		t.Errorf("liveness probe: %d %s", code, out)
	}
	t.Logf("probe passed %v after podman run", time.Since(start).Round(time.Millisecond))

	t.Run("upgrades", func(t *testing.T) {
		l := startLoad(c.url, 4, 4)
		pid := pidOf(t, c.url)
		for i := range 6 {
			how := []string{"kill", "-HUP", "1"}
			if i%2 == 1 {
				how = []string{"/tini-hot", "reload"}
			}
			if out, code := c.exec(how...); code != 0 {
				t.Fatalf("podman exec %s %v: %d %s", c.name, how, code, out)
			}
			next := waitFor(t, "a new pid after "+strings.Join(how, " "), func() (string, bool) {
				p := pidOf(t, c.url)
				return p, p != pid
			})
			t.Logf("%s: %s → %s", strings.Join(how, " "), pid, next)
			pid = next
		}
		l.finish(t)
		t.Logf("6 upgrades through podman exec under load: %d requests, %d failed", l.ok.Load(), l.failed.Load())
		// Steered with every capability dropped, as deploy/k8s runs it:
		// classic BPF needs none.
		out, code := c.exec("/tini-hot", "status", "--json")
		var st upgrade.Status
		if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
			t.Fatalf("status: %d %v %s", code, err, out)
		}
		for _, ls := range st.Listeners {
			if ls.Mode != "steered" {
				t.Errorf("listener %s: mode %q (%s), want steered with every capability dropped", ls.Name, ls.Mode, ls.Fallback)
			}
		}
	})

	t.Run("configmap", func(t *testing.T) {
		pid := pidOf(t, c.url)
		// The demo serves the configuration its generation read.
		before, err := get(http.DefaultClient, c.url+"config")
		if err != nil || before != strings.TrimSpace(cm.Data["demo.conf"]) {
			t.Fatalf("GET /config: %q, %v; want the ConfigMap's demo.conf %q", before, err, cm.Data["demo.conf"])
		}
		data := map[string]string{}
		for k, v := range cm.Data {
			data[k] = v + "# changed\n"
		}
		if err := kubelet.Update(config, data); err != nil {
			t.Fatal(err)
		}
		next := waitFor(t, "a new pid after the ConfigMap update", func() (string, bool) {
			p := pidOf(t, c.url)
			return p, p != pid
		})
		if after, err := get(http.DefaultClient, c.url+"config"); err != nil || after != strings.TrimSpace(data["demo.conf"]) {
			t.Errorf("GET /config after the update: %q, %v; want %q", after, err, data["demo.conf"])
		}
		t.Logf("ConfigMap update: %s → %s", pid, next)
	})

	t.Run("orphan", func(t *testing.T) {
		out, code := c.exec("sh", "-c", "sleep 30 & echo $!; exit")
		if code != 0 {
			t.Fatalf("exec: %d %s", code, out)
		}
		pid := strings.TrimSpace(out)
		if st, _ := c.exec("grep", "PPid", "/proc/"+pid+"/status"); strings.Fields(st + " x")[1] != "1" {
			t.Fatalf("orphan %s: %q, want it adopted by PID 1", pid, st)
		}
		if out, code := c.exec("kill", pid); code != 0 {
			t.Fatalf("kill %s: %s", pid, out)
		}
		waitFor(t, "the orphan to be reaped", func() (string, bool) {
			_, code := c.exec("test", "-e", "/proc/"+pid)
			return "", code != 0 // a zombie keeps its /proc entry
		})
	})

	t.Run("terminate", func(t *testing.T) {
		// Longer than the preStop delay: the request is still in flight
		// at SIGTERM.
		_, o, err := cli.ParseClientLine(app.Lifecycle.PreStop.Exec.Command[1:])
		if err != nil {
			t.Fatal(err)
		}
		slowFor := o.Delay + 2*time.Second
		slow, _ := slowRequest(t, c.url, int(slowFor.Seconds()), func() string { out, _ := podmanCode("logs", c.name); return out })
		start := time.Now()
		// The kubelet: preStop, then SIGTERM, SIGKILL at the grace period.
		prestopDone := make(chan string, 1)
		go func() {
			out, code := c.exec(app.Lifecycle.PreStop.Exec.Command...)
			prestopDone <- fmt.Sprintf("%d %s", code, out)
		}()
		// During preStop: not ready, and still serving while endpoints
		// go away.
		out := waitFor(t, "the readiness probe to fail during preStop", func() (string, bool) {
			out, code := c.exec(app.ReadinessProbe.Exec.Command...)
			return fmt.Sprintf("%d %s", code, out), code != 0
		})
		body, err := get(&http.Client{Timeout: 10 * time.Second}, c.url)
		if out != "1 tini-hot probe: not ready: termination announced by prestop" || err != nil || !strings.HasPrefix(body, "ospid:") {
			t.Errorf("probe and a request during preStop: %s; GET: %q %v", out, body, err)
		}
		if got := <-prestopDone; got != "0 " {
			t.Fatalf("prestop: %s", got)
		}
		prestop := time.Since(start)
		podman(t, "stop", "-t", strconv.Itoa(int(grace)), c.name)
		took := time.Since(start)
		if got := <-slow; !strings.HasPrefix(got, "ospid:") {
			t.Errorf("request in flight across preStop and SIGTERM: %q", got)
		}
		if code := podman(t, "inspect", "--format", "{{.State.ExitCode}}", c.name); code != "0" {
			t.Errorf("container exit code %s, want 0", code)
		}
		if took >= time.Duration(grace)*time.Second {
			t.Errorf("preStop + stop took %v, not within the %ds grace period", took, grace)
		}
		t.Logf("in-flight %v request answered; preStop took %v; container exited 0 %v after preStop began (grace %ds)",
			slowFor, prestop.Round(time.Millisecond), took.Round(time.Millisecond), grace)
	})
}

// TestContainerMemory runs the demo, holding 50 MiB, in a container
// limited to 96 MiB: status reports the limit, and the default
// --on-low-memory refuse declines a reload that does not fit.
func TestContainerMemory(t *testing.T) {
	requirePodman(t)
	buildImages(t)
	addr := freeAddr(t)
	name := fmt.Sprintf("tini-hot-e2e-mem-%d", os.Getpid())
	podman(t, "run", "-d", "--name", name, "--memory", "96m", "-p", addr+":8080", "-e", "DEMO_HOLD_MIB=50", demoImage)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := podmanCode("logs", name)
			t.Logf("container log:\n%s", out)
		}
		_, _ = podmanCode("rm", "-f", "-t", "0", name)
	})
	c := &container{t: t, name: name, url: "http://" + addr + "/"}
	waitFor(t, "the demo to answer", func() (string, bool) {
		body, err := get(http.DefaultClient, c.url)
		return body, err == nil
	})
	out, code := c.exec("/tini-hot", "status", "--json")
	var st upgrade.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: %d %v: %s", code, err, out)
	}
	if st.Container.Cgroup == "none" || st.Container.MemoryLimitBytes != 96<<20 || st.Container.MemoryUsageBytes == 0 {
		t.Fatalf("container figures %+v", st.Container)
	}
	pid := pidOf(t, c.url)
	out, code = c.exec("/tini-hot", "reload")
	if code != 1 || !strings.Contains(out, "not enough memory for a second generation: limit 96 MiB") {
		t.Fatalf("reload: %d %s", code, out)
	}
	if now := pidOf(t, c.url); now != pid {
		t.Fatalf("pid %s, want %s serving on", now, pid)
	}
	table, _ := c.exec("/tini-hot", "status")
	t.Logf("reload refused: %s\nstatus:\n%s", out, table)
}
