// Package quicping is the QUIC test protocol that the e2e tests and the
// benchmark run across upgrades: one request per stream, "ping" in,
// "gen:N" out, and "gen:N bye" once the server drains, after which the
// client closes the connection and opens another. A client connection is
// broken when a request on it fails: a drain never breaks one.
package quicping

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/tini-hot/tini-hot/hotapp"
	"github.com/tini-hot/tini-hot/hotapp/quicid"
)

// Proto is the protocol's ALPN.
const Proto = "tini-hot-quicping"

// ByeCode is the application error code of a connection the client
// closes after a bye, or at its end: not a failure.
const ByeCode = 0x42

// idle is how long a connection may go unheard of.
const idle = 10 * time.Second

// Serve serves the protocol with quic-go on the UDP socket f, which
// tini-hot handed over, under a self-signed certificate. When tini-hot
// set TINI_HOT_SLOT, its connection IDs carry the slot (hotapp/quicid).
// It notifies READY=1. Once term receives (the caller subscribes it to
// SIGTERM) it answers each connection's next request with a bye,
// accepting the connections whose handshake began here meanwhile, and
// returns once none has been open for 100 ms (after drain at most).
func Serve(f *os.File, drain time.Duration, term <-chan os.Signal) error {
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return err
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("%s is not a UDP socket", f.Name())
	}
	cert, err := SelfSigned()
	if err != nil {
		return err
	}
	// One key for every generation: a packet of a connection another
	// generation owns gets a reset that its client can verify.
	var key quic.StatelessResetKey
	copy(key[:], "the same key for every generation")
	tr := &quic.Transport{Conn: udp, StatelessResetKey: &key}
	if os.Getenv(quicid.SlotEnv) != "" {
		gen, err := quicid.FromEnv()
		if err != nil {
			return err
		}
		tr.ConnectionIDGenerator = gen
	}
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{Proto}}, &quic.Config{MaxIdleTimeout: idle})
	if err != nil {
		return err
	}
	answer := "gen:" + os.Getenv("TINI_HOT_GENERATION")
	var (
		draining atomic.Bool
		open     atomic.Int64 // connections not closed yet
	)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			open.Add(1)
			go func() {
				defer open.Add(-1)
				serveConn(conn, answer, &draining)
			}()
		}
	}()
	_ = hotapp.Notify("READY=1")
	<-term
	draining.Store(true)
	quiet := 0
	for deadline := time.Now().Add(drain); quiet < 2; time.Sleep(50 * time.Millisecond) {
		if open.Load() == 0 {
			quiet++
		} else {
			quiet = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections left open after %v", open.Load(), drain)
		}
	}
	return ln.Close()
}

// serveConn answers every stream of conn until its client closes it.
func serveConn(conn *quic.Conn, answer string, draining *atomic.Bool) {
	for {
		str, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			defer str.Close()
			if _, err := io.ReadAll(str); err != nil {
				return
			}
			out := answer
			if draining.Load() {
				out += " bye"
			}
			_, _ = str.Write([]byte(out))
		}()
	}
}

// SelfSigned is a fresh certificate for localhost; clients do not verify
// it.
func SelfSigned() (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// Tally counts what clients saw.
type Tally struct {
	// Requests made, failed, and answered by another generation than
	// their connection's first answer.
	Requests, Failed, WrongGen atomic.Int64
	// Conns is the connections opened, Byes those ended by a drain,
	// Broken those ended by a failure (a failed dial counts too).
	Conns, Byes, Broken atomic.Int64

	mu   sync.Mutex
	errs []string
}

// Errors is the first few failures, described.
func (q *Tally) Errors() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.errs...)
}

// String sums the tally up.
func (q *Tally) String() string {
	return fmt.Sprintf("%d connections, %d requests, %d failed (%d answered by another generation), %d broken, %d moved after a bye",
		q.Conns.Load(), q.Requests.Load(), q.Failed.Load(), q.WrongGen.Load(), q.Broken.Load(), q.Byes.Load())
}

func (q *Tally) fail(format string, args ...any) {
	q.Failed.Add(1)
	q.mu.Lock()
	if len(q.errs) < 8 {
		q.errs = append(q.errs, fmt.Sprintf(format, args...))
	}
	q.mu.Unlock()
}

// Conn runs one client connection to addr: a request every interval
// until stop closes, a bye or a failure; requests bounds how many it
// makes (0: no bound). Every answer must come from the generation that
// gave its first.
func Conn(addr string, q *Tally, interval time.Duration, requests int, stop <-chan struct{}) {
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{Proto}}
	ctx, cancel := context.WithTimeout(context.Background(), idle)
	conn, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{MaxIdleTimeout: idle})
	cancel()
	if err != nil {
		q.Broken.Add(1)
		q.fail("dial: %v", err)
		return
	}
	q.Conns.Add(1)
	defer conn.CloseWithError(ByeCode, "")
	owner := ""
	for n := 0; requests == 0 || n < requests; n++ {
		select {
		case <-stop:
			return
		default:
		}
		got, err := request(conn)
		q.Requests.Add(1)
		if err != nil {
			q.Broken.Add(1)
			q.fail("request %d on a connection of %s: %v", n, owner, err)
			return
		}
		gen, bye := strings.CutSuffix(got, " bye")
		if owner == "" {
			owner = gen
		} else if gen != owner {
			q.WrongGen.Add(1)
			q.fail("a connection of %s answered by %s", owner, gen)
		}
		if bye {
			q.Byes.Add(1)
			return
		}
		time.Sleep(interval)
	}
}

// Clients runs n clients until stop closes, each running conn again and
// again; a client whose connection broke waits 100 ms before the next.
// The returned function waits for them to end.
func Clients(n int, q *Tally, stop <-chan struct{}, conn func()) (wait func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := q.Broken.Load()
				conn()
				if q.Broken.Load() != before {
					time.Sleep(100 * time.Millisecond) // after a failure, not in a loop
				}
			}
		}()
	}
	return wg.Wait
}

// request makes one request on conn.
func request(conn *quic.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return "", err
	}
	_ = str.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := str.Write([]byte("ping")); err != nil {
		return "", err
	}
	if err := str.Close(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(str)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
