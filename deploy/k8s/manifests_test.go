// Package k8s_test checks the Kubernetes manifests in this directory: each
// decodes strictly into its k8s.io/api type, and the probes, the preStop
// hook, the grace period and tini-hot's own flags agree.
package k8s_test

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/cli"
	"github.com/tini-hot/tini-hot/upgrade"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; anything else in the file is an error.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// manifests holds every object of the directory, decoded strictly.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	kustomize   *kustomization
}

// decode reads one manifest into the k8s.io/api type its kind names;
// unknown and duplicate fields are errors.
func decode(t *testing.T, m *manifests, name string, b []byte) {
	t.Helper()
	if strings.Contains(string(b), "\n---") {
		t.Fatalf("%s: one object per file, please", name)
	}
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var obj any
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		d := &appsv1.Deployment{}
		m.deployments, obj = append(m.deployments, d), d
	case "v1 Service":
		s := &corev1.Service{}
		m.services, obj = append(m.services, s), s
	case "v1 ConfigMap":
		c := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, c), c
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		m.kustomize = &kustomization{}
		obj = m.kustomize
	default:
		t.Fatalf("%s: no check for %s %s", name, meta.APIVersion, meta.Kind)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		decode(t, m, f, b)
	}
	if m.kustomize == nil || len(m.deployments) != 1 || len(m.services) != 1 {
		t.Fatalf("want a kustomization, a Deployment and a Service; have %d deployments, %d services", len(m.deployments), len(m.services))
	}
	var listed []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			listed = append(listed, f)
		}
	}
	if got := slices.Sorted(slices.Values(m.kustomize.Resources)); !slices.Equal(got, listed) {
		t.Errorf("kustomization resources %v, want every manifest %v", got, listed)
	}
	return m
}

// TestStrictDecoding shows that the decoding above refuses what the
// API server would not know.
func TestStrictDecoding(t *testing.T) {
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {a: b}\n  prots: []\n")
	if err := yaml.UnmarshalStrict(bad, &corev1.Service{}); err == nil || !strings.Contains(err.Error(), `unknown field "prots"`) {
		t.Fatalf("a misspelt field decoded: %v", err)
	}
}

// clientOptions parses a /tini-hot SUBCOMMAND command line as tini-hot
// does.
func clientOptions(t *testing.T, command []string, sub string) cli.ClientOptions {
	t.Helper()
	if len(command) < 2 || command[0] != "/tini-hot" {
		t.Fatalf("%q: want /tini-hot %s", command, sub)
	}
	cfg, o, err := cli.ParseClientLine(command[1:])
	if err != nil || cfg.Subcommand != sub {
		t.Fatalf("%q: want /tini-hot %s (%v)", command, sub, err)
	}
	return o
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d := m.deployments[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	// tini-hot is the entrypoint and its flags parse as tini-hot would.
	if len(c.Command) == 0 || c.Command[0] != "/tini-hot" {
		t.Fatalf("command %q: want /tini-hot as the entrypoint", c.Command)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	cfg, err := cli.Parse(c.Command[1:], func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("tini-hot flags: %v", err)
	}
	if cfg.Subcommand != "" || len(cfg.Supervisor.Command) == 0 || len(cfg.Listen) == 0 {
		t.Fatalf("command %q: want -l and an application", c.Command)
	}

	// The listening socket is the container port the Service targets.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, l := range cfg.Listen {
		_, port, err := net.SplitHostPort(l.Address)
		n, _ := strconv.Atoi(port)
		if err != nil || !slices.Contains(slices.Collect(maps.Values(ports)), int32(n)) {
			t.Errorf("-l %s: port %s is no containerPort (%v)", l, port, ports)
		}
	}
	// The metrics endpoint is a container port, and the scrape
	// annotations name it.
	if cfg.Metrics != "" {
		_, port, _ := net.SplitHostPort(cfg.Metrics)
		a := d.Spec.Template.Annotations
		if n, _ := strconv.Atoi(port); ports["metrics"] != int32(n) {
			t.Errorf("--metrics %s: want a containerPort named metrics on port %s, have %v", cfg.Metrics, port, ports)
		}
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("scrape annotations %v do not point at --metrics %s /metrics", a, cfg.Metrics)
		}
	}
	// Every --watch path is in a whole ConfigMap or Secret volume of this
	// pod (subPath mounts never update), and the ConfigMap exists here.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, w := range cfg.Watch {
		found := false
		for _, vm := range c.VolumeMounts {
			if w != vm.MountPath && !strings.HasPrefix(w, vm.MountPath+"/") {
				continue
			}
			v := volumes[vm.Name]
			switch {
			case vm.SubPath != "":
				t.Errorf("--watch %s: volume %s is mounted with subPath %s, which the kubelet never updates", w, vm.Name, vm.SubPath)
			case v.ConfigMap == nil && v.Secret == nil:
				t.Errorf("--watch %s: volume %s is no ConfigMap or Secret", w, vm.Name)
			case v.ConfigMap != nil && !slices.ContainsFunc(m.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == v.ConfigMap.Name }):
				t.Errorf("--watch %s: ConfigMap %s is not in this directory", w, v.ConfigMap.Name)
			}
			found = true
		}
		if !found {
			t.Errorf("--watch %s: no volume is mounted there", w)
		}
	}
	// Two generations overlap during an upgrade: a memory limit makes
	// tini-hot check that the second fits.
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no resources.limits.memory: the headroom check before an upgrade has nothing to check against")
	}
	svc := m.services[0]
	for k, v := range svc.Spec.Selector {
		if pod := d.Spec.Template.Labels[k]; pod != v {
			t.Errorf("service selector %s=%s does not match the pod (%q)", k, v, pod)
		}
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("service port %s targets %s, not a named container port", p.Name, p.TargetPort.String())
		}
	}

	// Probes and preStop call tini-hot, no shell.
	rp, lp := c.ReadinessProbe, c.LivenessProbe
	if rp == nil || rp.Exec == nil || lp == nil || lp.Exec == nil {
		t.Fatalf("want exec readiness and liveness probes, have %+v and %+v", rp, lp)
	}
	if o := clientOptions(t, rp.Exec.Command, "probe"); o.Liveness {
		t.Errorf("readinessProbe %q: a liveness check", rp.Exec.Command)
	}
	if o := clientOptions(t, lp.Exec.Command, "probe"); !o.Liveness {
		t.Errorf("livenessProbe %q: want --liveness", lp.Exec.Command)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": rp, "liveness": lp} {
		o := clientOptions(t, p.Exec.Command, "probe")
		if time.Duration(p.TimeoutSeconds)*time.Second <= o.Timeout {
			t.Errorf("%s probe timeoutSeconds %d: tini-hot probe gives up only after %v", name, p.TimeoutSeconds, o.Timeout)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatal("no preStop exec hook")
	}
	delay := clientOptions(t, c.Lifecycle.PreStop.Exec.Command, "prestop").Delay
	if delay <= 0 {
		t.Errorf("preStop %q: no --delay", c.Lifecycle.PreStop.Exec.Command)
	}

	// The endpoint is gone before SIGTERM: readiness fails within the
	// preStop delay.
	notice := time.Duration(rp.PeriodSeconds*rp.FailureThreshold) * time.Second
	if notice > delay+cfg.Supervisor.ShutdownDelay {
		t.Errorf("readiness notices the shutdown after up to %v, longer than preStop delay %v + shutdown delay %v", notice, delay, cfg.Supervisor.ShutdownDelay)
	}

	// The grace period covers preStop, the shutdown delay, a full drain
	// and tini-hot's kill margin; tini-hot counts the same grace period.
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if cfg.Supervisor.GracePeriod != grace {
		t.Errorf("tini-hot --grace-period %v, terminationGracePeriodSeconds %v: they must be equal", cfg.Supervisor.GracePeriod, grace)
	}
	need := delay + cfg.Supervisor.ShutdownDelay + cfg.Supervisor.DrainTimeout + upgrade.KillMargin(grace)
	if grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + shutdown delay %v + drain %v + margin %v",
			grace, delay, cfg.Supervisor.ShutdownDelay, cfg.Supervisor.DrainTimeout, upgrade.KillMargin(grace))
	}

	// A read-only root needs a writable /run for the control socket.
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		dir := filepath.Dir(cfg.Control)
		ok := false
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == dir && !vm.ReadOnly {
				ok = true
			}
		}
		if !ok {
			t.Errorf("readOnlyRootFilesystem without a writable mount at %s for the control socket %s", dir, cfg.Control)
		}
	}
	t.Logf("grace %v >= preStop %v + shutdown delay %v + drain %v + margin %v; readiness notices within %v",
		grace, delay, cfg.Supervisor.ShutdownDelay, cfg.Supervisor.DrainTimeout, upgrade.KillMargin(grace), notice)
}
