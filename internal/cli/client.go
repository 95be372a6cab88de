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
)

// DefaultProbeTimeout bounds probe: a kubelet's exec probe times out
// after 1 s by default.
const DefaultProbeTimeout = 900 * time.Millisecond

// ClientOptions are the flags of a subcommand.
type ClientOptions struct {
	Timeout     time.Duration // reload, probe, prestop
	WaitDrained bool          // reload
	JSON        bool          // status
	Liveness    bool          // probe
	Delay       time.Duration // prestop
}

// ParseClient reads the flags of cfg.Subcommand from cfg.Command (and a
// --control given there into cfg.Control).
func ParseClient(cfg *Config) (ClientOptions, error) {
	var o ClientOptions
	fs := pflag.NewFlagSet("tini-hot "+cfg.Subcommand, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Control, "control", cfg.Control, "control socket path")
	switch cfg.Subcommand {
	case "reload":
		fs.DurationVar(&o.Timeout, "timeout", 0, "give up after D (default: wait for the answer)")
		fs.BoolVar(&o.WaitDrained, "wait-drained", false, "answer once the old generation has exited")
	case "status":
		fs.BoolVar(&o.JSON, "json", false, "print the status as JSON")
	case "probe":
		fs.DurationVar(&o.Timeout, "timeout", DefaultProbeTimeout, "fail when there is no answer after D")
		fs.BoolVar(&o.Liveness, "liveness", false, "only check that the supervisor answers")
	case "prestop":
		fs.DurationVar(&o.Delay, "delay", 0, "wait D after telling the supervisor, while endpoints are removed")
		fs.DurationVar(&o.Timeout, "timeout", DefaultProbeTimeout, "give up telling the supervisor after D")
	default:
		return o, fmt.Errorf("unknown subcommand %q", cfg.Subcommand)
	}
	if err := fs.Parse(cfg.Command); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Timeout < 0 || o.Delay < 0 {
		return o, errors.New("durations must not be negative")
	}
	return o, nil
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
	if err != nil {
		fmt.Fprintf(stderr, "tini-hot %s: %v (see tini-hot --help)\n", sub, err)
		return ExitUsage
	}
	timeout := o.Timeout
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req := control.Request{Op: sub, WaitDrained: o.WaitDrained, Liveness: o.Liveness}
	resp, err := control.Do(ctx, cfg.Control, req)
	if sub == "prestop" {
		// Wait even when the supervisor could not be told: the delay is
		// what lets endpoints be removed before SIGTERM.
		time.Sleep(o.Delay)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "tini-hot %s: timed out after %v\n", sub, timeout)
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
	case sub == "status" && o.JSON:
		b, _ := json.MarshalIndent(resp.Status, "", "  ") // a Status always marshals
		fmt.Fprintln(stdout, string(b))
	case sub == "status":
		printStatus(stdout, resp.Status)
	case sub == "probe" && o.Liveness:
		fmt.Fprintln(stdout, "alive")
	case sub == "probe":
		fmt.Fprintf(stdout, "ready: generation %d serving\n", resp.Generation)
	}
	return 0
}

func printStatus(w io.Writer, st *control.Status) {
	r := st.Reloads
	fmt.Fprintf(w, "tini-hot pid %d, %s; reloads: %d requested, %d coalesced, %d succeeded, %d failed\n",
		st.Pid, st.State, r.Requested, r.Coalesced, r.Succeeded, r.Failed)
	for _, l := range st.Listeners {
		fmt.Fprintf(w, "listener %s %s\n", l.Name, l.Address)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GEN\tPID\tSTATE\tSTARTED\tREADY\tEND")
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
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", g.Number, g.Pid, g.State, g.Started.Format(time.RFC3339), ready, strings.TrimSpace(end))
	}
	_ = tw.Flush() // writes to w; errors are w's
}
