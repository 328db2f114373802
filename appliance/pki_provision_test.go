package appliance

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/flownexus/flownexus/store"
)

func TestProvisionAndReissue(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	p, err := OpenPKI(testPKIConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	psk, err := p.Provision(ctx, db, ProvisionRequest{Endpoint: "urn:imei:1", Mode: store.ModePSK})
	if err != nil {
		t.Fatal(err)
	}
	if psk.Credential.PSKIdentity != "urn:imei:1" || len(psk.Credential.PSKKey) != DefaultPSKSize {
		t.Fatalf("psk %+v", psk.Credential)
	}
	if key, err := PSKLookup(db)("urn:imei:1"); err != nil || string(key) != string(psk.Credential.PSKKey) {
		t.Fatalf("lookup %x %v", key, err)
	}
	if _, err := EnrollmentBundle(psk.Enrollment("gw.local")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Provision(ctx, db, ProvisionRequest{Endpoint: "urn:imei:1", Mode: store.ModePSK}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second provision: %v", err)
	}
	if _, err := p.Provision(ctx, db, ProvisionRequest{Endpoint: "x", Mode: "oscore"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad mode: %v", err)
	}

	x, err := p.Provision(ctx, db, ProvisionRequest{Endpoint: "cert-dev", Mode: store.ModeX509})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.Credential(ctx, "cert-dev")
	if err != nil || stored.CertSerial != x.Certificate.Serial || stored.CertPEM != string(x.Certificate.CertPEM) || len(stored.PSKKey) != 0 {
		t.Fatalf("stored %+v %v", stored, err)
	}
	verify := p.VerifyDevice(db)
	first, _ := x509.ParseCertificate(x.Certificate.CertDER)
	if err := verify(first); err != nil {
		t.Fatalf("current certificate refused: %v", err)
	}
	y, err := p.Reissue(ctx, db, ProvisionRequest{Endpoint: "cert-dev", Mode: store.ModeX509})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(first); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("superseded certificate: %v", err)
	}
	second, _ := x509.ParseCertificate(y.Certificate.CertDER)
	if err := verify(second); err != nil {
		t.Fatalf("reissued certificate refused: %v", err)
	}
	if err := db.RevokeCredential(ctx, "cert-dev"); err != nil {
		t.Fatal(err)
	}
	if err := verify(second); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked certificate: %v", err)
	}
}
