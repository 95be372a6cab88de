package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"github.com/tini-hot/tini-hot/control"
	"github.com/tini-hot/tini-hot/internal/usage"
	"github.com/tini-hot/tini-hot/upgrade"
)

// DefaultProbeTimeout bounds probe and prestop: a kubelet's exec probe
// times out after 1 s by default.
const DefaultProbeTimeout = 900 * time.Millisecond

// DefaultStatusTimeout bounds status, and DefaultReloadTimeout reload:
// long enough for an upgrade queued behind drains with the default
// timeouts (--drain-timeout 30s, --ready-timeout 60s), short enough that
// a stopped tini-hot does not hold a script for ever.
const (
	DefaultStatusTimeout = 5 * time.Second
	DefaultReloadTimeout = 5 * time.Minute
)

// ClientOptions are the flags of a subcommand.
type ClientOptions struct {
	Help        bool
	Timeout     time.Duration // reload, probe, prestop
	WaitDrained bool          // reload
	JSON        bool          // status
	Liveness    bool          // probe
	Delay       time.Duration // prestop
	Cancel      bool          // prestop
}

// subcommandHelp is what each subcommand does, for its --help.
var subcommandHelp = map[string]string{
	"reload": `Usage: tini-hot [--control PATH] reload [--timeout D] [--wait-drained]

Start a new generation of the application on the held sockets, wait until it
is ready, then drain the old one. Prints "generation N serving" and exits 0
once the new generation serves (with --wait-drained: once the old one has
exited too); exits 1 with the reason when the new generation failed (it is
killed; the old one keeps serving) or the reload was refused.

A reload during an upgrade joins the next one; a reload while the first
generation is still starting waits until it is ready (or its --ready-timeout
has passed); a reload while --max-draining old generations still drain (or
while a second generation would not fit in memory until they are gone) waits
until one has exited. If this command stops waiting (--timeout, Ctrl-C), it
says what the reload waits for, and the reload still goes on: see tini-hot
status. A generation started after the last reload request ends up serving,
unless it fails.
`,
	"status": `Usage: tini-hot [--control PATH] status [--json] [--timeout D]

Print the supervisor's state, the container's memory, the held sockets, the
reload and restart counters and every generation: number, pid, state, start,
time to ready, what a live one uses and how it ended.
`,
	"probe": `Usage: tini-hot [--control PATH] probe [--liveness] [--timeout D]

Readiness probe: exits 0 while a ready generation serves and no termination
has been announced (prestop or SIGTERM), 1 with the reason otherwise. During
an upgrade the old generation serves, so the probe passes. With --liveness
it only checks that the supervisor answers.
`,
	"prestop": `Usage: tini-hot [--control PATH] prestop [--delay D] [--timeout D] [--cancel]

preStop hook: tell the supervisor that termination is coming (probe fails
from now on, reloads are refused, the application keeps serving), then wait
D while endpoints are removed; no sleep binary needed. It waits D even when
the supervisor could not be told (exit 1 then). If no SIGTERM follows within
--grace-period, the announcement is withdrawn: probe passes and reloads are
taken again. --cancel withdraws it at once.
`,
}

// clientFlags is the flag set of subcommand sub, writing to o and
// cfg.Control.
func clientFlags(cfg *Config, o *ClientOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tini-hot "+cfg.Subcommand, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.BoolVarP(&o.Help, "help", "h", false, "show this help and exit")
	fs.StringVar(&cfg.Control, "control", cfg.Control, "control socket `PATH` [TINI_HOT_CONTROL]")
	switch cfg.Subcommand {
	case "reload":
		fs.DurationVar(&o.Timeout, "timeout", DefaultReloadTimeout, "stop waiting for the answer after `D` (the reload goes on); 0 waits until the upgrade has succeeded or failed, which takes at most --ready-timeout once it has started")
		fs.BoolVar(&o.WaitDrained, "wait-drained", false, "answer once the old generation has exited, not only once the new one serves")
	case "status":
		fs.BoolVar(&o.JSON, "json", false, "print the status as JSON")
		fs.DurationVar(&o.Timeout, "timeout", DefaultStatusTimeout, "fail when there is no answer after `D`; 0 waits as long as it takes")
	case "probe":
		fs.DurationVar(&o.Timeout, "timeout", DefaultProbeTimeout, "fail when there is no answer after `D`; 0 waits as long as it takes")
		fs.BoolVar(&o.Liveness, "liveness", false, "only check that the supervisor answers")
	case "prestop":
		fs.DurationVar(&o.Delay, "delay", 0, "wait `D` after telling the supervisor, while endpoints are removed")
		fs.DurationVar(&o.Timeout, "timeout", DefaultProbeTimeout, "give up telling the supervisor after `D`; 0 waits as long as it takes")
		fs.BoolVar(&o.Cancel, "cancel", false, "withdraw a prestop's announcement: probe passes and reloads are taken again")
	}
	return fs
}

// ParseClient reads the flags of cfg.Subcommand from cfg.Args (and a
// --control given there into cfg.Control).
func ParseClient(cfg *Config) (ClientOptions, error) {
	var o ClientOptions
	if _, ok := subcommandHelp[cfg.Subcommand]; !ok {
		return o, fmt.Errorf("unknown subcommand %q", cfg.Subcommand)
	}
	fs := clientFlags(cfg, &o)
	if err := fs.Parse(cfg.Args); err != nil {
		return o, didYouMean(fs, err)
	}
	if o.Help {
		return o, nil
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Timeout < 0 || o.Delay < 0 {
		return o, errors.New("durations must not be negative")
	}
	return o, nil
}

// ClientUsage is the --help text of subcommand sub.
func ClientUsage(sub string) string {
	var b strings.Builder
	b.WriteString(subcommandHelp[sub])
	b.WriteString("\nFlags:\n")
	cfg := &Config{Subcommand: sub, Control: DefaultControl}
	clientFlags(cfg, &ClientOptions{}).VisitAll(func(f *pflag.Flag) { writeFlag(&b, f, false) })
	b.WriteString("\nExit status: 0 done, 1 failed (one line on stderr), 2 usage error.\n")
	return b.String()
}

// ParseClientLine parses the arguments of a subcommand's whole command
// line, as in a probe or hook (`probe --liveness`), without the
// environment.
func ParseClientLine(args []string) (*Config, ClientOptions, error) {
	cfg, err := Parse(args, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, ClientOptions{}, err
	}
	if cfg.Subcommand == "" {
		return nil, ClientOptions{}, fmt.Errorf("%q is no subcommand", args)
	}
	o, err := ParseClient(cfg)
	return cfg, o, err
}

// RunClient runs the reload, status, probe and prestop subcommands.
func RunClient(cfg *Config, stdout, stderr io.Writer) int {
	sub := cfg.Subcommand
	o, err := ParseClient(cfg)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "tini-hot %s: %v (see tini-hot %s --help)\n", sub, err, sub)
		return ExitUsage
	case o.Help:
		fmt.Fprint(stdout, ClientUsage(sub))
		return 0
	}
	ctx := context.Background()
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	req := control.Request{Op: sub, WaitDrained: o.WaitDrained, Liveness: o.Liveness, Cancel: o.Cancel}
	resp, err := control.Do(ctx, cfg.Control, req)
	if sub == "prestop" {
		// Wait even when the supervisor could not be told: the delay is
		// what lets endpoints be removed before SIGTERM.
		time.Sleep(o.Delay)
	}
	var timeout *control.TimeoutError
	switch {
	case errors.As(err, &timeout) && timeout.Sent && sub == "reload":
		fmt.Fprintf(stderr, "tini-hot reload: no answer within %v%s; the reload goes on (see tini-hot status)\n", o.Timeout, waitingFor(cfg.Control))
		return ExitFailure
	case errors.As(err, &timeout):
		fmt.Fprintf(stderr, "tini-hot %s: no answer within %v\n", sub, o.Timeout)
		return ExitFailure
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintf(stderr, "tini-hot %s: %v: is tini-hot running? set --control or TINI_HOT_CONTROL\n", sub, err)
		return ExitFailure
	case err != nil:
		fmt.Fprintf(stderr, "tini-hot %s: %v\n", sub, err)
		return ExitFailure
	case !resp.OK:
		fmt.Fprintf(stderr, "tini-hot %s: %s\n", sub, resp.Error)
		return ExitFailure
	}
	switch {
	case sub == "reload":
		fmt.Fprintf(stdout, "generation %d serving\n", resp.Generation)
	case sub == "status":
		var st upgrade.Status
		if err := json.Unmarshal(resp.Status, &st); err != nil {
			fmt.Fprintf(stderr, "tini-hot status: bad answer: %v\n", err)
			return ExitFailure
		}
		if !o.JSON {
			printStatus(stdout, &st)
			break
		}
		b, _ := json.MarshalIndent(st, "", "  ") // a Status always marshals
		fmt.Fprintln(stdout, string(b))
	case sub == "probe" && o.Liveness:
		fmt.Fprintln(stdout, "alive")
	case sub == "probe":
		fmt.Fprintf(stdout, "ready: generation %d serving\n", resp.Generation)
	case sub == "prestop" && o.Cancel:
		fmt.Fprintf(stdout, "termination announcement withdrawn: generation %d serving\n", resp.Generation)
	}
	return 0
}

// waitingFor asks the supervisor what a reload that got no answer in time
// waits for: ": queued, waiting for …" or ": generation N is starting",
// "" when it cannot tell.
func waitingFor(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := control.Do(ctx, path, control.Request{Op: "status"})
	var st upgrade.Status
	if err != nil || !resp.OK || json.Unmarshal(resp.Status, &st) != nil {
		return ""
	}
	if q := st.Queued; q != nil {
		return ": queued, " + q.Reason
	}
	for _, g := range st.Generations {
		if g.State == "starting" {
			return fmt.Sprintf(": generation %d is starting", g.Number)
		}
	}
	return ""
}

// slotsInUse says which live generation has which slot, and what waits
// in it: "; generation 2 on slot 1, generation 1 on slot 0 with 3 queued".
func slotsInUse(st *upgrade.Status) string {
	var parts []string
	for _, g := range st.Generations {
		if g.Slot == nil || g.Ended != nil {
			continue
		}
		p := fmt.Sprintf("generation %d on slot %d", g.Number, *g.Slot)
		if g.Queued > 0 {
			p += fmt.Sprintf(" with %d queued", g.Queued)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

func printStatus(w io.Writer, st *upgrade.Status) {
	r := st.Reloads
	fmt.Fprintf(w, "tini-hot pid %d, %s; reloads: %d requested, %d coalesced, %d succeeded, %d failed, %d refused; %d restarts\n",
		st.Pid, st.State, r.Requested, r.Coalesced, r.Succeeded, r.Failed, r.Refused, st.Restarts)
	c := st.Container
	switch {
	case c.Error != "":
		fmt.Fprintf(w, "memory: cgroup %s %s, unknown: %s\n", c.Cgroup, c.Dir, c.Error)
	case c.Cgroup != "none":
		// The cgroup by its directory, not as "the container": outside
		// one it is whatever cgroup started tini-hot.
		fmt.Fprintf(w, "memory: cgroup %s %s, %s, working set %s, %d OOM kills\n", c.Cgroup, c.Dir, usage.LimitMiB(c.MemoryLimitBytes), usage.MiB(c.MemoryUsageBytes), c.OOMKills)
	}
	if st.Signals == upgrade.SignalsEssential {
		fmt.Fprintln(w, "signals: only those that would end tini-hot are forwarded yet, the others a few ms after start")
	}
	if q := st.Queued; q != nil {
		fmt.Fprintf(w, "queued upgrade (%d waiting): %s\n", q.Waiters, q.Reason)
	}
	for _, l := range st.Listeners {
		note := ""
		switch {
		case !l.Listening:
			note = ": NOT LISTENING (shut down by the application)"
		case l.Restored > 0:
			note = fmt.Sprintf(" (shut down by the application, listening again, %d times)", l.Restored)
		}
		// The address ends its line: scripts read it (examples/demo.sh).
		fmt.Fprintf(w, "listener %s %s%s\n", l.Name, l.Address, note)
		switch {
		case l.Mode == "steered":
			fmt.Fprintf(w, "  steered: %d slots%s\n", l.Slots, slotsInUse(st))
		case l.Fallback != "":
			fmt.Fprintf(w, "  shared: the kernel refused steering (%s)\n", l.Fallback)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GEN\tPID\tSTATE\tSTARTED\tREADY\tMEMORY\tPROCS\tTHREADS\tFDS\tCPU\tEND")
	for _, g := range st.Generations {
		ready, end := "-", "-"
		if g.Ready != nil {
			ready = g.Ready.Sub(g.Started).Round(time.Millisecond).String()
		}
		if g.Exit != "" {
			end = g.Exit
		}
		if g.Reason != "" {
			end = g.Reason
		}
		use := "-\t-\t-\t-\t-"
		if u := g.GenerationUsage; u != nil {
			use = fmt.Sprintf("%s\t%d\t%d\t%d\t%.2fs", usage.MiB(u.MemoryBytes), u.Processes, u.Threads, u.FDs, u.CPUSeconds)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Number, g.Pid, g.State, g.Started.Format(time.RFC3339), ready, use, strings.TrimSpace(end))
	}
	_ = tw.Flush() // writes to w; errors are w's
	for _, g := range st.Generations {
		if g.NoticesIgnored > 0 {
			fmt.Fprintf(w, "generation %d: %d notify messages ignored, from processes outside it (the log names them)\n", g.Number, g.NoticesIgnored)
		}
	}
}
