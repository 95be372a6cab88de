package upgrade

import (
	"strings"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/reaper"
)

func TestKillMargin(t *testing.T) {
	for grace, want := range map[time.Duration]time.Duration{
		100 * time.Millisecond: 50 * time.Millisecond,
		3 * time.Second:        300 * time.Millisecond,
		30 * time.Second:       time.Second,
		time.Hour:              time.Second,
	} {
		if got := KillMargin(grace); got != want {
			t.Errorf("KillMargin(%v) = %v, want %v", grace, got, want)
		}
	}
}

func TestNewChecksShutdownDelay(t *testing.T) {
	r := &reaper.Reaper{}
	for _, o := range []Options{
		{ShutdownDelay: -time.Second},
		{ShutdownDelay: DefaultGracePeriod},
		{GracePeriod: time.Second, ShutdownDelay: 2 * time.Second},
	} {
		o.Command, o.Reaper = []string{"app"}, r
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), "less than the grace period") {
			t.Errorf("New(%+v) = %v", o, err)
		}
	}
	s, err := New(Options{Command: []string{"app"}, Reaper: r, ShutdownDelay: 5 * time.Second})
	if err != nil || s.opts.GracePeriod != DefaultGracePeriod {
		t.Fatalf("New = %v; grace %v", err, s.opts.GracePeriod)
	}
}
