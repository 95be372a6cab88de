package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/sys/unix"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParse(t *testing.T) {
	cfg, err := Parse([]string{"-s", "-g", "-vv", "-e", "7", "-e", "9,10", "-p", "KILL", "--kill-timeout", "2s", "--", "app", "-x"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Subreaper || !cfg.Supervisor.SignalGroup || cfg.Verbosity != 3 || cfg.PdeathSignal != unix.SIGKILL || cfg.Supervisor.KillTimeout != 2*time.Second {
		t.Errorf("flags not parsed: %+v", cfg)
	}
	if cfg.Remap.String() != "7,9,10" {
		t.Errorf("remap = %s", cfg.Remap)
	}
	if strings.Join(cfg.Supervisor.Command, " ") != "app -x" {
		t.Errorf("command = %q", cfg.Supervisor.Command)
	}
}

func TestParseCommandWithoutDash(t *testing.T) {
	cfg, err := Parse([]string{"-g", "app", "-g"}, env(nil))
	if err != nil || strings.Join(cfg.Supervisor.Command, " ") != "app -g" {
		t.Fatalf("parse = %+v, %v; want the command app -g", cfg, err)
	}
	cfg, err = Parse([]string{"--", "version"}, env(nil))
	if err != nil || cfg.Version || strings.Join(cfg.Supervisor.Command, " ") != "version" {
		t.Fatalf("-- version: %+v, %v; want the command version", cfg, err)
	}
	cfg, err = Parse([]string{"version"}, env(nil))
	if err != nil || !cfg.Version {
		t.Fatalf("version: %+v, %v; want the subcommand", cfg, err)
	}
}

func TestParseEnv(t *testing.T) {
	cfg, err := Parse([]string{"app"}, env(map[string]string{
		"TINI_SUBREAPER": "", "TINI_KILL_PROCESS_GROUP": "", "TINI_VERBOSITY": "0",
		"TINI_HOT_KILL_TIMEOUT": "3s", "TINI_HOT_REMAP_EXIT": "4",
		"TINI_HOT_ON_LOW_MEMORY": "restart", "TINI_HOT_METRICS": ":9090",
		"TINI_HOT_RESTART": "on-failure", "TINI_HOT_RESTART_LIMIT": "3", "TINI_HOT_WATCH": "/a, /b",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Supervisor.OnLowMemory != upgrade.LowMemoryRestart || cfg.Metrics != ":9090" {
		t.Errorf("--on-low-memory %q, --metrics %q from the environment", cfg.Supervisor.OnLowMemory, cfg.Metrics)
	}
	if o := cfg.Supervisor; o.Restart != upgrade.RestartOnFailure || o.RestartLimit != 3 || o.RestartWindow != upgrade.DefaultRestartWindow || strings.Join(cfg.Watch, " ") != "/a /b" {
		t.Errorf("--restart %q limit %d window %v, --watch %q from the environment", o.Restart, o.RestartLimit, o.RestartWindow, cfg.Watch)
	}
	// The paths are checked when tini-hot starts: a usage error.
	if err := cfg.CheckPaths(); err == nil || err.Error() != "--watch /a: no such file or directory" {
		t.Errorf("CheckPaths: %v", err)
	}
	cfg.Watch = []string{t.TempDir()}
	if err := cfg.CheckPaths(); err != nil {
		t.Error(err)
	}
	if !cfg.Subreaper || !cfg.Supervisor.SignalGroup || cfg.Verbosity != 0 || cfg.Supervisor.KillTimeout != 3*time.Second || !cfg.Remap[4] {
		t.Errorf("environment not applied: %+v", cfg)
	}
	// The command line wins.
	cfg, err = Parse([]string{"--kill-timeout", "1s", "app"}, env(map[string]string{"TINI_HOT_KILL_TIMEOUT": "3s"}))
	if err != nil || cfg.Supervisor.KillTimeout != time.Second {
		t.Errorf("command line did not win: %+v, %v", cfg, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"--"}, {"--nope", "app"}, {"-e", "256", "app"}, {"-e", "x", "app"}, {"-p", "NOPE", "app"}, {"--kill-timeout", "0s", "app"}, {"--on-low-memory", "panic", "app"}, {"--metrics", "9090", "app"},
		{"--restart", "sometimes", "app"}, {"--restart-limit", "0", "app"}, {"--restart-window", "0s", "app"}, {"--watch", "", "app"}, {"--watch-debounce", "-1s", "app"}} {
		if cfg, err := Parse(args, env(nil)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", args, cfg)
		}
	}
	if _, err := Parse([]string{"app"}, env(map[string]string{"TINI_HOT_PDEATH_SIGNAL": "NOPE"})); err == nil || !strings.Contains(err.Error(), "TINI_HOT_PDEATH_SIGNAL=NOPE") {
		t.Errorf("bad environment value: %v, want an error naming it", err)
	}
}

func TestUsageNamesEveryEnv(t *testing.T) {
	cfg, err := Parse([]string{"--help"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	text := Usage(cfg.Flags)
	for _, v := range []string{"TINI_HOT_KILL_TIMEOUT", "TINI_HOT_REMAP_EXIT", "TINI_HOT_PROCESS_GROUP", "TINI_SUBREAPER"} {
		if !strings.Contains(text, v) {
			t.Errorf("usage lacks %s", v)
		}
	}
}

// FuzzParseExitCode: accepted codes are exactly the decimals 0-255.
func FuzzParseExitCode(f *testing.F) {
	for _, s := range []string{"0", "255", "256", "-1", "+7", "007", " 1", "1e2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseExitCode(s)
		if err == nil && (n < 0 || n > 255) {
			t.Fatalf("parseExitCode(%q) = %d", s, n)
		}
	})
}

// FuzzParse: no command line makes Parse or ParseClient panic, and what
// they accept keeps their invariants.
func FuzzParse(f *testing.F) {
	f.Add("-vvv\x00-e\x007\x00--\x00app")
	f.Add("--kill-timeout\x00-5s\x00app")
	f.Add("-p\x00SIG99\x00version")
	f.Add("--grace-period\x002s\x00--shutdown-delay\x001s\x00app")
	f.Add("prestop\x00--delay\x005s")
	f.Add("probe\x00--liveness\x00--timeout\x00-1s")
	f.Fuzz(func(t *testing.T, joined string) {
		cfg, err := Parse(strings.Split(joined, "\x00"), env(nil))
		if err != nil || cfg.Help || cfg.Version {
			return
		}
		if cfg.Subcommand == "" {
			if len(cfg.Supervisor.Command) == 0 || cfg.Supervisor.GracePeriod <= 0 || cfg.Supervisor.ShutdownDelay < 0 || cfg.Supervisor.ShutdownDelay >= cfg.Supervisor.GracePeriod {
				t.Fatalf("accepted %+v", cfg)
			}
			return
		}
		if o, err := ParseClient(cfg); err == nil && (o.Timeout < 0 || o.Delay < 0) {
			t.Fatalf("accepted %+v", o)
		}
	})
}

func TestParseTermination(t *testing.T) {
	cfg, err := Parse([]string{"--shutdown-delay", "5s", "app"}, env(map[string]string{"TINI_HOT_GRACE_PERIOD": "45s"}))
	if err != nil || cfg.Supervisor.GracePeriod != 45*time.Second || cfg.Supervisor.ShutdownDelay != 5*time.Second {
		t.Fatalf("Parse = %+v, %v", cfg, err)
	}
	cfg, err = Parse([]string{"app"}, env(nil))
	if err != nil || cfg.Supervisor.GracePeriod != 30*time.Second || cfg.Supervisor.ShutdownDelay != 0 {
		t.Fatalf("defaults: %+v, %v; want 30s and 0", cfg, err)
	}
	for _, args := range [][]string{
		{"--grace-period", "0s", "app"},
		{"--grace-period", "5s", "--shutdown-delay", "5s", "app"},
		{"--shutdown-delay", "-1s", "app"},
	} {
		if _, err := Parse(args, env(nil)); err == nil {
			t.Errorf("Parse(%q) accepted", args)
		}
	}
	for _, sub := range []string{"probe", "prestop", "reload", "status"} {
		cfg, err := Parse([]string{sub, "--x"}, env(nil))
		if err != nil || cfg.Subcommand != sub || strings.Join(cfg.Args, " ") != "--x" {
			t.Errorf("Parse(%s) = %+v, %v", sub, cfg, err)
		}
	}
}

func TestParseClientLine(t *testing.T) {
	cfg, o, err := ParseClientLine([]string{"prestop", "--delay", "5s"})
	if err != nil || cfg.Subcommand != "prestop" || o.Delay != 5*time.Second || o.Timeout != DefaultProbeTimeout {
		t.Fatalf("prestop: %+v %+v %v", cfg, o, err)
	}
	if _, o, err := ParseClientLine([]string{"probe", "--liveness"}); err != nil || !o.Liveness {
		t.Fatalf("probe --liveness: %+v %v", o, err)
	}
	for _, bad := range [][]string{{"app"}, {"probe", "--delay", "1s"}, {"prestop", "--delay", "-1s"}, {"status", "extra"}} {
		if _, _, err := ParseClientLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestParseEnvPrecedence: a variable for a flag given on the command line
// is never read, even when it is invalid; a subcommand reads only
// TINI_HOT_CONTROL.
func TestParseEnvPrecedence(t *testing.T) {
	bad := env(map[string]string{"TINI_HOT_GRACE_PERIOD": "30", "TINI_HOT_LISTEN": "http://:80", "TINI_HOT_CONTROL": "/tmp/x.sock"})
	cfg, err := Parse([]string{"--grace-period", "40s", "-l", "tcp://:8080", "app"}, bad)
	if err != nil || cfg.Supervisor.GracePeriod != 40*time.Second || len(cfg.Listen) != 1 || cfg.Control != "/tmp/x.sock" {
		t.Fatalf("flags on the command line with bad variables: %+v, %v", cfg, err)
	}
	for _, sub := range []string{"reload", "status", "probe", "prestop"} {
		cfg, err := Parse([]string{sub}, bad)
		if err != nil || cfg.Control != "/tmp/x.sock" {
			t.Errorf("%s with bad supervisor variables: %+v, %v", sub, cfg, err)
		}
	}
	if _, err := Parse([]string{"app"}, bad); err == nil || !strings.Contains(err.Error(), "TINI_HOT_") {
		t.Errorf("supervising with bad variables: %v, want an error naming one", err)
	}
	cfg, err = Parse([]string{"-v", "app"}, env(map[string]string{"TINI_VERBOSITY": "3"}))
	if err != nil || cfg.Verbosity != 2 {
		t.Errorf("-v with TINI_VERBOSITY=3: verbosity %d, %v; want 2", cfg.Verbosity, err)
	}
}

// TestSubcommandHelp: every subcommand has its own help, exits 0, and
// tells what --timeout 0 means where it has one.
func TestSubcommandHelp(t *testing.T) {
	for _, sub := range []string{"reload", "status", "probe", "prestop"} {
		var out, errs strings.Builder
		cfg, err := Parse([]string{sub, "--help"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if code := RunClient(cfg, &out, &errs); code != 0 || errs.Len() != 0 || !strings.HasPrefix(out.String(), "Usage: tini-hot [--control PATH] "+sub) {
			t.Errorf("%s --help: status %d, stderr %q, stdout %q", sub, code, errs.String(), out.String())
		}
		if sub != "status" && !strings.Contains(out.String(), "--timeout D") {
			t.Errorf("%s --help does not explain --timeout:\n%s", sub, out.String())
		}
	}
	if !strings.Contains(ClientUsage("reload"), "0 waits until the upgrade has succeeded or failed") {
		t.Errorf("reload --help does not say what --timeout 0 means")
	}
}

// TestClientNotRunning: a missing control socket is one line naming the
// path and the way to set it.
func TestClientNotRunning(t *testing.T) {
	path := t.TempDir() + "/none.sock"
	cfg, err := Parse([]string{"--control", path, "status"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	code := RunClient(cfg, &out, &errs)
	want := "tini-hot status: control socket " + path + ": no such file or directory: is tini-hot running? set --control or TINI_HOT_CONTROL\n"
	if code != ExitFailure || errs.String() != want {
		t.Errorf("status without a supervisor: %d %q; want 1 %q", code, errs.String(), want)
	}
}

// The plain status shows the container's memory and each live
// generation's figures.
func TestPrintStatus(t *testing.T) {
	started := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	ready := started.Add(24 * time.Millisecond)
	slot0 := 0
	st := upgrade.Status{
		Pid: 1, State: "running", Reloads: upgrade.ReloadCounters{Requested: 1, Refused: 1},
		Container: upgrade.ContainerStatus{Cgroup: "v1", Dir: "/sys/fs/cgroup/memory/user.slice", MemoryLimitBytes: 96 << 20, MemoryUsageBytes: 60<<20 + 820<<10, OOMKills: 2},
		Generations: []upgrade.GenerationStatus{
			{Number: 1, Pid: 13, State: "serving", Started: started, Ready: &ready, NoticesIgnored: 3, Slot: &slot0, Queued: 2,
				GenerationUsage: &upgrade.GenerationUsage{MemoryBytes: 51 << 20, Processes: 1, Threads: 7, FDs: 9, CPUSeconds: 0.25}},
		},
		Listeners: []upgrade.ListenerStatus{
			{Name: "http", Address: "tcp://127.0.0.1:8080", Listening: true, Mode: "steered", Slots: 7},
			{Name: "dns", Address: "udp://127.0.0.1:53", Listening: true, Mode: "shared", Fallback: "protocol not available"},
		},
	}
	var b strings.Builder
	printStatus(&b, &st)
	for _, want := range []string{
		"1 refused",
		// Named by its directory: outside a container it is not one.
		"memory: cgroup v1 /sys/fs/cgroup/memory/user.slice, limit 96 MiB, working set 60.8 MiB, 2 OOM kills",
		"MEMORY  PROCS  THREADS  FDS  CPU",
		"24ms   51 MiB  1      7        9    0.25s",
		"generation 1: 3 notify messages ignored, from processes outside it (the log names them)",
		"listener http tcp://127.0.0.1:8080\n  steered: 7 slots; generation 1 on slot 0 with 2 queued\n",
		"listener dns udp://127.0.0.1:53\n  shared: the kernel refused steering (protocol not available)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "container") {
		t.Errorf("status calls the cgroup a container:\n%s", b.String())
	}
	const early = "signals: only those that would end tini-hot are forwarded yet"
	if strings.Contains(b.String(), early) {
		t.Errorf("status with no Signals says %q", early)
	}
	b.Reset()
	st.Signals = upgrade.SignalsEssential
	printStatus(&b, &st)
	if !strings.Contains(b.String(), early) {
		t.Errorf("status in the first ms lacks %q:\n%s", early, b.String())
	}
}
