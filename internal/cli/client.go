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

// RunClient runs the reload, status, probe and prestop subcommands.
func RunClient(cfg *Config, stdout, stderr io.Writer) int {
	sub := cfg.Subcommand
	fs := pflag.NewFlagSet("tini-hot "+sub, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Control, "control", cfg.Control, "control socket path")
	var (
		timeout     time.Duration
		waitDrained bool
		asJSON      bool
		liveness    bool
		delay       time.Duration
	)
	switch sub {
	case "reload":
		fs.DurationVar(&timeout, "timeout", 0, "give up after D (default: wait for the answer)")
		fs.BoolVar(&waitDrained, "wait-drained", false, "answer once the old generation has exited")
	case "status":
		fs.BoolVar(&asJSON, "json", false, "print the status as JSON")
	case "probe":
		fs.DurationVar(&timeout, "timeout", DefaultProbeTimeout, "fail when there is no answer after D")
		fs.BoolVar(&liveness, "liveness", false, "only check that the supervisor answers")
	case "prestop":
		fs.DurationVar(&delay, "delay", 0, "wait D after telling the supervisor, while endpoints are removed")
		fs.DurationVar(&timeout, "timeout", DefaultProbeTimeout, "give up telling the supervisor after D")
	}
	if err := fs.Parse(cfg.Command); err != nil || fs.NArg() > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stderr, "tini-hot %s: %v (see tini-hot --help)\n", sub, err)
		return ExitUsage
	}
	if timeout < 0 || delay < 0 {
		fmt.Fprintf(stderr, "tini-hot %s: durations must not be negative (see tini-hot --help)\n", sub)
		return ExitUsage
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req := control.Request{Op: sub, WaitDrained: waitDrained, Liveness: liveness}
	resp, err := control.Do(ctx, cfg.Control, req)
	if sub == "prestop" {
		// Wait even when the supervisor could not be told: the delay is
		// what lets endpoints be removed before SIGTERM.
		time.Sleep(delay)
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
	case sub == "status" && asJSON:
		b, _ := json.MarshalIndent(resp.Status, "", "  ") // a Status always marshals
		fmt.Fprintln(stdout, string(b))
	case sub == "status":
		printStatus(stdout, resp.Status)
	case sub == "probe" && liveness:
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
