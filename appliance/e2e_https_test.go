package appliance

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
)

// TestEndToEndHTTPS: with https on, the web UI is served with a server
// certificate from the appliance's own CA, which a browser that trusts the
// exported CA certificate accepts, and plain HTTP redirects to it.
func TestEndToEndHTTPS(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.HTTPS = true
	cfg.Listen.HTTPS = "127.0.0.1:0"
	a := startBare(t, cfg)
	addrs := a.Addrs()
	if addrs.HTTPS == "" {
		t.Fatal("no HTTPS address")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.pki.CACertPEM()) {
		t.Fatal("CA certificate does not parse")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addrs.HTTPS + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS with the appliance CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz over HTTPS: %d", resp.StatusCode)
	}

	// A client that does not trust the appliance CA is refused.
	if _, err := http.Get("https://" + addrs.HTTPS + "/healthz"); err == nil {
		t.Error("a client without the appliance CA accepted the certificate")
	}

	// Plain HTTP redirects to HTTPS.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get("http://" + addrs.HTTP + "/devices")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("plain HTTP: %d Location %q, want a redirect to https", resp.StatusCode, resp.Header.Get("Location"))
	}
}
