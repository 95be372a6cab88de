// Package cli is tini-hot's command line: flags and their environment
// variables, the help text, and the client subcommands (reload, status,
// probe, prestop).
package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tini-hot/tini-hot/reaper"
	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/sys/unix"
)

// Exit statuses of tini-hot itself and its subcommands.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// Config is a parsed command line.
type Config struct {
	Flags *pflag.FlagSet

	Help         bool
	Version      bool
	Subreaper    bool
	Group        bool
	WarnOnReap   bool
	Verbosity    int
	Remap        exitCodes
	PdeathSignal unix.Signal
	KillTimeout  time.Duration
	Command      []string

	Listen        []upgrade.ListenSpec
	Ready         upgrade.Readiness
	ReadyTimeout  time.Duration
	DrainSignal   unix.Signal
	DrainTimeout  time.Duration
	ReloadSignal  unix.Signal
	MaxDraining   int
	GracePeriod   time.Duration
	ShutdownDelay time.Duration
	Control       string
	// Subcommand is reload, status, probe or prestop, its arguments in
	// Command; "" supervises Command.
	Subcommand string
}

// DefaultControl is the control socket's path when neither --control nor
// TINI_HOT_CONTROL says otherwise.
const DefaultControl = "/run/tini-hot.sock"

// envPrefix names the environment variable of every flag:
// --kill-timeout is TINI_HOT_KILL_TIMEOUT.
const envPrefix = "TINI_HOT_"

// Parse reads the command line, after the environment: every flag may
// also come from TINI_HOT_<FLAG>, and tini's TINI_SUBREAPER,
// TINI_KILL_PROCESS_GROUP and TINI_VERBOSITY are honoured. The command
// line wins over the environment.
func Parse(args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg := &Config{Remap: exitCodes{}}
	fs := pflag.NewFlagSet("tini-hot", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.Usage = func() {}
	fs.SetOutput(io.Discard) // errors are printed by run, in one line
	cfg.Flags = fs

	var pdeath signalValue
	drain := signalValue{sig: upgrade.DefaultDrainSignal}
	reload := signalValue{sig: upgrade.DefaultReloadSignal, allowNone: true}
	ready := readyValue{r: upgrade.DefaultReadiness}
	listen := listenValue{specs: &cfg.Listen}
	fs.BoolVarP(&cfg.Help, "help", "h", false, "show this help and exit")
	fs.BoolVar(&cfg.Version, "version", false, "print the version and exit")
	fs.BoolVarP(&cfg.Subreaper, "subreaper", "s", false, "register as a child subreaper (always done when not PID 1; accepted for tini compatibility)")
	fs.BoolVarP(&cfg.Group, "process-group", "g", false, "forward signals to the child's process group, not just the child")
	fs.BoolVarP(&cfg.WarnOnReap, "warn-on-reap", "w", false, "log a warning for every reaped orphan")
	fs.CountVarP(&cfg.Verbosity, "verbose", "v", "more output; repeat up to 3 times (default level 1: warnings)")
	fs.VarP(cfg.Remap, "remap-exit", "e", "exit 0 when the child exits with `CODE` (0-255; repeatable)")
	fs.VarP(&pdeath, "pdeath-signal", "p", "send tini-hot `SIGNAL` when its parent dies, e.g. SIGKILL")
	fs.DurationVar(&cfg.KillTimeout, "kill-timeout", upgrade.DefaultKillTimeout, "after the child exits, time from SIGTERM to SIGKILL for processes it left")
	fs.VarP(&listen, "listen", "l", "bind `[NAME=]URL` and hand it to every generation (tcp://, tcp4://, tcp6://, udp://, unix://; repeatable)")
	fs.Var(&ready, "ready", "when a new generation is ready: notify, delay:DURATION or exec:COMMAND")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", upgrade.DefaultReadyTimeout, "a new generation not ready in time is killed and the reload fails")
	fs.Var(&drain, "drain-signal", "`SIGNAL` that tells an old generation to finish its requests and exit")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", upgrade.DefaultDrainTimeout, "an old generation still alive after this is killed, whole process tree")
	fs.Var(&reload, "reload-signal", "`SIGNAL` that starts a reload; none forwards it to the application")
	fs.IntVar(&cfg.MaxDraining, "max-draining", upgrade.DefaultMaxDraining, "reloads are refused while this many old generations still drain")
	fs.DurationVar(&cfg.GracePeriod, "grace-period", upgrade.DefaultGracePeriod, "after SIGTERM (or a prestop just before it), processes still alive get SIGKILL shortly before `D` has passed, so tini-hot exits first; set it to terminationGracePeriodSeconds")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "after SIGTERM (or prestop) keep serving for `D`, not ready, before draining")
	fs.StringVar(&cfg.Control, "control", DefaultControl, "control socket `PATH` (reload, status, probe, prestop)")
	cfg.Verbosity = 1

	if err := applyEnv(fs, lookupEnv); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg.PdeathSignal, cfg.DrainSignal, cfg.ReloadSignal, cfg.Ready = pdeath.sig, drain.sig, reload.sig, ready.r
	if cfg.Help || cfg.Version {
		return cfg, nil
	}
	rest := fs.Args()
	if len(rest) > 0 && fs.ArgsLenAtDash() != 0 {
		// A subcommand is recognised only before "--": `tini-hot --
		// version` runs a program named version.
		switch rest[0] {
		case "version":
			cfg.Version = true
			return cfg, nil
		case "reload", "status", "probe", "prestop":
			cfg.Subcommand = rest[0]
			cfg.Command = rest[1:]
			return cfg, nil
		}
	}
	if len(rest) == 0 {
		return nil, errors.New("no command given: usage is tini-hot [flags] -- COMMAND [ARG...]")
	}
	for name, d := range map[string]time.Duration{"kill-timeout": cfg.KillTimeout, "ready-timeout": cfg.ReadyTimeout, "drain-timeout": cfg.DrainTimeout, "grace-period": cfg.GracePeriod} {
		if d <= 0 {
			return nil, fmt.Errorf("--%s %v: must be positive", name, d)
		}
	}
	if cfg.ShutdownDelay < 0 || cfg.ShutdownDelay >= cfg.GracePeriod {
		return nil, fmt.Errorf("--shutdown-delay %v: must be at least 0 and less than --grace-period %v", cfg.ShutdownDelay, cfg.GracePeriod)
	}
	if cfg.MaxDraining < 1 {
		return nil, fmt.Errorf("--max-draining %d: must be at least 1", cfg.MaxDraining)
	}
	cfg.Command = rest
	return cfg, nil
}

// applyEnv sets flags from the environment.
func applyEnv(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	var err error
	set := func(name, key, value string) {
		if err != nil {
			return
		}
		if e := fs.Set(name, value); e != nil {
			err = fmt.Errorf("%s=%s: %w", key, value, e)
		}
	}
	// tini's variables: present means on (tini tests only for presence).
	if _, ok := lookupEnv("TINI_SUBREAPER"); ok {
		set("subreaper", "TINI_SUBREAPER", "true")
	}
	if _, ok := lookupEnv("TINI_KILL_PROCESS_GROUP"); ok {
		set("process-group", "TINI_KILL_PROCESS_GROUP", "true")
	}
	if v, ok := lookupEnv("TINI_VERBOSITY"); ok {
		set("verbose", "TINI_VERBOSITY", v)
	}
	fs.VisitAll(func(f *pflag.Flag) {
		key := envName(f.Name)
		if v, ok := lookupEnv(key); ok && f.Name != "help" && f.Name != "version" {
			set(f.Name, key, v)
		}
	})
	return err
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Usage is the --help text.
func Usage(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString(`Usage: tini-hot [flags] -- COMMAND [ARG...]
       tini-hot [--control PATH] reload [--timeout D] [--wait-drained]
       tini-hot [--control PATH] status [--json]
       tini-hot [--control PATH] probe [--liveness] [--timeout D]
       tini-hot [--control PATH] prestop [--delay D]
       tini-hot version

tini-hot runs COMMAND as its child and stays PID 1 (or a subreaper): it reaps
every zombie, forwards signals and exits with the child's status (128+N when
the child died of signal N). It binds the -l sockets itself, hands them to the
application (systemd socket activation) and on the reload signal or
` + "`tini-hot reload`" + ` starts a new generation on them, waits until it is ready,
then drains the old one.

Flags (each also from the environment variable in brackets):
`)
	fs.VisitAll(func(f *pflag.Flag) {
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", " + name
		}
		varname, text := pflag.UnquoteUsage(f)
		if varname != "" && f.Value.Type() != "bool" && f.Value.Type() != "count" {
			name += " " + varname
		}
		fmt.Fprintf(&b, "  %-28s %s", name, text)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		if f.Name != "help" && f.Name != "version" {
			fmt.Fprintf(&b, " [%s]", envName(f.Name))
		}
		b.WriteString("\n")
	})
	b.WriteString(`
Also read: TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP, TINI_VERBOSITY (as tini).
Exit status: the child's; 2 usage error; 1 tini-hot failed to start it;
127 command not found; 126 command not executable.
Subcommands: 0 done (probe: ready), 1 failed or not ready (one line), 2 usage.
`)
	return b.String()
}

// exitCodes is the set of -e codes remapped to 0.
type exitCodes map[int]bool

// parseExitCode reads one -e value: a decimal from 0 to 255.
func parseExitCode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("exit code %q: want a number from 0 to 255", s)
	}
	return n, nil
}

func (e exitCodes) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		n, err := parseExitCode(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		e[n] = true
	}
	return nil
}

func (e exitCodes) String() string {
	codes := make([]int, 0, len(e))
	for c := range e {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

func (e exitCodes) Type() string { return "CODE" }

// signalValue is a flag holding a signal; with allowNone, "none" is
// upgrade.NoReloadSignal.
type signalValue struct {
	sig       unix.Signal
	allowNone bool
}

func (v *signalValue) Set(s string) error {
	if v.allowNone && strings.EqualFold(s, "none") {
		v.sig = upgrade.NoReloadSignal
		return nil
	}
	sig, err := reaper.ParseSignal(s)
	if err != nil {
		return err
	}
	v.sig = sig
	return nil
}

func (v *signalValue) String() string {
	switch v.sig {
	case 0:
		return ""
	case upgrade.NoReloadSignal:
		return "none"
	}
	return reaper.SignalName(v.sig)
}

func (v *signalValue) Type() string { return "SIGNAL" }

// readyValue is the --ready flag.
type readyValue struct{ r upgrade.Readiness }

func (v *readyValue) Set(s string) error {
	r, err := upgrade.ParseReadiness(s)
	if err != nil {
		return err
	}
	v.r = r
	return nil
}

func (v *readyValue) String() string { return v.r.String() }
func (v *readyValue) Type() string   { return "MODE" }

// listenValue is the repeatable -l flag.
type listenValue struct{ specs *[]upgrade.ListenSpec }

// Set takes one value, or several separated by commas (for
// TINI_HOT_LISTEN).
func (v *listenValue) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		spec, err := upgrade.ParseListen(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*v.specs = append(*v.specs, spec)
	}
	return nil
}

func (v *listenValue) String() string {
	parts := make([]string, len(*v.specs))
	for i, s := range *v.specs {
		parts[i] = s.Name + "=" + s.String()
	}
	return strings.Join(parts, ",")
}

func (v *listenValue) Type() string { return "URL" }
