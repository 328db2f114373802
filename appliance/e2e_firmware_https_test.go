package appliance

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// caClient is an HTTP client that trusts only the appliance's own CA, as a
// device provisioned with the exported CA certificate does.
func caClient(t *testing.T, a *Appliance) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.pki.CACertPEM()) {
		t.Fatal("CA certificate does not parse")
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// TestFirmwareDownloadHTTPS: with https on, a device that announces only
// HTTPS in 5/0/8 gets an https:// Package URI naming the TLS listener's
// port; over it the appliance honours Range (RFC 9110 §14) with a
// certificate from its own CA, refuses unknown tokens, and a device that
// pulls over HTTPS ends with the new version.
func TestFirmwareDownloadHTTPS(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.HTTPS = true
	cfg.Listen.HTTPS = "127.0.0.1:0"
	ta := startAppliance(t, cfg, WithFirmwareSweep(200*time.Millisecond))
	tlsAddr := ta.a.Addrs().HTTPS
	if tlsAddr == "" || !strings.HasPrefix(ta.url, "https://") {
		t.Fatalf("no HTTPS listener: %+v", ta.a.Addrs())
	}
	hc := caClient(t, ta.a)
	held := ta.startFWDevice("tls-held", false, func(dc *simulation.DeviceConfig) {
		dc.FirmwareUpdate.Hold = true
		dc.FirmwareUpdate.Protocols = []int64{3}
		dc.LocalAddr = "127.0.4.1:0"
	})
	puller := ta.startFWDevice("tls-pull", false, func(dc *simulation.DeviceConfig) {
		dc.FirmwareUpdate.Protocols = []int64{3}
		dc.FirmwareUpdate.HTTP = hc
		dc.LocalAddr = "127.0.4.2:0"
	})

	img := simulation.FirmwareImage("4.0.0", 6000, 5)
	id := ta.mustUpload("4.0.0", img)
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"tls-held", "tls-pull"}})
	waitURI(t, held)

	hu := held.dev.PackageURI()
	u, err := url.Parse(hu)
	if err != nil || u.Scheme != "https" || u.Host != tlsAddr || !strings.HasPrefix(u.Path, "/fw/") || len(hu) > 255 {
		t.Fatalf("package URI %q, want https://%s/fw/…", hu, tlsAddr)
	}

	t.Run("range over https", func(t *testing.T) {
		req, _ := http.NewRequest("GET", hu, nil)
		req.Header.Set("Range", "bytes=4096-")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.TLS == nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, img[4096:]) ||
			resp.Header.Get("Content-Range") != "bytes 4096-5999/6000" {
			t.Fatalf("range: %s %q %d bytes (TLS %v)", resp.Status, resp.Header.Get("Content-Range"), len(body), resp.TLS != nil)
		}
		req.Header.Set("Range", "bytes=0-99")
		resp, err = hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, img[:100]) || resp.Header.Get("Content-Range") != "bytes 0-99/6000" {
			t.Fatalf("first bytes: %s %q %d bytes", resp.Status, resp.Header.Get("Content-Range"), len(body))
		}
	})

	t.Run("refusals over https", func(t *testing.T) {
		base := hu[:strings.LastIndex(hu, "/")]
		for _, path := range []string{base + "/" + strings.Repeat("0", 32), base, "https://" + tlsAddr + "/fw/1/x"} {
			resp, err := hc.Get(path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || len(b) > 200 || bytes.Contains(b, img[:64]) {
				t.Errorf("%s: %s, %d bytes", path, resp.Status, len(b))
			}
		}
		// A client without the appliance CA does not get past TLS.
		if resp, err := http.Get(hu); err == nil {
			resp.Body.Close()
			t.Errorf("a client without the appliance CA got %s", resp.Status)
		}
	})

	t.Run("a device pulls over https", func(t *testing.T) {
		d := ta.waitDeployment(t, dep, "the puller's update", 90*time.Second, func(d webui.Deployment) bool {
			for _, dd := range d.Devices {
				if dd.Endpoint == "tls-pull" {
					return dd.State == "succeeded" || dd.State == "failed"
				}
			}
			return false
		})
		for _, dd := range d.Devices {
			if dd.Endpoint == "tls-pull" && (dd.State != "succeeded" || dd.Method != "https") {
				t.Fatalf("tls-pull: %+v", dd)
			}
		}
		if v := puller.dev.FirmwareVersion(); v != "4.0.0" {
			t.Fatalf("puller reports %q", v)
		}
	})
}
