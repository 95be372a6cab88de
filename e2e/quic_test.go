package e2e

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/tini-hot/tini-hot/internal/quicping"
)

func init() { registerHelper("quicserver", helperQUICServer) }

// helperQUICServer serves the quicping protocol on the UDP socket fd 3,
// its connection IDs carrying TINI_HOT_SLOT when steered; on SIGTERM it
// drains, for 10 s at most.
func helperQUICServer() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if err := quicping.Serve(os.NewFile(3, "udp"), 10*time.Second, term); err != nil {
		fmt.Fprintln(os.Stderr, "quicserver:", err)
		return 1
	}
	return 0
}

// TestQUICFlows: 50 long-lived QUIC connections, each making a request
// every 10 ms, and new connections opening throughout, across 20
// upgrades of a quic-go server. Steered (?flows=quic), every packet
// reaches the generation that owns its connection: no connection error,
// no failed request, every answer from the generation that accepted the
// connection; a connection ends only when its generation drains (a bye,
// then the client moves to a new connection). Shared sockets are the
// control: the new generation reads the old one's packets.
func TestQUICFlows(t *testing.T) {
	bySockets(t, "QUIC, 20 upgrades", func(t *testing.T, name string, flags []string) string {
		addr := freeAddr(t)
		listen := "h3=udp://" + addr + "?flows=quic"
		if name == "shared" {
			listen = "h3=udp://" + addr
		}
		args := append(append([]string{"-l", listen, "--ready", "notify", "--drain-timeout", "20s"}, flags...), "--")
		p := startInit(t, th(), mode{"pid1", true}, nil, append(args, helperCmd("quicserver")...)...)
		p.waitGen(1, "serving")
		q := &quicping.Tally{}
		stop := make(chan struct{})
		// 50 long-lived connections: each moves to a new one after a
		// bye, until the end; and new connections throughout, 3 requests
		// each.
		long := quicping.Clients(50, q, stop, func() { quicping.Conn(addr, q, 10*time.Millisecond, 0, stop) })
		fresh := quicping.Clients(4, q, stop, func() { quicping.Conn(addr, q, 0, 3, stop) })
		wait := func() { long(); fresh() }
		for i := 2; i <= 21; i++ {
			// Each generation serves a while: 500 requests.
			from := q.Requests.Load()
			waitFor(t, "500 requests", func() (int64, bool) { n := q.Requests.Load() - from; return n, n >= 500 })
			if out, code := p.reloadWithin(2 * time.Minute); code != 0 {
				close(stop)
				wait()
				t.Fatalf("upgrade %d: %d %s", i, code, out)
			}
		}
		settled(t, p)
		close(stop)
		wait()
		res := q.String()
		t.Logf("%s sockets: %s; first errors: %q", name, res, q.Errors())
		if st := p.status(); st.Listeners[0].Mode != name {
			t.Errorf("listener mode %q, want %s", st.Listeners[0].Mode, name)
		}
		if name == "steered" && (q.Failed.Load() != 0 || q.Broken.Load() != 0 || q.Requests.Load() == 0) {
			t.Fatalf("%s, want none failed", res)
		}
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 0 {
			t.Errorf("exit %d", code)
		}
		return res
	})
}
