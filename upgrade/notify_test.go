package upgrade

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseNotice(t *testing.T) {
	n := parseNotice([]byte("STATUS=warming up\nREADY=1\nMAINPID=3\nSTATUS=serving\n"))
	if !n.ready || n.stopping || n.status != "serving" {
		t.Errorf("parseNotice = %+v", n)
	}
	if n := parseNotice([]byte("READY=10\nSTOPPING=1")); n.ready || !n.stopping {
		t.Errorf("parseNotice = %+v", n)
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add([]byte("READY=1\nSTATUS=ok"))
	f.Add([]byte("\xff\nSTATUS=\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := parseNotice(b)
		if n.ready && !slices.Contains(strings.Split(string(b), "\n"), notifyReady) {
			t.Fatalf("ready without READY=1 in %q", b)
		}
	})
}

// TestNotifySocket sends READY=1 the way sd_notify does and checks that
// the sender's pid comes with it.
func TestNotifySocket(t *testing.T) {
	s, err := newNotifySocket("tini-hot-test-" + time.Now().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := make(chan notifyEvent, 1)
	done := make(chan struct{})
	defer close(done)
	go s.Serve(7, out, done)
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.Env(), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1\nSTATUS=up")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-out:
		if ev.gen != 7 || ev.sender != os.Getpid() || !ev.notice.ready || ev.notice.status != "up" {
			t.Errorf("event %+v, want generation 7 from pid %d", ev, os.Getpid())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notify event")
	}
}
