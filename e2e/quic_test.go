package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/tini-hot/tini-hot/hotapp"
	"github.com/tini-hot/tini-hot/hotapp/quicid"
)

// quicProto is the ALPN of the test protocol: one request per stream,
// "ping" in, "gen:N" out, "gen:N bye" once the server drains, after which
// the client closes the connection and opens another.
const quicProto = "tini-hot-e2e"

// byeCode is the application error code of a connection closed after a
// bye: a drain, not a failure.
const byeCode = 0x42

func init() { registerHelper("quicserver", helperQUICServer) }

// helperQUICServer serves the test protocol with quic-go on the UDP
// socket fd 3, its connection IDs carrying TINI_HOT_SLOT (hotapp/quicid)
// when steered. On SIGTERM it answers the next request of each
// connection with a bye, and exits once its clients have closed them all
// (10 s at most).
func helperQUICServer() int {
	pc, err := net.FilePacketConn(os.NewFile(3, "udp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("QUIC_CERT"), os.Getenv("QUIC_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var key quic.StatelessResetKey
	copy(key[:], "the same key for every generation")
	tr := &quic.Transport{Conn: pc.(*net.UDPConn), StatelessResetKey: &key}
	if os.Getenv(quicid.SlotEnv) != "" {
		gen, err := quicid.FromEnv()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		tr.ConnectionIDGenerator = gen
	}
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicProto}}, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	answer := "gen:" + os.Getenv("TINI_HOT_GENERATION")
	var (
		draining atomic.Bool
		open     atomic.Int64 // connections not closed yet
	)
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		<-sigs
		draining.Store(true)
		// Connections whose handshake began here before the handover
		// still arrive: accept them too (each gets a bye at its first
		// request). Exit once none has been open for 100 ms.
		idle := 0
		for deadline := time.Now().Add(10 * time.Second); idle < 2; time.Sleep(50 * time.Millisecond) {
			if open.Load() == 0 {
				idle++
			} else {
				idle = 0
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "quicserver: connections left open at exit")
				break
			}
		}
		_ = ln.Close()
		os.Exit(0)
	}()
	_ = hotapp.Notify("READY=1")
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			select {} // closed: the drain goroutine exits
		}
		open.Add(1)
		go func() {
			defer open.Add(-1)
			for {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return // closed by the client
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
		}()
	}
}

// quicTally counts what the QUIC clients saw.
type quicTally struct {
	requests, failed, conns, byes, wrongGen atomic.Int64
	mu                                      sync.Mutex
	errs                                    []string
}

func (q *quicTally) fail(format string, args ...any) {
	q.failed.Add(1)
	q.mu.Lock()
	if len(q.errs) < 8 {
		q.errs = append(q.errs, fmt.Sprintf(format, args...))
	}
	q.mu.Unlock()
}

// quicConn runs one client connection: a request every interval until
// stop, a bye, or an error; requests counts how many it makes at most
// (0: no bound). Every answer must come from the generation that
// answered its first request.
func quicConn(addr string, q *quicTally, interval time.Duration, requests int, stop <-chan struct{}) {
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicProto}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	cancel()
	if err != nil {
		q.fail("dial: %v", err)
		return
	}
	q.conns.Add(1)
	defer conn.CloseWithError(byeCode, "")
	owner := ""
	for n := 0; requests == 0 || n < requests; n++ {
		select {
		case <-stop:
			return
		default:
		}
		got, err := quicRequest(conn)
		q.requests.Add(1)
		if err != nil {
			q.fail("request %d on a connection of %s: %v", n, owner, err)
			return
		}
		gen, bye := strings.CutSuffix(got, " bye")
		if owner == "" {
			owner = gen
		} else if gen != owner {
			q.wrongGen.Add(1)
			q.fail("a connection of %s answered by %s", owner, gen)
		}
		if bye {
			q.byes.Add(1)
			return
		}
		time.Sleep(interval)
	}
}

// quicRequest makes one request on conn.
func quicRequest(conn *quic.Conn) (string, error) {
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

// selfSigned writes a certificate and its key for the QUIC server.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tini-hot-e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
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
	cert, key := selfSigned(t)
	bySockets(t, "QUIC, 20 upgrades", func(t *testing.T, name string, flags []string) string {
		addr := freeAddr(t)
		listen := "h3=udp://" + addr + "?flows=quic"
		if name == "shared" {
			listen = "h3=udp://" + addr
		}
		args := append(append([]string{"-l", listen, "--ready", "notify", "--drain-timeout", "20s"}, flags...), "--")
		p := startInit(t, th(), mode{"pid1", true}, []string{"QUIC_CERT=" + cert, "QUIC_KEY=" + key}, append(args, helperCmd("quicserver")...)...)
		p.waitGen(1, "serving")
		q := &quicTally{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// clients runs n clients, each calling conn until stop.
		clients := func(n int, conn func()) {
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
						conn()
					}
				}()
			}
		}
		// 50 long-lived connections: each moves to a new one after a
		// bye, until the end.
		clients(50, func() {
			before := q.failed.Load()
			quicConn(addr, q, 10*time.Millisecond, 0, stop)
			if q.failed.Load() != before {
				time.Sleep(100 * time.Millisecond) // after a failure, not in a loop
			}
		})
		// New connections throughout: 3 requests each.
		clients(4, func() { quicConn(addr, q, 0, 3, stop) })
		for i := 2; i <= 21; i++ {
			// Each generation serves a while: 500 requests.
			from := q.requests.Load()
			waitFor(t, "500 requests", func() (int64, bool) { n := q.requests.Load() - from; return n, n >= 500 })
			if out, code := p.reloadWithin(2 * time.Minute); code != 0 {
				close(stop)
				wg.Wait()
				t.Fatalf("upgrade %d: %d %s", i, code, out)
			}
		}
		settled(t, p)
		close(stop)
		wg.Wait()
		res := fmt.Sprintf("%d connections, %d requests, %d failed (%d answered by another generation), %d moved after a bye",
			q.conns.Load(), q.requests.Load(), q.failed.Load(), q.wrongGen.Load(), q.byes.Load())
		t.Logf("%s sockets: %s; first errors: %q", name, res, q.errs)
		if st := p.status(); st.Listeners[0].Mode != name {
			t.Errorf("listener mode %q, want %s", st.Listeners[0].Mode, name)
		}
		if name == "steered" && (q.failed.Load() != 0 || q.requests.Load() == 0) {
			t.Fatalf("%s, want none failed", res)
		}
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 0 {
			t.Errorf("exit %d", code)
		}
		return res
	})
}
