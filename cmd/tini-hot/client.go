package main

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

// runClient runs the reload and status subcommands.
func runClient(cfg *config, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("tini-hot "+cfg.subcommand, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 0, "give up after D (default: wait for the answer)")
	waitDrained := fs.Bool("wait-drained", false, "answer once the old generation has exited")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	fs.StringVar(&cfg.control, "control", cfg.control, "control socket path")
	if err := fs.Parse(cfg.command); err != nil || fs.NArg() > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stderr, "tini-hot %s: %v (see tini-hot --help)\n", cfg.subcommand, err)
		return exitUsage
	}
	if (cfg.subcommand == "status" && (fs.Changed("timeout") || *waitDrained)) || (cfg.subcommand == "reload" && *asJSON) {
		fmt.Fprintf(stderr, "tini-hot %s: flag not valid for this subcommand (see tini-hot --help)\n", cfg.subcommand)
		return exitUsage
	}
	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	req := control.Request{Op: cfg.subcommand, WaitDrained: *waitDrained}
	resp, err := control.Do(ctx, cfg.control, req)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "tini-hot %s: timed out after %v\n", cfg.subcommand, *timeout)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "tini-hot %s: %v\n", cfg.subcommand, err)
		return exitFailure
	case !resp.OK:
		fmt.Fprintf(stderr, "tini-hot %s: %s\n", cfg.subcommand, resp.Error)
		return exitFailure
	}
	if cfg.subcommand == "reload" {
		fmt.Fprintf(stdout, "generation %d serving\n", resp.Generation)
		return 0
	}
	if *asJSON {
		b, _ := json.MarshalIndent(resp.Status, "", "  ") // a Status always marshals
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	printStatus(stdout, resp.Status)
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
