package appliance

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/store"
)

// Refused registrations are kept per name with a count and the last
// reason: malformed names (refused by the same rule as provisioning),
// unknown devices, and devices in the wrong security mode.
func TestRefusedRegistrationsRecorded(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	ta.do("PUT", "/api/v1/settings", map[string]any{"allowUnknownDevices": false}, http.StatusOK, nil)
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "psk-only-1", "security": map[string]string{"mode": "psk"}}, http.StatusCreated, nil)
	for _, ep := range []string{"bad name", "zähler-1", "stranger-1", "stranger-1", "psk-only-1"} {
		if err := ta.registerFails(ep); err == nil {
			t.Fatalf("%s registered", ep)
		}
	}
	want := map[string]struct {
		count  int64
		reason string
	}{
		"bad name":   {1, "malformed name"},
		"zähler-1":   {1, "malformed name"},
		"stranger-1": {2, "unknown"},
		"psk-only-1": {1, "wrong mode"},
	}
	var got []store.Refusal
	eventually(t, "refusals recorded", func() bool {
		got, _ = ta.a.db.Refusals(context.Background(), 10)
		n := int64(0)
		for _, r := range got {
			n += r.Count
		}
		return n == 5
	})
	for _, r := range got {
		w, ok := want[r.Endpoint]
		if !ok || r.Count != w.count || !strings.HasPrefix(r.Reason, w.reason) || r.Address == "" {
			t.Errorf("refusal %+v, want %+v", r, w)
		}
	}
	// The provisioning rule and its words are the registration's.
	var e struct{ Error string }
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "bad name", "security": map[string]string{"mode": "psk"}}, http.StatusUnprocessableEntity, &e)
	if r := reasonOf(got, "bad name"); e.Error == "" || !strings.HasSuffix(r, e.Error) {
		t.Errorf("provisioning says %q, registration said %q", e.Error, reasonOf(got, "bad name"))
	}
}

func reasonOf(rs []store.Refusal, ep string) string {
	for _, r := range rs {
		if r.Endpoint == ep {
			return r.Reason
		}
	}
	return ""
}

// A device whose PSK differs from the provisioned one fails inside the
// DTLS handshake; the refusal is kept under its identity as a wrong
// credential, like the refusals that happen at registration.
func TestWrongKeyRefusalRecorded(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	var cred struct {
		Security struct {
			PSKIdentity string `json:"pskIdentity"`
		} `json:"security"`
	}
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "wrong-key-1", "security": map[string]string{"mode": "psk"}}, http.StatusCreated, &cred)
	if cred.Security.PSKIdentity == "" {
		t.Fatal("provisioning returned no PSK identity")
	}
	wrong := bytes.Repeat([]byte{0x5a}, 16)
	if c, err := dtls.Dial(context.Background(), ta.a.Addrs().CoAPS, dtls.ClientConfig{PSKIdentity: cred.Security.PSKIdentity, PSK: wrong, HandshakeTimeout: 10 * time.Second}); err == nil {
		c.Close()
		t.Fatal("a handshake with the wrong key succeeded")
	}
	var got []store.Refusal
	eventually(t, "the wrong key recorded", func() bool {
		got, _ = ta.a.db.Refusals(context.Background(), 10)
		return reasonOf(got, cred.Security.PSKIdentity) != ""
	})
	if r := reasonOf(got, cred.Security.PSKIdentity); !strings.HasPrefix(r, "wrong credential") || !strings.Contains(r, "PSK does not match") {
		t.Fatalf("refusal reason %q", r)
	}
}
