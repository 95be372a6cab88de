//go:build k8s

package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tini-hot/tini-hot/internal/imagebuild"
	"github.com/tini-hot/tini-hot/upgrade"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const (
	// image is what deploy/k8s names; podman calls it localhost/….
	image      = "tini-hot-demo:latest"
	deployment = "tini-hot-demo"
	configMap  = "tini-hot-demo-config"
	// podsOf selects the demo's pods.
	podsOf = "app.kubernetes.io/name=tini-hot-demo"
	// The load runs in this pod (e2e/k8s/loader), inside the cluster.
	loaderImage = "tini-hot-e2e-loader:latest"
	loaderPod   = "loader"
)

// loaderManifest is the loader's pod, admitted by the restricted Pod
// Security Standard.
const loaderManifest = `apiVersion: v1
kind: Pod
metadata:
  name: ` + loaderPod + `
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: loader
      image: ` + loaderImage + `
      imagePullPolicy: IfNotPresent
      command: [/loader, -idle]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
`

// buildLoader builds the loader's image: its static binary alone.
func buildLoader(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "loader"), "./loader")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the loader: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\nCOPY loader /loader\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build, err := imagebuild.Podman("build", "-q", "--layers=false", "-t", "localhost/"+loaderImage, dir)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("podman build the loader: %v: %s", err, out)
	}
	imagebuild.Made("localhost/" + loaderImage)
}

// repo is the repository's root.
var repo = func() string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return dir
}()

// cluster runs kubectl against KUBECONFIG in one namespace.
type cluster struct {
	t       *testing.T
	kubectl string
	ns      string
}

// kube runs kubectl in the namespace; it returns stdout, and fails with
// stderr.
func (c *cluster) kube(args ...string) string {
	c.t.Helper()
	out, err := c.kubeErr(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) kubeErr(args ...string) (string, error) {
	out, _, err := c.run("", args...)
	return out, err
}

// run runs kubectl in the namespace with stdin; it returns stdout and
// stderr, and an error that quotes stderr.
func (c *cluster) run(stdin string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(c.kubectl, append([]string{"-n", c.ns}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), nil
}

// get decodes `kubectl get ARGS -o json` into v.
func (c *cluster) get(v any, args ...string) {
	c.t.Helper()
	if err := json.Unmarshal([]byte(c.kube(append(append([]string{"get"}, args...), "-o", "json")...)), v); err != nil {
		c.t.Fatalf("kubectl get %v: %v", args, err)
	}
}

// pods is the demo's pods that are not being deleted, by name.
func (c *cluster) pods() []corev1.Pod {
	c.t.Helper()
	var l corev1.PodList
	c.get(&l, "pods", "-l", podsOf)
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// status is `tini-hot status --json` in pod.
func (c *cluster) status(pod string) upgrade.Status {
	c.t.Helper()
	var st upgrade.Status
	out := c.kube("exec", pod, "--", "/tini-hot", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("status of %s: %v: %s", pod, err, out)
	}
	return st
}

// serving is the number of the generation that serves in st, 0 if none.
func serving(st upgrade.Status) int {
	for _, g := range st.Generations {
		if g.State == "serving" {
			return g.Number
		}
	}
	return 0
}

// waitFor polls cond every 100 ms until it holds, for at most limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// kubectlPath is KUBECTL, the one deploy/k8s/node built (of the node's
// version), or kubectl on PATH.
func kubectlPath(t *testing.T) string {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	if k := "/var/lib/tini-hot-node/bin/kubectl"; exec.Command(k, "version", "--client").Run() == nil {
		return k
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return k
	}
	t.Fatal("no kubectl: set KUBECTL, or put it on PATH")
	return ""
}

// setUp builds and loads the image and applies deploy/k8s in a fresh
// namespace that enforces the restricted Pod Security Standard.
func setUp(t *testing.T) *cluster {
	if os.Getenv("KUBECONFIG") == "" {
		t.Fatal("KUBECONFIG must name the cluster (deploy/k8s/node/up.sh prints one)")
	}
	c := &cluster{t: t, kubectl: kubectlPath(t), ns: fmt.Sprintf("tini-hot-e2e-%d", rand.IntN(1e6))}
	start := time.Now()
	if err := imagebuild.Build(repo, "demo", "localhost/"+image, "k8s-e2e"); err != nil {
		t.Fatal(err)
	}
	buildLoader(t)
	load := os.Getenv("TINI_HOT_K8S_LOAD")
	if load == "" {
		load = filepath.Join(repo, "deploy/k8s/node/load.sh")
	}
	if out, err := exec.Command("sh", "-c", load+` "$@"`, "load", "localhost/"+image, "localhost/"+loaderImage).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", load, err, out)
	}
	t.Logf("image built and loaded in %v", time.Since(start).Round(time.Second))
	// The cluster has its copies: podman's go (and the names load.sh
	// tagged them with, for the node's containerd).
	imagebuild.Made("docker.io/library/" + image)
	imagebuild.Made("docker.io/library/" + loaderImage)
	t.Cleanup(func() {
		if err := imagebuild.RemoveBuilt(); err != nil {
			t.Error(err)
		}
	})
	c.kube("create", "namespace", c.ns)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.kubeErr("get", "events", "--sort-by", ".lastTimestamp")
			t.Logf("events:\n%s", out)
		}
		if _, err := c.kubeErr("delete", "namespace", c.ns, "--timeout", "3m"); err != nil {
			t.Log(err)
		}
	})
	c.kube("label", "namespace", c.ns, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")
	_, warned, err := c.run("", "apply", "-k", filepath.Join(repo, "deploy/k8s"))
	if err != nil {
		t.Fatal(err)
	}
	// g. The restricted namespace admits the Deployment with no warning.
	if w := strings.TrimSpace(warned); w != "" {
		t.Errorf("kubectl apply warned: %s", w)
	}
	// To see the test fail when a promise breaks, TINI_HOT_K8S_BREAK
	// takes the manifest's preStop hook away (no-prestop) or makes its
	// readiness probe always pass (probe-true).
	switch b := os.Getenv("TINI_HOT_K8S_BREAK"); b {
	case "":
	case "no-prestop":
		c.kube("patch", "deployment", deployment, "--type", "json", "-p", `[{"op":"remove","path":"/spec/template/spec/containers/0/lifecycle"}]`)
	case "probe-true":
		c.kube("patch", "deployment", deployment, "--type", "json", "-p", `[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/exec/command","value":["/bin/true"]}]`)
	default:
		t.Fatalf("TINI_HOT_K8S_BREAK=%s: want no-prestop or probe-true", b)
	}
	if _, _, err := c.run(loaderManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("the loader pod: %v", err)
	}
	start = time.Now()
	c.kube("rollout", "status", "deployment/"+deployment, "--timeout", "5m")
	c.kube("wait", "--for", "condition=Ready", "pod/"+loaderPod, "--timeout", "2m")
	t.Logf("rollout: every pod Ready through the exec probe in %v", time.Since(start).Round(time.Second))
	return c
}

// TestDeploy is deploy/k8s on a real cluster.
func TestDeploy(t *testing.T) {
	c := setUp(t)
	var d appsv1.Deployment
	c.get(&d, "deployment", deployment)
	app := d.Spec.Template.Spec.Containers[0]
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second

	// a. The pods are Ready through `tini-hot probe`, and stay so.
	pods := c.pods()
	if len(pods) != int(*d.Spec.Replicas) {
		t.Fatalf("%d pods, want %d", len(pods), *d.Spec.Replicas)
	}
	// e. The limit the kubelet set is what tini-hot reads.
	for _, p := range pods {
		st := c.status(p.Name)
		if want := app.Resources.Limits.Memory().Value(); int64(st.Container.MemoryLimitBytes) != want {
			t.Errorf("%s: status memory limit %d, want limits.memory %d (cgroup %s)", p.Name, st.Container.MemoryLimitBytes, want, st.Container.Cgroup)
		}
	}
	var svc corev1.Service
	c.get(&svc, "service", deployment)
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port)))

	t.Run("reloads", func(t *testing.T) {
		l := c.startLoad(t, url)
		for _, p := range c.pods() {
			before := c.status(p.Name)
			for i := range 10 {
				st := c.status(p.Name)
				gen, done := serving(st), st.Reloads.Succeeded
				start := time.Now()
				if i < 5 {
					c.kube("exec", p.Name, "--", "kill", "-HUP", "1")
				} else {
					c.kube("exec", p.Name, "--", "/tini-hot", "reload")
				}
				var now upgrade.Status
				waitFor(t, p.Name+": the new generation serving", time.Minute, func() bool {
					now = c.status(p.Name)
					return serving(now) > gen && now.Reloads.Succeeded > done
				})
				how := map[bool]string{true: "kill -HUP 1", false: "/tini-hot reload"}[i < 5]
				// tini-hot's own timestamps: the request's arrival and the
				// new generation's READY=1 (the node's clock, which is
				// this machine's on deploy/k8s/node).
				for _, g := range now.Generations {
					if g.Number == serving(now) && g.Ready != nil {
						took := "?"
						if g.Requested != nil {
							took = g.Ready.Sub(*g.Requested).Round(time.Millisecond).String()
						}
						t.Logf("%s: kubectl exec … %s → generation %d ready %v after the exec began (request to ready in tini-hot: %s); seen by a status poll after %v",
							p.Name, how, g.Number, g.Ready.Sub(start).Round(time.Millisecond), took, time.Since(start).Round(time.Millisecond))
					}
				}
			}
			after := c.status(p.Name)
			if r := after.Reloads.Requested - before.Reloads.Requested; r != 10 || after.Reloads.Succeeded-before.Reloads.Succeeded != 10 {
				t.Errorf("%s: %d reloads requested, %d succeeded, want each of the 10 counted once (%+v)", p.Name, r, after.Reloads.Succeeded-before.Reloads.Succeeded, after.Reloads)
			}
		}
		l.finish(t, "10 reloads per pod")
		c.stillReady(t)
	})

	t.Run("configmap", func(t *testing.T) {
		before := map[string]upgrade.Status{}
		for _, p := range c.pods() {
			before[p.Name] = c.status(p.Name)
		}
		l := c.startLoad(t, url)
		conf := fmt.Sprintf("# changed by e2e/k8s\ngreeting=hello-%d\n", rand.IntN(1e6))
		patch, _ := json.Marshal(map[string]any{"data": map[string]string{"demo.conf": conf}})
		updated := time.Now()
		c.kube("patch", "configmap", configMap, "--type", "merge", "-p", string(patch))
		for name := range before {
			waitFor(t, name+": the demo serving the new configuration", 3*time.Minute, func() bool {
				out, err := c.kubeErr("exec", name, "--", "wget", "-qO-", "http://127.0.0.1:8080/config")
				return err == nil && out == conf
			})
			t.Logf("%s: new configuration served %v after the update", name, time.Since(updated).Round(100*time.Millisecond))
		}
		// The kubelet's swap is one event: no second reload follows. A
		// duplicate would come within tini-hot's watch debounce; 3 s is
		// many times that.
		time.Sleep(3 * time.Second)
		for name, b := range before {
			st := c.status(name)
			if n := st.Reloads.Requested - b.Reloads.Requested; n != 1 {
				t.Errorf("%s: %d reloads after one ConfigMap update, want 1", name, n)
			}
		}
		l.finish(t, "ConfigMap update")
	})

	t.Run("metrics", func(t *testing.T) {
		// f. Scraped at the pod IP, as Prometheus does.
		for _, p := range c.pods() {
			body := c.kube("exec", loaderPod, "--", "/loader", "-get", fmt.Sprintf("http://%s/metrics", net.JoinHostPort(p.Status.PodIP, "9090")))
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err := parser.TextToMetricFamilies(strings.NewReader(body))
			if err != nil || len(families) == 0 {
				t.Errorf("%s: /metrics: %d families, %v", p.Name, len(families), err)
			}
		}
	})

	t.Run("memory", func(t *testing.T) {
		// e. Each pod's app holds 70 MiB: a second generation would not
		// fit in limits.memory (128 Mi), and the reload is refused.
		c.kube("set", "env", "deployment/"+deployment, "DEMO_HOLD_MIB=70")
		c.kube("rollout", "status", "deployment/"+deployment, "--timeout", "5m")
		p := c.pods()[0].Name
		out, err := c.kubeErr("exec", p, "--", "/tini-hot", "reload")
		if err == nil || !strings.Contains(err.Error(), "not enough memory for a second generation") {
			t.Errorf("reload with 70 MiB of 128: %q, %v; want it refused for memory", out, err)
		} else {
			t.Logf("reload refused: %v", err)
		}
		if st := c.status(p); st.Reloads.Refused != 1 {
			t.Errorf("%s: %d reloads refused, want 1", p, st.Reloads.Refused)
		}
		// An app over the limit: the OOM killer ends it, tini-hot names
		// it, and the container ends with 137. maxUnavailable 0 keeps
		// the old pods serving meanwhile.
		c.kube("set", "env", "deployment/"+deployment, "DEMO_HOLD_MIB=200")
		var oom corev1.Pod
		waitFor(t, "a container that the OOM killer ended", 3*time.Minute, func() bool {
			var l corev1.PodList
			c.get(&l, "pods", "-l", podsOf)
			for _, p := range l.Items {
				for _, cs := range p.Status.ContainerStatuses {
					if cs.LastTerminationState.Terminated != nil {
						oom = p
						return true
					}
				}
			}
			return false
		})
		cs := oom.Status.ContainerStatuses[0]
		if term := cs.LastTerminationState.Terminated; term.ExitCode != 137 {
			t.Errorf("%s: last state exit %d (%s), want 137", oom.Name, term.ExitCode, term.Reason)
		} else {
			t.Logf("%s: last state exit %d (%s)", oom.Name, term.ExitCode, term.Reason)
		}
		logs := c.kube("logs", oom.Name, "--previous")
		if !strings.Contains(logs, "killed by the OOM killer") {
			t.Errorf("%s: tini-hot's log does not name the OOM kill:\n%s", oom.Name, logs)
		}
		c.kube("set", "env", "deployment/"+deployment, "DEMO_HOLD_MIB-")
		c.kube("rollout", "status", "deployment/"+deployment, "--timeout", "5m")
	})

	t.Run("rollout", func(t *testing.T) {
		// d. Endpoint removal against preStop and SIGTERM, on a real
		// kube-proxy: the old pods go with no request failing.
		w := c.watchPods(t)
		l := c.startLoad(t, url)
		old := c.pods()
		c.kube("rollout", "restart", "deployment/"+deployment)
		c.kube("rollout", "status", "deployment/"+deployment, "--timeout", "5m")
		victim := c.pods()[0].Name
		c.kube("delete", "pod", victim, "--wait=false")
		waitFor(t, "the replacement pod Ready", 3*time.Minute, func() bool {
			ps := c.pods()
			return len(ps) == int(*d.Spec.Replicas) && !slices.ContainsFunc(ps, func(p corev1.Pod) bool { return p.Name == victim || !ready(p) })
		})
		for _, p := range old {
			w.exited(t, p.Name, grace)
		}
		w.exited(t, victim, grace)
		l.finish(t, "rollout restart and a pod deleted")
	})
}

// ready reports whether p's Ready condition holds.
func ready(p corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// stillReady checks that pods are Ready with no container restart: the
// liveness probe held.
func (c *cluster) stillReady(t *testing.T) {
	t.Helper()
	for _, p := range c.pods() {
		if !ready(p) {
			t.Errorf("%s: not Ready", p.Name)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("%s: container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
			}
		}
	}
}

// podWatch records every version of the demo's pods that the API shows.
type podWatch struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen map[string][]corev1.Pod
}

// watchPods runs `kubectl get pods --watch` until the test ends.
func (c *cluster) watchPods(t *testing.T) *podWatch {
	w := &podWatch{seen: map[string][]corev1.Pod{}}
	w.cmd = exec.Command(c.kubectl, "-n", c.ns, "get", "pods", "-l", podsOf, "--watch", "--output-watch-events", "-o", "json")
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill(); _ = w.cmd.Wait() })
	go func() {
		dec := json.NewDecoder(out)
		for {
			var ev struct {
				Type   string     `json:"type"`
				Object corev1.Pod `json:"object"`
			}
			if err := dec.Decode(&ev); err != nil {
				return
			}
			w.mu.Lock()
			w.seen[ev.Object.Name] = append(w.seen[ev.Object.Name], ev.Object)
			w.mu.Unlock()
		}
	}()
	return w
}

// exited checks that pod was deleted, its container exited 0 and it was
// gone within grace of its deletion.
func (w *podWatch) exited(t *testing.T, pod string, grace time.Duration) {
	t.Helper()
	var last *corev1.Pod
	var deleted time.Time // when the deletion was asked for
	waitFor(t, pod+": deleted", grace+time.Minute, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		vs := w.seen[pod]
		if len(vs) == 0 {
			return false
		}
		for _, v := range vs {
			// The first version being deleted: its deletion time is the
			// request's plus its grace period (the kubelet's final
			// deletion, once the containers are gone, sets a grace of 0).
			if v.DeletionTimestamp != nil && deleted.IsZero() {
				deleted = v.DeletionTimestamp.Add(-time.Duration(*v.DeletionGracePeriodSeconds) * time.Second)
			}
		}
		last = &vs[len(vs)-1]
		for _, cs := range last.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				return false
			}
		}
		return last.DeletionTimestamp != nil
	})
	for _, cs := range last.Status.ContainerStatuses {
		term := cs.State.Terminated
		took := term.FinishedAt.Sub(deleted)
		t.Logf("%s: container %s exited %d (%s), %v after the deletion", pod, cs.Name, term.ExitCode, term.Reason, took.Round(time.Second))
		if term.ExitCode != 0 {
			t.Errorf("%s: container %s exited %d, want 0", pod, cs.Name, term.ExitCode)
		}
		if took > grace {
			t.Errorf("%s: exited %v after the deletion, beyond the grace period %v", pod, took, grace)
		}
	}
}

// load is a load run in the loader pod (e2e/k8s/loader), until finish.
type load struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	c      *cluster
	stderr bytes.Buffer
}

// startLoad starts a load of url in the loader pod and returns once it
// runs: the URL has answered, and the clients are at work.
func (c *cluster) startLoad(t *testing.T, url string) *load {
	t.Helper()
	l := &load{c: c}
	l.cmd = exec.Command(c.kubectl, "-n", c.ns, "exec", loaderPod, "--", "/loader", "-url", url)
	l.cmd.Stderr = &l.stderr
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.out = bufio.NewReader(out)
	if line, err := l.out.ReadString('\n'); err != nil || line != "started\n" {
		_ = l.cmd.Wait()
		t.Fatalf("load of %s: %q, %v: %s", url, line, err, l.stderr.Bytes())
	}
	return l
}

// finish stops the load, logs what its clients saw and fails the test
// on any failed request.
func (l *load) finish(t *testing.T, step string) {
	t.Helper()
	l.c.kube("exec", loaderPod, "--", "/loader", "-stop")
	line, _ := l.out.ReadString('\n')
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("%s: the load: %v: %s", step, err, l.stderr.Bytes())
	}
	var res struct {
		Counts  map[string]map[string]int `json:"counts"`
		FirstMS int64                     `json:"first_ms"`
		LastMS  int64                     `json:"last_ms"`
		Seconds float64                   `json:"seconds"`
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("%s: the load's result %q: %v", step, line, err)
	}
	total, failed := 0, 0
	var parts []string
	for _, kind := range slices.Sorted(maps.Keys(res.Counts)) {
		var fails []string
		for k, n := range res.Counts[kind] {
			total += n
			if k != "ok" {
				failed += n
				fails = append(fails, fmt.Sprintf("%d %s", n, k))
			}
		}
		slices.Sort(fails)
		if len(fails) == 0 {
			fails = []string{"none"}
		}
		parts = append(parts, fmt.Sprintf("%s: %d ok, failed: %s", kind, res.Counts[kind]["ok"], strings.Join(fails, ", ")))
	}
	t.Logf("%s: %d requests in %.0fs, %d failed (%s)", step, total, res.Seconds, failed, strings.Join(parts, "; "))
	if failed > 0 || total == 0 {
		t.Errorf("%s: %d of %d requests failed, from %v to %v after the load began", step, failed, total,
			time.Duration(res.FirstMS)*time.Millisecond, time.Duration(res.LastMS)*time.Millisecond)
	}
}
