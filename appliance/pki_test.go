package appliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/store"
)

func testPKIConfig(t *testing.T) PKIConfig {
	cfg := DefaultPKIConfig(filepath.Join(t.TempDir(), "pki"))
	cfg.Hostname = func() (string, error) { return "gw-test", nil }
	cfg.InterfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.IPv4(192, 168, 7, 2), Mask: net.CIDRMask(24, 32)}}, nil
	}
	cfg.Names = []string{"flownexus.example", "10.1.2.3"}
	return cfg
}

func TestPKIFirstStartAndReload(t *testing.T) {
	cfg := testPKIConfig(t)
	p, err := OpenPKI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.Dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("pki dir mode %v %v", st.Mode(), err)
	}
	for _, f := range []string{caCertFile, caKeyFile, serverCertFile, serverKeyFile} {
		st, err := os.Stat(filepath.Join(cfg.Dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v %v", f, st.Mode(), err)
		}
	}
	ca := p.CACertificate()
	if !ca.IsCA || ca.NotAfter.Sub(time.Now()) < 9*365*24*time.Hour {
		t.Fatalf("CA: IsCA=%v NotAfter=%v", ca.IsCA, ca.NotAfter)
	}
	leaf := p.ServerCertificate().Leaf
	opts := x509.VerifyOptions{Roots: p.ClientCAs(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, name := range []string{"gw-test", "gw-test.local", "localhost", "flownexus.example", "127.0.0.1", "192.168.7.2", "10.1.2.3", "::1"} {
		opts.DNSName = name
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", name, err)
		}
	}
	if b, _ := pem.Decode(p.CACertPEM()); b == nil || string(b.Bytes) != string(p.CACertDER()) {
		t.Fatal("PEM and DER exports differ")
	}

	// A second start reuses the CA and the server certificate.
	p2, err := OpenPKI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.CACertificate().Equal(ca) || !p2.ServerCertificate().Leaf.Equal(leaf) {
		t.Fatal("restart made new certificates")
	}
	// A new interface address renews the server certificate, same CA.
	cfg.Names = append(cfg.Names, "10.9.9.9")
	p3, err := OpenPKI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p3.CACertificate().Equal(ca) || p3.ServerCertificate().Leaf.Equal(leaf) {
		t.Fatal("a new name did not renew only the server certificate")
	}
}

func TestPKIRejectsCorruptFiles(t *testing.T) {
	cfg := testPKIConfig(t)
	if _, err := OpenPKI(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, caKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPKI(cfg); !errors.Is(err, ErrPKI) {
		t.Fatalf("corrupt CA key: %v", err)
	}
}

func TestIssueDeviceAndImportCA(t *testing.T) {
	p, err := OpenPKI(testPKIConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := p.IssueDevice("urn:imei:350457790000001")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(dc.CertPEM, dc.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.Subject.CommonName != dc.Endpoint || SerialString(leaf.SerialNumber) != dc.Serial {
		t.Fatalf("leaf %q %s vs %+v", leaf.Subject.CommonName, SerialString(leaf.SerialNumber), dc)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.ClientCAs(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "has space", `quo"te`, string(make([]byte, 65))} {
		if _, err := p.IssueDevice(bad); !errors.Is(err, ErrBadEndpointName) {
			t.Errorf("IssueDevice(%q) = %v", bad, err)
		}
	}

	other, err := OpenPKI(testPKIConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ImportCA(dc.CertPEM); !errors.Is(err, ErrBadCA) {
		t.Fatalf("importing a leaf: %v", err)
	}
	if _, err := p.ImportCA([]byte("nope")); !errors.Is(err, ErrBadCA) {
		t.Fatalf("importing garbage: %v", err)
	}
	if _, err := p.ImportCA(other.CACertDER()); err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.IssueDevice("foreign-1")
	fl, _ := x509.ParseCertificate(foreign.CertDER)
	if _, err := fl.Verify(x509.VerifyOptions{Roots: p.ClientCAs(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("imported CA not trusted: %v", err)
	}
	// Persisted: a reopened PKI still trusts it.
	p2, err := OpenPKI(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.ImportedCAs()) != 1 {
		t.Fatalf("imported CAs after reload: %d", len(p2.ImportedCAs()))
	}
}

func TestGeneratePSK(t *testing.T) {
	k, err := GeneratePSK(0)
	if err != nil || len(k) != DefaultPSKSize {
		t.Fatalf("%x %v", k, err)
	}
	k2, _ := GeneratePSK(0)
	if string(k) == string(k2) {
		t.Fatal("two keys alike")
	}
	if k, _ := GeneratePSK(32); len(k) != 32 {
		t.Fatal("size ignored")
	}
	if _, err := GeneratePSK(65); err == nil {
		t.Fatal("oversized key accepted")
	}
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "fx.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestDTLSWithStoreCredentials runs the CoAPS listener the way the
// appliance builds it, against a real SQLite store, and checks every
// handshake refusal.
func TestDTLSWithStoreCredentials(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	p, err := OpenPKI(testPKIConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := OpenPKI(testPKIConfig(t))
	key, _ := GeneratePSK(0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.SetCredential(ctx, store.Credential{Endpoint: "psk-dev", Mode: store.ModePSK, PSKIdentity: "psk-id", PSKKey: key}))
	must(db.SetCredential(ctx, store.Credential{Endpoint: "psk-revoked", Mode: store.ModePSK, PSKIdentity: "psk-rev", PSKKey: key}))
	must(db.RevokeCredential(ctx, "psk-revoked"))
	good, _ := p.IssueDevice("x509-dev")
	must(db.SetCredential(ctx, store.Credential{Endpoint: "x509-dev", Mode: store.ModeX509, CertPEM: string(good.CertPEM), CertSerial: good.Serial}))
	superseded, _ := p.IssueDevice("x509-dev") // issued, then replaced by good
	superseded, good = good, superseded
	must(db.SetCredential(ctx, store.Credential{Endpoint: "x509-dev", Mode: store.ModeX509, CertPEM: string(good.CertPEM), CertSerial: good.Serial}))
	revoked, _ := p.IssueDevice("x509-revoked")
	must(db.SetCredential(ctx, store.Credential{Endpoint: "x509-revoked", Mode: store.ModeX509, CertPEM: string(revoked.CertPEM), CertSerial: revoked.Serial}))
	must(db.RevokeCredential(ctx, "x509-revoked"))
	foreign, _ := other.IssueDevice("foreign-dev")

	cfg := p.DTLSConfig(db, nil)
	events := make(chan dtls.Event, 64)
	cfg.OnEvent = func(ev dtls.Event) { events <- ev }
	cfg.HandshakeTimeout = 3 * time.Second
	srv, err := dtls.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := srv.LocalAddr().String()
	roots := x509.NewCertPool()
	roots.AddCert(p.CACertificate())

	certOf := func(dc DeviceCertificate) *tls.Certificate {
		c, err := tls.X509KeyPair(dc.CertPEM, dc.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	cases := []struct {
		name    string
		cfg     dtls.ClientConfig
		ok      bool
		want    error
		identit string
	}{
		{"psk", dtls.ClientConfig{PSKIdentity: "psk-id", PSK: key}, true, nil, "psk-id"},
		{"x509", dtls.ClientConfig{Certificate: certOf(good), RootCAs: roots, ServerName: "localhost"}, true, nil, "x509-dev"},
		{"unknown identity", dtls.ClientConfig{PSKIdentity: "nobody", PSK: key}, false, dtls.ErrUnknownIdentity, ""},
		{"revoked psk", dtls.ClientConfig{PSKIdentity: "psk-rev", PSK: key}, false, ErrRevoked, ""},
		{"wrong key", dtls.ClientConfig{PSKIdentity: "psk-id", PSK: []byte("0000000000000000")}, false, nil, ""},
		{"revoked certificate", dtls.ClientConfig{Certificate: certOf(revoked), RootCAs: roots, ServerName: "localhost"}, false, ErrRevoked, ""},
		{"superseded certificate", dtls.ClientConfig{Certificate: certOf(superseded), RootCAs: roots, ServerName: "localhost"}, false, ErrUnknownCertificate, ""},
		{"foreign certificate", dtls.ClientConfig{Certificate: certOf(foreign), RootCAs: roots, ServerName: "localhost"}, false, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.HandshakeTimeout = 3 * time.Second
			c, err := dtls.Dial(ctx, addr, tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ev := <-events
				for ev.Kind == dtls.EventClosed { // the previous case's close_notify
					ev = <-events
				}
				if ev.Kind != dtls.EventEstablished || ev.Peer.Identity != tc.identit {
					t.Fatalf("event %+v", ev)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			}
			for ev := range events {
				if ev.Kind != dtls.EventFailed {
					continue
				}
				if tc.want != nil && !errors.Is(ev.Err, tc.want) {
					t.Fatalf("refused with %v, want %v", ev.Err, tc.want)
				}
				break
			}
		})
	}
}

// TestImportedCAEnablesForeignDevices: the same foreign certificate is
// accepted once its CA is imported.
func TestImportedCAEnablesForeignDevices(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	p, _ := OpenPKI(testPKIConfig(t))
	other, _ := OpenPKI(testPKIConfig(t))
	if _, err := p.ImportCA(other.CACertPEM()); err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.IssueDevice("foreign-dev")
	cfg := p.DTLSConfig(db, nil)
	srv, err := dtls.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	defer func() { cancel(); <-done }()
	pair, _ := tls.X509KeyPair(foreign.CertPEM, foreign.KeyPEM)
	roots := x509.NewCertPool()
	roots.AddCert(p.CACertificate())
	c, err := dtls.Dial(ctx, srv.LocalAddr().String(), dtls.ClientConfig{Certificate: &pair, RootCAs: roots, ServerName: "127.0.0.1", HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Revoking the endpoint named by the CN refuses it again.
	if err := db.SetCredential(ctx, store.Credential{Endpoint: "foreign-dev", Mode: store.ModeX509}); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeCredential(ctx, "foreign-dev"); err != nil {
		t.Fatal(err)
	}
	if c, err := dtls.Dial(ctx, srv.LocalAddr().String(), dtls.ClientConfig{Certificate: &pair, RootCAs: roots, ServerName: "127.0.0.1", HandshakeTimeout: 3 * time.Second}); err == nil {
		c.Close()
		t.Fatal("revoked foreign device accepted")
	}
}

func TestCheckIdentity(t *testing.T) {
	dtlsPeer := func(id string) coap.Peer {
		return coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5000"), Session: 7, Identity: id}
	}
	plain := coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5000")}
	psk := &store.Credential{Endpoint: "ep-a", Mode: store.ModePSK, PSKIdentity: "id-a"}
	x5 := &store.Credential{Endpoint: "ep-x", Mode: store.ModeX509}
	bs := &store.Credential{Endpoint: "ep-b", Mode: store.ModeBootstrap, PSKIdentity: "factory-b"}
	nosec := &store.Credential{Endpoint: "ep-n", Mode: store.ModeNoSec}
	rev := &store.Credential{Endpoint: "ep-r", Mode: store.ModePSK, PSKIdentity: "id-r", Revoked: true}
	cases := []struct {
		name  string
		ep    string
		peer  coap.Peer
		cred  *store.Credential
		allow bool
		want  error
	}{
		{"psk ok", "ep-a", dtlsPeer("id-a"), psk, false, nil},
		{"psk takeover by another identity", "ep-a", dtlsPeer("id-other"), psk, false, ErrIdentityMismatch},
		{"psk device over plain CoAP", "ep-a", plain, psk, true, ErrSecurityRequired},
		{"x509 ok", "ep-x", dtlsPeer("ep-x"), x5, false, nil},
		{"x509 CN mismatch", "ep-x", dtlsPeer("ep-y"), x5, false, ErrIdentityMismatch},
		{"x509 over plain CoAP", "ep-x", plain, x5, false, ErrSecurityRequired},
		{"bootstrapped ok", "ep-b", dtlsPeer("ep-b"), bs, false, nil},
		{"bootstrapped with factory identity", "ep-b", dtlsPeer("factory-b"), bs, false, ErrIdentityMismatch},
		{"bootstrapped over plain CoAP", "ep-b", plain, bs, false, ErrSecurityRequired},
		{"nosec plain", "ep-n", plain, nosec, false, nil},
		{"nosec name claimed by other DTLS identity", "ep-n", dtlsPeer("id-a"), nosec, false, ErrIdentityMismatch},
		{"revoked", "ep-r", dtlsPeer("id-r"), rev, false, ErrRevoked},
		{"unknown plain allowed", "new", plain, nil, true, nil},
		{"unknown plain refused", "new", plain, nil, false, ErrNotProvisioned},
		{"unknown endpoint over DTLS", "new", dtlsPeer("id-a"), nil, true, ErrIdentityMismatch},
	}
	for _, tc := range cases {
		err := CheckIdentity(tc.ep, tc.peer, tc.cred, tc.allow)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestOperationalPSKLookup(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	factory, _ := GeneratePSK(0)
	c := store.Credential{Endpoint: "ep-b", Mode: store.ModeBootstrap, PSKIdentity: "factory-b", PSKKey: factory}
	if err := db.SetCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	id, op := OperationalPSK(c)
	if id != "ep-b" || len(op) != DefaultPSKSize || string(op) == string(factory) {
		t.Fatalf("operational %q %x", id, op)
	}
	got, err := PSKLookup(db)("ep-b")
	if err != nil || string(got) != string(op) {
		t.Fatalf("operational lookup %x %v", got, err)
	}
	if _, err := PSKLookup(db)("factory-b"); !errors.Is(err, dtls.ErrUnknownIdentity) {
		t.Fatalf("factory identity at the LwM2M server: %v", err)
	}
	if got, err := BootstrapPSKLookup(db)("factory-b"); err != nil || string(got) != string(factory) {
		t.Fatalf("bootstrap lookup %x %v", got, err)
	}
	if _, err := BootstrapPSKLookup(db)("ep-b"); !errors.Is(err, dtls.ErrUnknownIdentity) {
		t.Fatalf("operational identity at the bootstrap server: %v", err)
	}
}
