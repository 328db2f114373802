package appliance

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
)

// syncBuffer is a log sink the dialer's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// enrollBundle enrolls ep in mode through the wizard's API and downloads
// its zip bundle.
func (ta *testAppliance) enrollBundle(ep, mode string) simulation.Bundle {
	ta.t.Helper()
	var out struct{ Bundle string }
	ta.do("POST", "/api/v1/enrollments", map[string]any{"endpoint": ep, "security": map[string]string{"mode": mode}}, http.StatusCreated, &out)
	req, _ := http.NewRequest("GET", ta.url+out.Bundle, nil)
	req.Header.Set("Authorization", "Bearer "+ta.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer res.Body.Close()
	zipBytes, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		ta.t.Fatalf("bundle: %d %s", res.StatusCode, zipBytes)
	}
	b, err := simulation.ReadBundle(bytes.NewReader(zipBytes))
	if err != nil {
		ta.t.Fatalf("ReadBundle: %v", err)
	}
	return b
}

// simDevice runs one simulated device with the bundle's credentials for
// the rest of the test and reports whether it registered.
func (ta *testAppliance) simDevice(b simulation.Bundle, log *slog.Logger) (registered bool) {
	ta.t.Helper()
	dial, err := simulation.DTLSDialer(b.ServerURI, b.Credentials, log)
	if err != nil {
		ta.t.Fatal(err)
	}
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint, dc.Server, dc.CoAP = b.Endpoint, b.ServerURI, fastCoAP()
	d, err := simulation.NewDevice(dc, simulation.WithDeviceDial(dial))
	if err != nil {
		ta.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	ta.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Client().Registered():
		return true
	case <-done:
		return false
	case <-time.After(20 * time.Second):
		return false
	}
}

// The simulator connects with the wizard's bundle in PSK and certificate
// mode, and a wrong key is logged with the reason and a hint instead of
// a silent registered=0.
func TestSimulatorWithWizardBundle(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	for _, mode := range []string{"psk", "x509"} {
		ep := "urn:imei:35900000000010" + map[string]string{"psk": "1", "x509": "2"}[mode]
		b := ta.enrollBundle(ep, mode)
		if b.Endpoint != ep || b.Mode != mode || !strings.HasPrefix(b.ServerURI, "coaps://") {
			t.Fatalf("%s bundle: %+v", mode, b)
		}
		if !ta.simDevice(b, nil) {
			t.Fatalf("%s: the simulated device did not register with the bundle", mode)
		}
		eventually(t, ep+" online", func() bool { d, ok := ta.device(ep); return ok && d.Online })
	}
	// A wrong PSK: the dialer says why.
	b := ta.enrollBundle("urn:imei:359000000000103", "psk")
	b.PSK = bytes.Repeat([]byte{0x42}, len(b.PSK))
	b.HandshakeTimeout = 3 * time.Second
	var logs syncBuffer
	dial, err := simulation.DTLSDialer(b.ServerURI, b.Credentials, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := dial(ctx, b.Endpoint, ""); err == nil {
		t.Fatal("handshake with a wrong PSK succeeded")
	}
	if l := logs.String(); !strings.Contains(l, "DTLS handshake failed") || !strings.Contains(l, "hint=") || !strings.Contains(l, b.Endpoint) {
		t.Fatalf("log does not say why:\n%s", l)
	}
}
