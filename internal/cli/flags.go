// Package cli is tini-hot's command line: flags and their environment
// variables, the help texts, and the client subcommands (reload, status,
// probe, prestop).
package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tini-hot/tini-hot/internal/listen"
	"github.com/tini-hot/tini-hot/internal/watch"
	"github.com/tini-hot/tini-hot/reaper"
	"github.com/tini-hot/tini-hot/upgrade"
	"golang.org/x/sys/unix"
)

// Exit statuses of tini-hot itself and its subcommands.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// Config is a parsed command line. The supervisor's flags fill
// Supervisor directly; it is validated by upgrade.Options.Validate.
type Config struct {
	Flags *pflag.FlagSet

	Help         bool
	Version      bool
	Subreaper    bool
	Verbosity    int
	Remap        exitCodes
	PdeathSignal unix.Signal
	Listen       []listen.Spec
	// SharedSockets turns steering off: one socket per listener for
	// every generation.
	SharedSockets bool
	Control       string
	// Metrics is the address of the Prometheus endpoint, "" for none.
	Metrics string
	// Watch are the paths whose changes reload; WatchDebounce the quiet
	// window that ends a change.
	Watch         []string
	WatchDebounce time.Duration
	Supervisor    upgrade.Options
	// Subcommand is reload, status, probe or prestop, with its arguments
	// in Args, or version (with Version set); "" supervises
	// Supervisor.Command.
	Subcommand string
	Args       []string
}

// DefaultControl is the control socket's path when neither --control nor
// TINI_HOT_CONTROL says otherwise.
const DefaultControl = "/run/tini-hot.sock"

// envPrefix names the environment variable of every flag:
// --kill-timeout is TINI_HOT_KILL_TIMEOUT.
const envPrefix = "TINI_HOT_"

// subcommands are the first words that are not a command to supervise.
var subcommands = []string{"reload", "status", "probe", "prestop"}

// Parse reads the command line, then the environment for the flags the
// command line did not set: every flag may also come from
// TINI_HOT_<FLAG>, and tini's TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP and
// TINI_VERBOSITY are honoured. The command line wins, so a bad variable
// for a flag given on the command line is never read. A subcommand reads
// only TINI_HOT_CONTROL.
func Parse(args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg := &Config{Remap: exitCodes{}, WatchDebounce: watch.DefaultDebounce}
	o := &cfg.Supervisor
	fs := pflag.NewFlagSet("tini-hot", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.Usage = func() {}
	fs.SetOutput(io.Discard) // errors are printed by run, in one line
	cfg.Flags = fs

	o.SetDefaults() // the flags' defaults, shown by --help
	fs.BoolVarP(&cfg.Help, "help", "h", false, "show this help and exit")
	fs.BoolVar(&cfg.Version, "version", false, "print the version and exit")
	fs.BoolVarP(&cfg.Subreaper, "subreaper", "s", false, "register as a child subreaper (always done when not PID 1; accepted for tini compatibility)")
	fs.BoolVarP(&o.SignalGroup, "process-group", "g", false, "forward signals to the child's process group, not just the child")
	fs.BoolVarP(&o.WarnOnReap, "warn-on-reap", "w", false, "log a warning for every reaped orphan")
	fs.CountVarP(&cfg.Verbosity, "verbose", "v", "more output; repeat up to 3 times (default level 1: warnings)")
	fs.VarP(cfg.Remap, "remap-exit", "e", "exit 0 when the child exits with `CODE` (0-255; repeatable)")
	fs.VarP(&signalValue{sig: &cfg.PdeathSignal}, "pdeath-signal", "p", "send tini-hot `SIGNAL` when its parent dies, e.g. SIGKILL")
	fs.Var(positive(&o.KillTimeout), "kill-timeout", "after the child exits, time from SIGTERM to SIGKILL for processes it left")
	fs.VarP(&listenValue{specs: &cfg.Listen}, "listen", "l", "bind `[NAME=]URL` and hand it to every generation (tcp://, tcp4://, tcp6://, udp://, unix://; repeatable)")
	fs.BoolVar(&cfg.SharedSockets, "shared-sockets", false, "hand every generation the same TCP and UDP sockets, unsteered: new connections may reach any live generation (default: a socket per generation, steered to the serving one)")
	fs.Var(&readyValue{r: &o.Ready}, "ready", "when a new generation is ready: notify, delay:DURATION or exec:COMMAND")
	fs.Var(positive(&o.ReadyTimeout), "ready-timeout", "a new generation not ready in time fails the reload; it is drained, and killed at --drain-timeout")
	fs.Var(&signalValue{sig: &o.DrainSignal}, "drain-signal", "`SIGNAL` that tells an old generation to finish its requests and exit")
	fs.Var(positive(&o.DrainTimeout), "drain-timeout", "an old generation still alive after this is killed, whole process tree")
	fs.Var(&signalValue{sig: &o.ReloadSignal, allowNone: true}, "reload-signal", "`SIGNAL` that starts a reload; none forwards it to the application")
	fs.Var(&countValue{n: &o.MaxDraining}, "max-draining", "a reload waits while this many old generations still drain")
	fs.Var(positive(&o.GracePeriod), "grace-period", "after SIGTERM (or a prestop just before it), processes still alive get SIGKILL shortly before `D` has passed, so tini-hot exits first; set it to terminationGracePeriodSeconds")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 0, "after SIGTERM (or prestop) keep serving for `D`, not ready, before draining")
	fs.Var(&choiceValue[upgrade.RestartPolicy]{&o.Restart, upgrade.ParseRestartPolicy}, "restart", "when the serving generation exits on its own: never (end the container, as tini), on-failure (start it again on the held sockets after a non-zero status or a signal) or always")
	fs.Var(&countValue{n: &o.RestartLimit}, "restart-limit", "give up, and exit with the application's status, at the crash after N restarts within --restart-window")
	fs.Var(positive(&o.RestartWindow), "restart-window", "the window in which --restart-limit counts restarts")
	fs.Var(&pathsValue{paths: &cfg.Watch}, "watch", "reload when `PATH` changes: a file or directory, e.g. a ConfigMap volume (repeatable)")
	fs.Var(positive(&cfg.WatchDebounce), "watch-debounce", "a change is the events of a --watch PATH until `D` passes without one")
	fs.Var(&choiceValue[upgrade.LowMemory]{&o.OnLowMemory, upgrade.ParseLowMemory}, "on-low-memory", "when a second generation does not fit below the container's memory limit: refuse the reload, restart (drain the old one first: a gap in service) or ignore")
	fs.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics on `ADDR` (host:port), GET /metrics")
	fs.StringVar(&cfg.Control, "control", DefaultControl, "control socket `PATH` (reload, status, probe, prestop)")
	cfg.Verbosity = 1

	if err := fs.Parse(args); err != nil {
		return nil, didYouMean(fs, err)
	}
	if cfg.Help || cfg.Version {
		return cfg, nil
	}
	rest := fs.Args()
	if len(rest) > 0 && fs.ArgsLenAtDash() != 0 {
		// A subcommand is recognised only before "--": `tini-hot --
		// version` runs a program named version.
		switch {
		case rest[0] == "version":
			cfg.Version, cfg.Subcommand = true, "version"
			for _, a := range rest[1:] {
				if a != "-h" && a != "--help" {
					return nil, fmt.Errorf("version: unexpected argument %q", a)
				}
				cfg.Help = true
			}
			return cfg, nil
		case slices.Contains(subcommands, rest[0]):
			cfg.Subcommand, cfg.Args = rest[0], rest[1:]
			return cfg, applyEnv(fs, lookupEnv, func(name string) bool { return name == "control" })
		}
	}
	if err := applyEnv(fs, lookupEnv, func(name string) bool { return name != "help" && name != "version" }); err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return nil, errors.New("no command given: usage is tini-hot [flags] -- COMMAND [ARG...]")
	}
	o.Command = rest
	o.Expected = cfg.Remap
	if cfg.Metrics != "" {
		if _, _, err := net.SplitHostPort(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("--metrics %q: want HOST:PORT, e.g. :9090", cfg.Metrics)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// applyEnv sets the flags that wanted says apply and the command line
// did not set from their environment variables.
func applyEnv(fs *pflag.FlagSet, lookupEnv func(string) (string, bool), wanted func(name string) bool) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { onCommandLine[f.Name] = true })
	var err error
	set := func(name, key, value string) {
		if err != nil || onCommandLine[name] || !wanted(name) {
			return
		}
		if e := fs.Set(name, value); e != nil {
			err = fmt.Errorf("%s=%s: %w", key, value, e)
		}
	}
	// tini's variables: present means on (tini tests only for presence).
	// Ours come after, so they win.
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
		if v, ok := lookupEnv(key); ok {
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
then drains the old one. Each subcommand has its own --help.

Flags (each also from the environment variable in brackets; the command line
wins):
`)
	fs.VisitAll(func(f *pflag.Flag) {
		writeFlag(&b, f, f.Name != "help" && f.Name != "version")
	})
	b.WriteString(`
Also read: TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP, TINI_VERBOSITY (as tini).
Exit status: the child's; 2 usage error; 1 tini-hot failed to start it;
127 command not found; 126 command not executable.
Subcommands: 0 done (probe: ready), 1 failed or not ready (one line), 2 usage.
`)
	return b.String()
}

// writeFlag writes one line of help for f, with its environment
// variable when withEnv.
func writeFlag(b *strings.Builder, f *pflag.Flag, withEnv bool) {
	name := "--" + f.Name
	if f.Shorthand != "" {
		name = "-" + f.Shorthand + ", " + name
	}
	varname, text := pflag.UnquoteUsage(f)
	if varname != "" && f.Value.Type() != "bool" && f.Value.Type() != "count" {
		name += " " + varname
	}
	fmt.Fprintf(b, "  %-28s %s", name, text)
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
		fmt.Fprintf(b, " (default %s)", f.DefValue)
	}
	if withEnv {
		fmt.Fprintf(b, " [%s]", envName(f.Name))
	}
	b.WriteString("\n")
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
	sig       *unix.Signal
	allowNone bool
}

func (v *signalValue) Set(s string) error {
	if v.allowNone && strings.EqualFold(s, "none") {
		*v.sig = upgrade.NoReloadSignal
		return nil
	}
	sig, err := reaper.ParseSignal(s)
	if err != nil {
		return err
	}
	*v.sig = sig
	return nil
}

func (v *signalValue) String() string {
	switch *v.sig {
	case 0:
		return ""
	case upgrade.NoReloadSignal:
		return "none"
	}
	return reaper.SignalName(*v.sig)
}

func (v *signalValue) Type() string { return "SIGNAL" }

// durationValue is a duration flag that must be positive: zero would
// mean "the default" to the supervisor, which is not what a user who
// types 0s means.
type durationValue struct{ d *time.Duration }

func positive(d *time.Duration) *durationValue { return &durationValue{d} }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 1m: %w", err)
	}
	if d <= 0 {
		return errors.New("must be positive")
	}
	*v.d = d
	return nil
}

func (v *durationValue) String() string { return v.d.String() }
func (v *durationValue) Type() string   { return "D" }

// countValue is an integer flag that must be at least 1.
type countValue struct{ n *int }

func (v *countValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("%q: want a whole number, at least 1", s)
	}
	*v.n = n
	return nil
}

func (v *countValue) String() string { return strconv.Itoa(*v.n) }
func (v *countValue) Type() string   { return "N" }

// choiceValue is a flag holding one of a few words, checked by parse.
type choiceValue[T ~string] struct {
	v     *T
	parse func(string) (T, error)
}

func (c *choiceValue[T]) Set(s string) error {
	v, err := c.parse(s)
	if err != nil {
		return err
	}
	*c.v = v
	return nil
}

func (c *choiceValue[T]) String() string { return string(*c.v) }
func (c *choiceValue[T]) Type() string   { return "MODE" }

// pathsValue is a repeatable flag of paths; a value may hold several,
// separated by commas (for the environment variable). Whether they exist
// is checked when tini-hot starts (Config.CheckPaths), not while parsing:
// a manifest's command line parses anywhere.
type pathsValue struct{ paths *[]string }

func (v *pathsValue) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			return errors.New("empty path")
		}
		*v.paths = append(*v.paths, p)
	}
	return nil
}

// CheckPaths checks, when tini-hot starts, what the flags name on the
// filesystem: every --watch path can be reached, the --ready exec command
// can be run, and the --control path fits in a unix socket address. Each
// failure is a usage error.
func (c *Config) CheckPaths() error {
	for _, p := range c.Watch {
		if err := watch.Check(p); err != nil {
			return err
		}
	}
	if r := c.Supervisor.Ready; r.Mode == upgrade.ReadyExec {
		if _, err := exec.LookPath(r.Command[0]); err != nil {
			return fmt.Errorf("--ready %s: %w", r.String(), unwrapExec(err))
		}
	}
	if n := len(c.Control); n > listen.MaxSocketPath {
		return fmt.Errorf("--control %.40s…: a path of %d bytes; a unix socket's holds at most %d", c.Control, n, listen.MaxSocketPath)
	}
	return nil
}

// unwrapExec is why exec.LookPath failed, without the name it repeats.
func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		if errors.Is(ee.Err, exec.ErrNotFound) {
			return errors.New("not found in $PATH")
		}
		var pe *fs.PathError
		if errors.As(ee.Err, &pe) {
			return pe.Err
		}
		return ee.Err
	}
	return err
}

func (v *pathsValue) String() string { return strings.Join(*v.paths, ",") }
func (v *pathsValue) Type() string   { return "PATH" }

// readyValue is the --ready flag.
type readyValue struct{ r *upgrade.Readiness }

func (v *readyValue) Set(s string) error {
	r, err := upgrade.ParseReadiness(s)
	if err != nil {
		return err
	}
	*v.r = r
	return nil
}

func (v *readyValue) String() string { return v.r.String() }
func (v *readyValue) Type() string   { return "MODE" }

// listenValue is the repeatable -l flag.
type listenValue struct{ specs *[]listen.Spec }

// Set takes one value, or several separated by commas (for
// TINI_HOT_LISTEN).
func (v *listenValue) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		spec, err := listen.Parse(strings.TrimSpace(part))
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
