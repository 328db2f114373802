package appliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/bootstrap"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// identityHandler is the registration hook as the appliance wires it:
// CheckIdentity against the store.
type identityHandler struct {
	server.NopHandler
	check IdentityChecker
	regs  chan *server.Registration
}

func (h *identityHandler) Registered(ctx context.Context, r *server.Registration) error {
	if err := h.check.Check(ctx, r.Endpoint, r.Peer); err != nil {
		return fmt.Errorf("%w: %w", server.ErrForbidden, err)
	}
	h.regs <- r
	return nil
}

// rig is a whole device-facing side of the appliance on loopback: store,
// PKI, LwM2M server on CoAP and CoAPS, bootstrap server on CoAP and CoAPS.
type rig struct {
	db              *store.DB
	pki             *PKI
	coap, coaps     string
	bsCoAP, bsCoAPS string
	regs            chan *server.Registration
	bsResults       chan bootstrap.Result
	roots           *x509.CertPool
	dtlsEvents      chan dtls.Event
}

func newRig(t *testing.T, policy ...func(*BootstrapPolicy, *PKI)) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{db: openStore(t), regs: make(chan *server.Registration, 16), bsResults: make(chan bootstrap.Result, 16), dtlsEvents: make(chan dtls.Event, 64)}
	var err error
	if r.pki, err = OpenPKI(testPKIConfig(t)); err != nil {
		t.Fatal(err)
	}
	r.roots = x509.NewCertPool()
	r.roots.AddCert(r.pki.CACertificate())

	scfg := server.DefaultConfig()
	scfg.CoAP.ACKTimeout = 300 * time.Millisecond
	srv := server.New(scfg, server.WithHandler(&identityHandler{check: IdentityChecker{Creds: r.db}, regs: r.regs}))
	udp, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dcfg := r.pki.DTLSConfig(r.db, nil)
	dcfg.HandshakeTimeout = 3 * time.Second
	dcfg.OnEvent = func(ev dtls.Event) {
		select {
		case r.dtlsEvents <- ev:
		default:
		}
	}
	sec, err := dtls.Listen("127.0.0.1:0", dcfg)
	if err != nil {
		t.Fatal(err)
	}
	r.coap, r.coaps = udp.LocalAddr().String(), sec.LocalAddr().String()

	bp := BootstrapPolicy{Creds: r.db, ServerURI: "coaps://" + r.coaps, PlainServerURI: "coap://" + r.coap, Lifetime: 300 * time.Second}
	for _, f := range policy {
		f(&bp, r.pki)
	}
	bs, err := bootstrap.New(bootstrap.Config{
		Provision: bp.Provision,
		OnResult:  func(res bootstrap.Result) { r.bsResults <- res },
	})
	if err != nil {
		t.Fatal(err)
	}
	bsUDP, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bcfg := r.pki.BootstrapDTLSConfig(r.db, nil)
	bcfg.HandshakeTimeout = 3 * time.Second
	bsSec, err := dtls.Listen("127.0.0.1:0", bcfg)
	if err != nil {
		t.Fatal(err)
	}
	r.bsCoAP, r.bsCoAPS = bsUDP.LocalAddr().String(), bsSec.LocalAddr().String()

	ccfg := coap.DefaultConfig()
	ccfg.ACKTimeout = 300 * time.Millisecond
	done := make(chan struct{}, 6)
	goRun := func(f func() error) {
		go func() {
			_ = f()
			done <- struct{}{}
		}()
	}
	goRun(func() error { return sec.Run(ctx) })
	goRun(func() error { return bsSec.Run(ctx) })
	goRun(func() error { return srv.Serve(ctx, udp) })
	goRun(func() error { return srv.Serve(ctx, sec) })
	bsEP1, bsEP2 := coap.NewEndpoint(bsUDP, bs, ccfg), coap.NewEndpoint(bsSec, bs, ccfg)
	goRun(func() error { return bsEP1.Run(ctx) })
	goRun(func() error { return bsEP2.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		for range 6 {
			<-done
		}
	})
	return r
}

// deviceObjects builds a device's Security, Server and Device objects; the
// Security object holds a factory bootstrap account when bsURI is set.
func deviceObjects(t *testing.T, bsURI string, bsID string, bsKey []byte) []client.Object {
	t.Helper()
	reg := lwm2m.NewRegistry()
	var objs []client.Object
	for _, id := range []uint16{0, 1, 3} {
		m, _ := reg.Object(id)
		o := client.NewValueObject(m)
		switch id {
		case 0:
			if bsURI != "" {
				if err := o.AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String(bsURI), 1: lwm2m.Bool(true), 2: lwm2m.Int(0),
					3: lwm2m.Opaque([]byte(bsID)), 5: lwm2m.Opaque(bsKey)}); err != nil {
					t.Fatal(err)
				}
			}
		case 3:
			if err := o.AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("FlowNexus"), 1: lwm2m.String("sim")}); err != nil {
				t.Fatal(err)
			}
		}
		objs = append(objs, o)
	}
	return objs
}

func deviceTree(t *testing.T, bsURI string, bsID string, bsKey []byte) *client.Tree {
	t.Helper()
	tree := client.NewTree(lwm2m.NewRegistry())
	if err := tree.Add(deviceObjects(t, bsURI, bsID, bsKey)...); err != nil {
		t.Fatal(err)
	}
	return tree
}

// register runs an LwM2M client over t until its first Register is
// answered, and returns nil or the refusal.
func register(t *testing.T, endpoint string, tr coap.Transport, peer coap.Peer) error {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoint = endpoint
	cfg.Lifetime = 300 * time.Second
	cfg.RetryInterval, cfg.RetryMax = time.Hour, time.Hour
	cfg.CoAP.ACKTimeout = 300 * time.Millisecond
	outcome := make(chan error, 4)
	c, err := client.New(cfg, client.WithTransport(tr, peer), client.WithEvents(func(ev client.Event) {
		switch ev.Kind {
		case client.EventRegistered:
			outcome <- nil
		case client.EventRegisterFailed:
			outcome <- ev.Err
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Tree().Add(deviceObjects(t, "", "", nil)...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var res error
	select {
	case res = <-outcome:
	case <-time.After(30 * time.Second):
		res = errors.New("no registration outcome")
	}
	cancel()
	<-done
	return res
}

func dialPSK(t *testing.T, addr, id string, key []byte) (*dtls.Client, error) {
	t.Helper()
	return dtls.Dial(context.Background(), addr, dtls.ClientConfig{PSKIdentity: id, PSK: key, HandshakeTimeout: 3 * time.Second})
}

func TestEndToEndPSKAndCertificateRegistration(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	keyA, _ := GeneratePSK(0)
	keyB, _ := GeneratePSK(0)
	for _, c := range []store.Credential{
		{Endpoint: "ep-a", Mode: store.ModePSK, PSKIdentity: "id-a", PSKKey: keyA},
		{Endpoint: "ep-b", Mode: store.ModePSK, PSKIdentity: "id-b", PSKKey: keyB},
		{Endpoint: "ep-plain", Mode: store.ModeNoSec},
	} {
		if err := r.db.SetCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	dc, _ := r.pki.IssueDevice("ep-x")
	if err := r.db.SetCredential(ctx, store.Credential{Endpoint: "ep-x", Mode: store.ModeX509, CertPEM: string(dc.CertPEM), CertSerial: dc.Serial}); err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(dc.CertPEM, dc.KeyPEM)

	t.Run("psk registers", func(t *testing.T) {
		c, err := dialPSK(t, r.coaps, "id-a", keyA)
		if err != nil {
			t.Fatal(err)
		}
		if err := register(t, "ep-a", c, c.Peer()); err != nil {
			t.Fatal(err)
		}
		if reg := <-r.regs; reg.Endpoint != "ep-a" || reg.Peer.Identity != "id-a" || !reg.Peer.Secure() {
			t.Fatalf("registration %+v", reg)
		}
	})
	t.Run("certificate registers", func(t *testing.T) {
		c, err := dtls.Dial(ctx, r.coaps, dtls.ClientConfig{Certificate: &pair, RootCAs: r.roots, ServerName: "localhost", HandshakeTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := register(t, "ep-x", c, c.Peer()); err != nil {
			t.Fatal(err)
		}
		if reg := <-r.regs; reg.Endpoint != "ep-x" || reg.Peer.Identity != "ep-x" {
			t.Fatalf("registration %+v", reg)
		}
	})
	t.Run("nosec registers over plain CoAP", func(t *testing.T) {
		tr, peer, err := coap.DialUDP("127.0.0.1:0", r.coap)
		if err != nil {
			t.Fatal(err)
		}
		if err := register(t, "ep-plain", tr, peer); err != nil {
			t.Fatal(err)
		}
		<-r.regs
	})
	refused := func(t *testing.T, err error) {
		t.Helper()
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != coap.Forbidden {
			t.Fatalf("want 4.03, got %v", err)
		}
	}
	t.Run("takeover of another endpoint refused", func(t *testing.T) {
		c, err := dialPSK(t, r.coaps, "id-b", keyB)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, register(t, "ep-a", c, c.Peer()))
	})
	t.Run("certificate CN mismatch refused", func(t *testing.T) {
		c, err := dtls.Dial(ctx, r.coaps, dtls.ClientConfig{Certificate: &pair, RootCAs: r.roots, ServerName: "localhost", HandshakeTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, register(t, "ep-a", c, c.Peer()))
	})
	t.Run("DTLS device over plain CoAP refused", func(t *testing.T) {
		tr, peer, err := coap.DialUDP("127.0.0.1:0", r.coap)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, register(t, "ep-a", tr, peer))
	})
	t.Run("unprovisioned endpoint refused", func(t *testing.T) {
		tr, peer, err := coap.DialUDP("127.0.0.1:0", r.coap)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, register(t, "stranger", tr, peer))
	})
	t.Run("unknown identity and wrong key end the handshake", func(t *testing.T) {
		if c, err := dialPSK(t, r.coaps, "nobody", keyA); err == nil {
			c.Close()
			t.Fatal("unknown identity accepted")
		}
		if c, err := dialPSK(t, r.coaps, "id-a", keyB); err == nil {
			c.Close()
			t.Fatal("wrong key accepted")
		}
	})
	t.Run("expired certificate ends the handshake", func(t *testing.T) {
		saved := r.pki.cfg
		r.pki.cfg.Now = func() time.Time { return time.Now().Add(-72 * time.Hour) }
		r.pki.cfg.DeviceValidity = time.Hour
		old, err := r.pki.IssueDevice("ep-old")
		r.pki.cfg = saved
		if err != nil {
			t.Fatal(err)
		}
		if err := r.db.SetCredential(ctx, store.Credential{Endpoint: "ep-old", Mode: store.ModeX509, CertSerial: old.Serial}); err != nil {
			t.Fatal(err)
		}
		op, _ := tls.X509KeyPair(old.CertPEM, old.KeyPEM)
		if c, err := dtls.Dial(ctx, r.coaps, dtls.ClientConfig{Certificate: &op, RootCAs: r.roots, ServerName: "localhost", HandshakeTimeout: 3 * time.Second}); err == nil {
			c.Close()
			t.Fatal("expired certificate accepted")
		}
	})
}

// TestEndToEndBootstrap: a device with only factory bootstrap credentials
// bootstraps over CoAPS and registers with what it received, untouched.
func TestEndToEndBootstrap(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	factory, _ := GeneratePSK(0)
	if err := r.db.SetCredential(ctx, store.Credential{Endpoint: "urn:imei:350457790000009", Mode: store.ModeBootstrap, PSKIdentity: "factory-9", PSKKey: factory}); err != nil {
		t.Fatal(err)
	}
	if err := r.db.SetCredential(ctx, store.Credential{Endpoint: "other", Mode: store.ModeBootstrap, PSKIdentity: "factory-o", PSKKey: factory}); err != nil {
		t.Fatal(err)
	}
	ep := "urn:imei:350457790000009"

	// The device: factory account in /0/0, nothing else.
	tree := deviceTree(t, "coaps://"+r.bsCoAPS, "factory-9", factory)
	bsT, err := dialPSK(t, r.bsCoAPS, "factory-9", factory)
	if err != nil {
		t.Fatal(err)
	}
	bc := bootstrap.NewClient(tree, bootstrap.ClientConfig{Endpoint: ep, PreferredFormat: lwm2m.FormatSenMLCBOR})
	ccfg := coap.DefaultConfig()
	ccfg.ACKTimeout = 300 * time.Millisecond
	bsEP := coap.NewEndpoint(bsT, bc, ccfg)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bsEP.Run(rctx) }()
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	acct, err := bc.Bootstrap(bctx, bsEP, bsT.Peer())
	bcancel()
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if res := <-r.bsResults; res.Err != nil || res.Endpoint != ep {
		t.Fatalf("bootstrap result %+v", res)
	}
	if acct.ServerURI != "coaps://"+r.coaps || acct.Mode != bootstrap.ModePSK || string(acct.Identity) != ep || acct.ShortServerID != 101 {
		t.Fatalf("account %+v", acct)
	}

	// Register with exactly what the bootstrap server wrote.
	host := acct.ServerURI[len("coaps://"):]
	c, err := dialPSK(t, host, string(acct.Identity), acct.SecretKey)
	if err != nil {
		t.Fatalf("operational handshake: %v", err)
	}
	if err := register(t, ep, c, c.Peer()); err != nil {
		t.Fatal(err)
	}
	if reg := <-r.regs; reg.Endpoint != ep || reg.Peer.Identity != ep {
		t.Fatalf("registration %+v", reg)
	}
	// The factory identity is not an operational one.
	if c, err := dialPSK(t, r.coaps, "factory-9", factory); err == nil {
		c.Close()
		t.Fatal("factory credentials accepted by the LwM2M server")
	}

	// Refusals at the bootstrap server.
	bootstrapAs := func(t *testing.T, tr coap.Transport, peer coap.Peer, endpoint string) error {
		t.Helper()
		tree := deviceTree(t, "coaps://x", "x", []byte("x"))
		bc := bootstrap.NewClient(tree, bootstrap.ClientConfig{Endpoint: endpoint})
		e := coap.NewEndpoint(tr, bc, ccfg)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(rctx) }()
		defer func() { cancel(); <-done }()
		bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
		defer bcancel()
		_, err := bc.Bootstrap(bctx, e, peer)
		return err
	}
	t.Run("bootstrap of another endpoint refused", func(t *testing.T) {
		tr, err := dialPSK(t, r.bsCoAPS, "factory-9", factory)
		if err != nil {
			t.Fatal(err)
		}
		if err := bootstrapAs(t, tr, tr.Peer(), "other"); !errors.Is(err, bootstrap.ErrRefused) {
			t.Fatalf("takeover at bootstrap: %v", err)
		}
	})
	t.Run("bootstrap over plain CoAP refused", func(t *testing.T) {
		tr, peer, err := coap.DialUDP("127.0.0.1:0", r.bsCoAP)
		if err != nil {
			t.Fatal(err)
		}
		if err := bootstrapAs(t, tr, peer, ep); !errors.Is(err, bootstrap.ErrRefused) {
			t.Fatalf("plain bootstrap: %v", err)
		}
	})
	t.Run("unknown factory identity refused at handshake", func(t *testing.T) {
		if c, err := dialPSK(t, r.bsCoAPS, "factory-x", factory); err == nil {
			c.Close()
			t.Fatal("unknown factory identity accepted")
		}
	})
}

// TestEndToEndBootstrapCertificate: the bootstrap server hands out a
// device certificate; the device registers with it.
func TestEndToEndBootstrapCertificate(t *testing.T) {
	r := newRig(t, func(bp *BootstrapPolicy, p *PKI) { bp.Certificates = p })
	ctx := context.Background()
	factory, _ := GeneratePSK(0)
	ep := "urn:imei:350457790000010"
	if err := r.db.SetCredential(ctx, store.Credential{Endpoint: ep, Mode: store.ModeBootstrap, PSKIdentity: "factory-10", PSKKey: factory}); err != nil {
		t.Fatal(err)
	}
	tree := deviceTree(t, "coaps://"+r.bsCoAPS, "factory-10", factory)
	bsT, err := dialPSK(t, r.bsCoAPS, "factory-10", factory)
	if err != nil {
		t.Fatal(err)
	}
	bc := bootstrap.NewClient(tree, bootstrap.ClientConfig{Endpoint: ep, PreferredFormat: lwm2m.FormatTLV})
	ccfg := coap.DefaultConfig()
	ccfg.ACKTimeout = 300 * time.Millisecond
	bsEP := coap.NewEndpoint(bsT, bc, ccfg)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bsEP.Run(rctx) }()
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	acct, err := bc.Bootstrap(bctx, bsEP, bsT.Peer())
	bcancel()
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if acct.Mode != bootstrap.ModeCertificate {
		t.Fatalf("account mode %d", acct.Mode)
	}
	key, err := x509.ParseECPrivateKey(acct.SecretKey)
	if err != nil {
		t.Fatalf("private key from /0/x/5: %v", err)
	}
	ca, err := x509.ParseCertificate(acct.ServerPublicKey)
	if err != nil {
		t.Fatalf("CA from /0/x/4: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cert := &tls.Certificate{Certificate: [][]byte{acct.Identity}, PrivateKey: key}
	c, err := dtls.Dial(ctx, acct.ServerURI[len("coaps://"):], dtls.ClientConfig{Certificate: cert, RootCAs: roots, ServerName: "localhost", HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("operational handshake: %v", err)
	}
	if err := register(t, ep, c, c.Peer()); err != nil {
		t.Fatal(err)
	}
	if reg := <-r.regs; reg.Endpoint != ep || reg.Peer.Identity != ep {
		t.Fatalf("registration %+v", reg)
	}
	// Revoking the endpoint retires the bootstrap-issued certificate.
	if err := r.db.RevokeCredential(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if c, err := dtls.Dial(ctx, r.coaps, dtls.ClientConfig{Certificate: cert, RootCAs: roots, ServerName: "localhost", HandshakeTimeout: 3 * time.Second}); err == nil {
		c.Close()
		t.Fatal("certificate of a revoked endpoint accepted")
	}
}
