package upgrade

import (
	"fmt"
	"strings"
	"time"
)

// Readiness modes of --ready.
const (
	ReadyNotify = "notify"
	ReadyDelay  = "delay"
	ReadyExec   = "exec"
)

// DefaultReadiness is delay:2s. It is safe for applications that never
// notify: a reload always completes, and because every generation accepts
// from the same held socket, connections that arrive before the new
// generation accepts wait in the kernel's backlog instead of being
// refused. Applications that speak sd_notify (gunicorn, go-systemd, ...)
// should run with --ready notify for an exact handover.
var DefaultReadiness = Readiness{Mode: ReadyDelay, Delay: 2 * time.Second}

// Readiness says when a new generation is ready to serve.
type Readiness struct {
	Mode    string
	Delay   time.Duration // delay
	Command []string      // exec: run until it exits 0
}

// String is the --ready form.
func (r Readiness) String() string {
	switch r.Mode {
	case ReadyDelay:
		return ReadyDelay + ":" + r.Delay.String()
	case ReadyExec:
		return ReadyExec + ":" + strings.Join(r.Command, " ")
	}
	return r.Mode
}

// ParseReadiness reads notify, delay:DURATION or exec:COMMAND [ARG...]
// (split on spaces, no shell).
func ParseReadiness(s string) (Readiness, error) {
	mode, arg, hasArg := strings.Cut(s, ":")
	switch mode {
	case ReadyNotify:
		if hasArg {
			return Readiness{}, fmt.Errorf("ready %q: notify takes no argument", s)
		}
		return Readiness{Mode: ReadyNotify}, nil
	case ReadyDelay:
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return Readiness{}, fmt.Errorf("ready %q: want delay:DURATION, e.g. delay:2s", s)
		}
		return Readiness{Mode: ReadyDelay, Delay: d}, nil
	case ReadyExec:
		cmd := strings.Fields(arg)
		if len(cmd) == 0 {
			return Readiness{}, fmt.Errorf("ready %q: want exec:COMMAND", s)
		}
		return Readiness{Mode: ReadyExec, Command: cmd}, nil
	}
	return Readiness{}, fmt.Errorf("ready %q: want notify, delay:DURATION or exec:COMMAND", s)
}
