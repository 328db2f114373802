package appliance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
)

// TestEndToEndRevoke: an admin revokes a PSK device's credential; it is
// logged out at once and cannot register again over its live DTLS session.
func TestEndToEndRevoke(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	var cred struct {
		Security struct{ PSKIdentity, PSKKey string }
	}
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "rev-1", "security": map[string]string{"mode": "psk"}}, http.StatusCreated, &cred)
	key, _ := hex.DecodeString(cred.Security.PSKKey)
	refused := make(chan error, 8)
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = "rev-1"
	dc.Server = "coaps://" + ta.a.Addrs().CoAPS
	dc.CoAP = fastCoAP()
	dev := runDevice(t, dc,
		simulation.WithDeviceDial(func(ctx context.Context, endpoint, _ string) (coap.Transport, coap.Peer, error) {
			c, err := dtls.Dial(ctx, ta.a.Addrs().CoAPS, dtls.ClientConfig{PSKIdentity: cred.Security.PSKIdentity, PSK: key})
			if err != nil {
				return nil, coap.Peer{}, err
			}
			return c, c.Peer(), nil
		}),
		simulation.WithDeviceEvents(func(e client.Event) {
			if e.Kind == client.EventRegisterFailed {
				select {
				case refused <- e.Err:
				default:
				}
			}
		}))

	ta.do("POST", "/api/v1/devices/rev-1/revoke", nil, http.StatusOK, nil)
	if _, ok := ta.a.srv.Registration("rev-1"); ok {
		t.Fatal("the revoked device is still registered")
	}
	dev.Client().TriggerUpdate() // 4.04, then a Register over the same session
	select {
	case err := <-refused:
		if !strings.Contains(err.Error(), "4.03") {
			t.Fatalf("register after revocation: %v, want 4.03", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the revoked device's Register got no answer")
	}
	if _, ok := ta.a.srv.Registration("rev-1"); ok {
		t.Fatal("the revoked device registered again")
	}
	ta.do("POST", "/api/v1/devices/nobody/revoke", nil, http.StatusNotFound, nil)
}

// TestEndToEndImportCA: an admin imports a foreign CA; garbage is refused.
func TestEndToEndImportCA(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Vendor Device CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Subject string }
	ta.doRaw("POST", "/api/v1/pki/ca", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), http.StatusCreated, &out)
	if !strings.Contains(out.Subject, "Vendor Device CA") {
		t.Errorf("imported subject = %q", out.Subject)
	}
	if n := len(ta.a.pki.ImportedCAs()); n != 1 {
		t.Errorf("imported CAs = %d, want 1", n)
	}
	ta.doRaw("POST", "/api/v1/pki/ca", []byte("not a certificate"), http.StatusUnprocessableEntity, nil)
	ta.doRaw("POST", "/api/v1/pki/ca", nil, http.StatusBadRequest, nil)
}
