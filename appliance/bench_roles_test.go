package appliance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pion "github.com/pion/dtls/v3"
	gcdtls "github.com/plgd-dev/go-coap/v3/dtls"
	gcmessage "github.com/plgd-dev/go-coap/v3/message"
	gccodes "github.com/plgd-dev/go-coap/v3/message/codes"
	gcmux "github.com/plgd-dev/go-coap/v3/mux"
	gcnet "github.com/plgd-dev/go-coap/v3/net"
	gcoptions "github.com/plgd-dev/go-coap/v3/options"
	gcudp "github.com/plgd-dev/go-coap/v3/udp"
)

// The benchmark's protocol-only peers run in their own processes, pinned to
// the server core like the appliance: the test binary re-executes itself
// with FLOWNEXUS_BENCH_ROLE set and runs only TestBenchRole.

const (
	roleEnv  = "FLOWNEXUS_BENCH_ROLE"
	roleAddr = "FLOWNEXUS_BENCH_ADDR"
	roleDTLS = "FLOWNEXUS_BENCH_DTLS_ADDR"
	// roleDTLSCert is go-coap's certificate listener: a self-signed
	// ECDSA P-256 server certificate, a client certificate required.
	roleDTLSCert = "FLOWNEXUS_BENCH_DTLS_CERT_ADDR"
	rolePSK      = "FLOWNEXUS_BENCH_PSK"
)

// TestBenchRole is a peer process of the benchmark, not a test: without
// FLOWNEXUS_BENCH_ROLE it returns at once.
func TestBenchRole(t *testing.T) {
	role := os.Getenv(roleEnv)
	if role == "" {
		t.Skip("a process role of the benchmark (make bench)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch role {
	case "echo":
		err = runEcho(ctx, os.Getenv(roleAddr))
	case "gocoap":
		err = runGoCoap(ctx, os.Getenv(roleAddr), os.Getenv(roleDTLS), os.Getenv(roleDTLSCert), []byte(os.Getenv(rolePSK)))
	default:
		t.Fatalf("unknown role %q", role)
	}
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}

// runEcho is the floor: read a datagram, turn a CON into an ACK (the two
// type bits of RFC 7252 §3), write it back. No parsing, no state.
func runEcho(ctx context.Context, addr string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
	go func() { <-ctx.Done(); c.Close() }()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if n >= 4 && buf[0]>>4&3 == 0 {
			buf[0] = buf[0]&^0x30 | 0x20
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// runGoCoap is a go-coap v3 server that answers like an LwM2M server's
// registration interface (POST /rd → 2.01 Location-Path rd/<n>, POST
// /rd/<n> → 2.04, DELETE → 2.02, POST /dp → 2.04) and stores nothing: the
// protocol cost of a Go CoAP stack, over UDP and over pion/dtls with PSK.
func runGoCoap(ctx context.Context, addr, dtlsAddr, certAddr string, psk []byte) error {
	var next atomic.Uint64
	r := gcmux.NewRouter()
	r.DefaultHandleFunc(func(w gcmux.ResponseWriter, m *gcmux.Message) {
		path, _ := m.Path()
		switch {
		case m.Code() == gccodes.POST && path == "/rd":
			ep := ""
			qs, _ := m.Queries()
			for _, q := range qs {
				if v, ok := strings.CutPrefix(q, "ep="); ok {
					ep = v
				}
			}
			if ep == "" {
				_ = w.SetResponse(gccodes.BadRequest, gcmessage.TextPlain, strings.NewReader("ep missing"))
				return
			}
			_ = w.SetResponse(gccodes.Created, gcmessage.TextPlain, nil)
			w.Message().AddOptionString(gcmessage.LocationPath, "rd")
			w.Message().AddOptionString(gcmessage.LocationPath, strconv.FormatUint(next.Add(1), 10))
		case m.Code() == gccodes.POST && (strings.HasPrefix(path, "/rd/") || path == "/dp"):
			_ = w.SetResponse(gccodes.Changed, gcmessage.TextPlain, nil)
		case m.Code() == gccodes.DELETE && strings.HasPrefix(path, "/rd/"):
			_ = w.SetResponse(gccodes.Deleted, gcmessage.TextPlain, nil)
		default:
			_ = w.SetResponse(gccodes.NotFound, gcmessage.TextPlain, nil)
		}
	})
	l, err := gcnet.NewListenUDP("udp", addr)
	if err != nil {
		return err
	}
	s := gcudp.NewServer(gcoptions.WithMux(r))
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(l) }()
	if dtlsAddr != "" {
		cfg := &pion.Config{
			PSK:          func([]byte) ([]byte, error) { return psk, nil },
			CipherSuites: []pion.CipherSuiteID{pion.TLS_PSK_WITH_AES_128_CCM_8, pion.TLS_PSK_WITH_AES_128_GCM_SHA256},
		}
		dl, err := gcnet.NewDTLSListener("udp", dtlsAddr, cfg)
		if err != nil {
			return err
		}
		ds := gcdtls.NewServer(gcoptions.WithMux(r))
		go func() { errc <- ds.Serve(dl) }()
		defer ds.Stop()
	}
	if certAddr != "" {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		// The client certificate's signature (CertificateVerify) is
		// checked; its chain is not, unlike the appliance's.
		cfg := &pion.Config{Certificates: []tls.Certificate{cert}, ClientAuth: pion.RequireAnyClientCert,
			CipherSuites: []pion.CipherSuiteID{pion.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, pion.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
		cl, err := gcnet.NewDTLSListener("udp", certAddr, cfg)
		if err != nil {
			return err
		}
		cs := gcdtls.NewServer(gcoptions.WithMux(r))
		go func() { errc <- cs.Serve(cl) }()
		defer cs.Stop()
	}
	select {
	case <-ctx.Done():
		s.Stop()
		return nil
	case err := <-errc:
		return err
	}
}

// selfSigned makes the go-coap peer's ECDSA P-256 server certificate.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-gocoap"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
