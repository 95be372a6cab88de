package quicping

import (
	"net"
	"os"
	"testing"
	"time"
)

// serve runs Serve on a fresh UDP socket and returns its address, the
// channel that drains it and Serve's result.
func serve(t *testing.T) (addr string, term chan os.Signal, done chan error) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := udp.File()
	udp.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TINI_HOT_GENERATION", "7")
	term, done = make(chan os.Signal, 1), make(chan error, 1)
	go func() { done <- Serve(f, 5*time.Second, term) }()
	return udp.LocalAddr().String(), term, done
}

// TestAnswersThenBye: a connection's requests are answered by its
// generation until the server drains; the next answer is a bye, which
// ends the connection unbroken, and the server returns once it is closed.
func TestAnswersThenBye(t *testing.T) {
	addr, term, done := serve(t)
	q := &Tally{}
	Conn(addr, q, 0, 3, nil)
	if q.Conns.Load() != 1 || q.Requests.Load() != 3 || q.Failed.Load() != 0 || q.Broken.Load() != 0 {
		t.Fatalf("%s; errors %q", q, q.Errors())
	}
	stop := make(chan struct{})
	ended := make(chan struct{})
	go func() { Conn(addr, q, 10*time.Millisecond, 0, stop); close(ended) }()
	for q.Requests.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	term <- os.Interrupt
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		close(stop)
		t.Fatal("no bye within 10 s")
	}
	if q.Byes.Load() != 1 || q.Failed.Load() != 0 || q.Broken.Load() != 0 {
		t.Fatalf("%s, want one bye and no failure; errors %q", q, q.Errors())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBrokenConnection: a connection whose server is gone counts as
// broken, with its failure described.
func TestBrokenConnection(t *testing.T) {
	q := &Tally{}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := udp.LocalAddr().String()
	udp.Close() // nothing answers there
	Conn(addr, q, 0, 1, nil)
	if q.Broken.Load() != 1 || q.Conns.Load() != 0 || len(q.Errors()) != 1 {
		t.Fatalf("%s; errors %q", q, q.Errors())
	}
}
