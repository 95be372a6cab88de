package main

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParse(t *testing.T) {
	cfg, err := parse([]string{"-s", "-g", "-vv", "-e", "7", "-e", "9,10", "-p", "KILL", "--kill-timeout", "2s", "--", "app", "-x"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.subreaper || !cfg.group || cfg.verbosity != 3 || cfg.pdeathSignal != unix.SIGKILL || cfg.killTimeout != 2*time.Second {
		t.Errorf("flags not parsed: %+v", cfg)
	}
	if cfg.remap.String() != "7,9,10" {
		t.Errorf("remap = %s", cfg.remap)
	}
	if strings.Join(cfg.command, " ") != "app -x" {
		t.Errorf("command = %q", cfg.command)
	}
}

func TestParseCommandWithoutDash(t *testing.T) {
	cfg, err := parse([]string{"-g", "app", "-g"}, env(nil))
	if err != nil || strings.Join(cfg.command, " ") != "app -g" {
		t.Fatalf("parse = %+v, %v; want the command app -g", cfg, err)
	}
	cfg, err = parse([]string{"--", "version"}, env(nil))
	if err != nil || cfg.version || strings.Join(cfg.command, " ") != "version" {
		t.Fatalf("-- version: %+v, %v; want the command version", cfg, err)
	}
	cfg, err = parse([]string{"version"}, env(nil))
	if err != nil || !cfg.version {
		t.Fatalf("version: %+v, %v; want the subcommand", cfg, err)
	}
}

func TestParseEnv(t *testing.T) {
	cfg, err := parse([]string{"app"}, env(map[string]string{
		"TINI_SUBREAPER": "", "TINI_KILL_PROCESS_GROUP": "", "TINI_VERBOSITY": "0",
		"TINI_HOT_KILL_TIMEOUT": "3s", "TINI_HOT_REMAP_EXIT": "4",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.subreaper || !cfg.group || cfg.verbosity != 0 || cfg.killTimeout != 3*time.Second || !cfg.remap[4] {
		t.Errorf("environment not applied: %+v", cfg)
	}
	// The command line wins.
	cfg, err = parse([]string{"--kill-timeout", "1s", "app"}, env(map[string]string{"TINI_HOT_KILL_TIMEOUT": "3s"}))
	if err != nil || cfg.killTimeout != time.Second {
		t.Errorf("command line did not win: %+v, %v", cfg, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"--"}, {"--nope", "app"}, {"-e", "256", "app"}, {"-e", "x", "app"}, {"-p", "NOPE", "app"}, {"--kill-timeout", "0s", "app"}} {
		if cfg, err := parse(args, env(nil)); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", args, cfg)
		}
	}
	if _, err := parse([]string{"app"}, env(map[string]string{"TINI_HOT_PDEATH_SIGNAL": "NOPE"})); err == nil || !strings.Contains(err.Error(), "TINI_HOT_PDEATH_SIGNAL=NOPE") {
		t.Errorf("bad environment value: %v, want an error naming it", err)
	}
}

func TestUsageNamesEveryEnv(t *testing.T) {
	cfg, err := parse([]string{"--help"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	text := usage(cfg.flags)
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

// FuzzParse: no command line makes parse panic.
func FuzzParse(f *testing.F) {
	f.Add("-vvv\x00-e\x007\x00--\x00app")
	f.Add("--kill-timeout\x00-5s\x00app")
	f.Add("-p\x00SIG99\x00version")
	f.Fuzz(func(t *testing.T, joined string) {
		_, _ = parse(strings.Split(joined, "\x00"), env(nil))
	})
}
