package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tini-hot/tini-hot/internal/quicping"
)

// quicModes are the socket modes the QUIC table compares.
var quicModes = []struct {
	name, query string
	flags       []string
}{
	{"steered (?flows=quic)", "?flows=quic", nil},
	{"shared (--shared-sockets)", "", shared},
}

// quicTable runs internal/quicping's server behind tini-hot in each
// socket mode, o.rounds times in turn, under 50 long-lived connections
// (a request every 10 ms each) and 4 clients that open connections of 3
// requests throughout, with o.reloads upgrades evenly spaced over
// o.duration; it counts the connections that broke. A connection that
// its generation's drain ends with a bye is not broken: its client opens
// another.
func quicTable(b bins, o options) string {
	type total struct {
		upgrades int
		q        quicping.Tally
		err      error
	}
	totals := make([]total, len(quicModes))
	for round := range o.rounds {
		for k := range quicModes {
			i := (k + round) % len(quicModes)
			tt := &totals[i]
			n, err := quicRun(b, i, o, &tt.q)
			tt.upgrades += n
			tt.err = firstErr(tt.err, err)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "internal/quicping (quic-go) behind tini-hot: 50 long-lived connections, each making a request every 10 ms, and 4 clients opening connections of 3 requests throughout; %v per run, %d upgrades per run evenly spaced, %d rounds; the figures are sums over the rounds. "+
		"A connection is broken when a request on it fails; one its generation's drain ends (a bye, then the client opens another) is not.\n\n",
		o.duration, o.reloads, o.rounds)
	t.WriteString("| sockets | upgrades | connections | requests | failed requests | connections broken | broken per upgrade | answered by another generation |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, m := range quicModes {
		tt := &totals[i]
		name := m.name
		if tt.err != nil {
			name += " (error: " + strings.ReplaceAll(tt.err.Error(), "|", "/") + ")"
		}
		per := "n/a"
		if tt.upgrades > 0 {
			per = fmt.Sprintf("%.1f", float64(tt.q.Broken.Load())/float64(tt.upgrades))
		}
		fmt.Fprintf(&t, "| %s | %d | %d | %d | %d | %d | %s | %d |\n", name, tt.upgrades, tt.q.Conns.Load(), tt.q.Requests.Load(),
			tt.q.Failed.Load(), tt.q.Broken.Load(), per, tt.q.WrongGen.Load())
	}
	return t.String()
}

// quicRun is one run of quicTable in quicModes[i], tallied into q; it
// returns how many upgrades succeeded.
func quicRun(b bins, i int, o options, q *quicping.Tally) (int, error) {
	m := quicModes[i]
	dir, err := os.MkdirTemp("", "tini-hot-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	s := &tiniHot{control: filepath.Join(dir, "control.sock"), bin: b.tiniHot}
	argv := append([]string{b.tiniHot, "-l", "h3=udp://" + addr + m.query, "--ready", "notify", "--drain-timeout", "30s", "--control", s.control}, m.flags...)
	if s.p, err = start(nil, append(argv, "--", b.peer, "-mode", "quic")...); err != nil {
		return 0, err
	}
	defer s.stop()
	if err := until(10*time.Second, "the QUIC server to answer", func() bool { return s.client("probe") == nil }); err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	began := time.Now()
	long := quicping.Clients(50, q, stop, func() { quicping.Conn(addr, q, 10*time.Millisecond, 0, stop) })
	fresh := quicping.Clients(4, q, stop, func() { quicping.Conn(addr, q, 0, 3, stop) })
	every := o.duration / time.Duration(o.reloads+1)
	n := 0
	for k := 1; k <= o.reloads; k++ {
		time.Sleep(time.Until(began.Add(time.Duration(k) * every)))
		if err = s.client("reload"); err != nil {
			break
		}
		n++
	}
	time.Sleep(time.Until(began.Add(o.duration)))
	close(stop)
	long()
	fresh()
	return n, err
}
