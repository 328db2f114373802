package dtls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// testCA is a throwaway certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serialCounter struct {
	sync.Mutex
	n int64
}

// issue makes a leaf certificate; notAfter in the past makes it expired.
func (ca *testCA) issue(t testing.TB, cn string, server bool, notAfter time.Time) (*tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialCounter.Lock()
	serialCounter.n++
	serial := big.NewInt(100 + serialCounter.n)
	serialCounter.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// pskTable is an in-memory PSK lookup.
type pskTable map[string][]byte

func (p pskTable) lookup(id string) ([]byte, error) {
	if k, ok := p[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("lookup %q: %w", id, ErrUnknownIdentity)
}

// echoServer runs a Server whose application echoes every datagram back
// prefixed with the identity it saw, and records the peers.
type echoServer struct {
	*Server
	peers  chan coap.Peer
	events chan Event
}

// next returns the next session event of the given kind.
func (es *echoServer) next(t testing.TB, kind EventKind) Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-es.events:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

// echo answers every datagram with the identity it saw and the payload.
func echo(srv *Server) {
	buf := make([]byte, 2048)
	for {
		n, p, err := srv.ReadFrom(buf)
		if err != nil {
			return
		}
		_ = srv.WriteTo(append([]byte(p.Identity+"|"), buf[:n]...), p)
	}
}

// startServer runs an echo server on loopback (on addr[0] when given).
func startServer(t testing.TB, cfg Config, addr ...string) *echoServer {
	t.Helper()
	listen := "127.0.0.1:0"
	if len(addr) > 0 {
		listen = addr[0]
	}
	events := make(chan Event, 4096)
	cfg.OnEvent = func(ev Event) {
		select {
		case events <- ev:
		default:
		}
	}
	srv, err := Listen(listen, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	es := &echoServer{Server: srv, peers: make(chan coap.Peer, 1024), events: events}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, p, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case es.peers <- p:
			default:
			}
			reply := append([]byte(p.Identity+"|"), buf[:n]...)
			_ = srv.WriteTo(reply, p)
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return es
}

// roundTrip sends msg and waits for the echo.
func roundTrip(t testing.TB, c *Client, msg string) string {
	t.Helper()
	if err := c.WriteTo([]byte(msg), c.Peer()); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

var errTest = errors.New("test refusal")

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (p pskTable) lookupBytes(id []byte) ([]byte, error) { return p.lookup(string(id)) }
