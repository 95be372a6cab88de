package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestUsageErrors checks the documented exit statuses for what a user can
// get wrong, each with a one-line message.
func TestUsageErrors(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"unknown-flag", nil, []string{"--bogus", "--", "true"}, 2, "unknown flag: --bogus"},
		{"no-command", nil, nil, 2, "no command given"},
		{"only-dash", nil, []string{"--"}, 2, "no command given"},
		{"bad-remap", nil, []string{"-e", "300", "true"}, 2, "want a number from 0 to 255"},
		{"bad-signal", nil, []string{"-p", "SIGNOPE", "true"}, 2, `signal "SIGNOPE": unknown signal name`},
		{"bad-timeout", nil, []string{"--kill-timeout", "-1s", "true"}, 2, "must be positive"},
		{"bad-env", []string{"TINI_HOT_KILL_TIMEOUT=soon"}, []string{"true"}, 2, "TINI_HOT_KILL_TIMEOUT=soon"},
		{"bad-listen", nil, []string{"-l", "http://:80", "true"}, 2, `unknown scheme "http"`},
		{"bad-listen-port", nil, []string{"-l", "web=tcp://:99999", "true"}, 2, "want 0-65535"},
		{"bad-grace", nil, []string{"--grace-period", "0s", "true"}, 2, `invalid argument "0s" for "--grace-period" flag: must be positive`},
		{"bad-grace-env-overridden", []string{"TINI_HOT_GRACE_PERIOD=30"}, []string{"--grace-period", "30s", "sh", "-c", "exit 3"}, 3, ""},
		{"relative-unix", nil, []string{"-l", "unix:app.sock", "true"}, 2, "want unix:///absolute/path (three slashes"},
		{"bad-shutdown-delay", nil, []string{"--grace-period", "5s", "--shutdown-delay", "5s", "true"}, 2, "--shutdown-delay 5s: must be at least 0 and less than --grace-period 5s"},
		{"bad-grace-env", []string{"TINI_HOT_GRACE_PERIOD=30"}, []string{"true"}, 2, "TINI_HOT_GRACE_PERIOD=30"},
		{"bad-ready", nil, []string{"--ready", "soon", "true"}, 2, "want notify, delay:DURATION or exec:COMMAND"},
		{"not-found", nil, []string{"/nonexistent/app"}, 127, "exec /nonexistent/app: no such file or directory"},
		{"not-in-path", nil, []string{"no-such-command-anywhere"}, 127, "exec no-such-command-anywhere: no such file or directory"},
		{"not-executable", nil, []string{notExec}, 126, "permission denied"},
		// Found attacking aa4f58b, which took each of these (exit 0, or
		// 126 for the empty command):
		{"reload-signal-kill", nil, []string{"--reload-signal", "KILL", "true"}, 2, "--reload-signal SIGKILL: never reaches tini-hot: it cannot be caught"},
		{"reload-signal-stop", nil, []string{"--reload-signal", "STOP", "true"}, 2, "--reload-signal SIGSTOP: never reaches tini-hot: it cannot be caught"},
		{"reload-signal-chld", nil, []string{"--reload-signal", "CHLD", "true"}, 2, "tini-hot reaps on it"},
		{"reload-signal-term", nil, []string{"--reload-signal", "TERM", "true"}, 2, "--reload-signal SIGTERM: it shuts the container down"},
		{"reload-signal-urg", nil, []string{"--reload-signal", "URG", "true"}, 2, "the Go runtime preempts with it"},
		{"reload-signal-pipe", nil, []string{"--reload-signal", "PIPE", "true"}, 2, "tini-hot's own writes raise it"},
		{"restart-window-1ns", nil, []string{"--restart", "on-failure", "--restart-window", "1ns", "true"}, 2, "--restart-window 1ns: the back-off between 5 restarts (--restart-limit) takes 3.75s"},
		{"empty-command", nil, []string{"--", ""}, 2, "the command to supervise is empty"},
		{"ready-exec-missing", nil, []string{"--ready", "exec:/nonexistent", "true"}, 2, "--ready exec:/nonexistent: no such file or directory"},
		// Frictions a new user met (issue 31): a hint, not only "unknown".
		{"flag-abbreviated", nil, []string{"--grace", "30s", "true"}, 2, "unknown flag: --grace; did you mean --grace-period?"},
		{"flag-typo", nil, []string{"--kill-timout", "3s", "true"}, 2, "did you mean --kill-timeout?"},
		{"subcommand-flag-typo", nil, []string{"status", "--jsn"}, 2, "unknown flag: --jsn; did you mean --json?"},
		{"listen-no-scheme", nil, []string{"-l", "http=:18555", "true"}, 2, `want SCHEME://ADDRESS; did you mean http=tcp://:18555?`},
		{"listen-port-only", nil, []string{"-l", "18555", "true"}, 2, `did you mean tcp://:18555?`},
		{"listen-host-port", nil, []string{"-l", "localhost:18555", "true"}, 2, `did you mean tcp://localhost:18555?`},
		{"version-argument", nil, []string{"version", "now"}, 2, `version: unexpected argument "now"`},
		{"control-too-long", nil, []string{"--control", "/" + strings.Repeat("c", 100<<10), "true"}, 2, "a path of 102401 bytes; a unix socket's holds at most 107"},
	}
	bin := initBin{"tini-hot", tiniHot}
	for _, m := range modes {
		for _, c := range cases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				p := startInit(t, bin, m, c.env, c.args...)
				code := p.wait()
				out := strings.TrimSpace(p.stderr.String())
				if code != c.code {
					t.Fatalf("tini-hot %v: exit status %d, want %d; output:\n%s", c.args, code, c.code, out)
				}
				if c.msg == "" {
					if out != "" {
						t.Fatalf("tini-hot %v: output %q, want none", c.args, out)
					}
					return
				}
				if !strings.Contains(out, c.msg) || strings.Count(out, "\n") != 0 {
					t.Fatalf("tini-hot %v: output %q, want one line containing %q", c.args, out, c.msg)
				}
			})
		}
	}
}

// TestVersion checks both spellings: one line with the version, the
// commit (go build records it from the repository) and the Go version;
// and that `version --help` is help, not the version.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^tini-hot dev \(commit [0-9a-f]{40}(-dirty)?, go1\.[0-9.]+ linux/[a-z0-9]+\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		p := startInit(t, initBin{"tini-hot", tiniHot}, mode{name: "plain"}, nil, args...)
		if code := p.wait(); code != 0 || !line.MatchString(p.stderr.String()) {
			t.Fatalf("tini-hot %v: status %d, output %q, want it to match %s", args, code, p.stderr, line)
		}
	}
	p := startInit(t, initBin{"tini-hot", tiniHot}, mode{name: "plain"}, nil, "version", "--help")
	if code := p.wait(); code != 0 || !strings.HasPrefix(p.stderr.String(), "Usage: tini-hot version\n") {
		t.Fatalf("tini-hot version --help: status %d, output %q", code, p.stderr)
	}
}

// TestRemappedExitIsSuccess: with -e 7 and --restart on-failure, an
// application that exits 7 has succeeded: no restart, exit 0. aa4f58b
// remapped the status but counted a failure: 5 restarts, then exit 0.
func TestRemappedExitIsSuccess(t *testing.T) {
	p := startInit(t, th(), mode{"pid1", true}, nil, "-e", "7", "--restart", "on-failure", "--", "sh", "-c", "exit 7")
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if strings.Contains(p.stderr.String(), "restarting") {
		t.Fatalf("restarted after an expected exit:\n%s", p.stderr)
	}
}

// TestReadinessCheckFailuresLogged: a readiness check that fails says so,
// with how it failed, at the default verbosity (aa4f58b: nothing, the
// generation stayed starting with no word).
func TestReadinessCheckFailuresLogged(t *testing.T) {
	p := startInit(t, th(), mode{"pid1", true}, nil, "--ready", "exec:false", "--", "sleep", "60")
	waitFor(t, "a failed check logged", func() (string, bool) {
		out := p.stderr.String()
		return out, strings.Contains(out, `readiness check failed: trying again`) && strings.Contains(out, `how="exited with status 1"`)
	})
	p.signal(syscall.SIGTERM)
	p.wait()
}
