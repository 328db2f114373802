package appliance

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// coapGet fetches one block of path from local (plain CoAP) and returns the
// answer.
func coapGet(t *testing.T, local, server, path string, num uint32, szx uint8) *coap.Message {
	t.Helper()
	tr, peer, err := coap.DialUDP(local, server)
	if err != nil {
		t.Fatal(err)
	}
	return coapGetOn(t, tr, peer, path, num, szx)
}

func coapGetOn(t *testing.T, tr coap.Transport, peer coap.Peer, path string, num uint32, szx uint8) *coap.Message {
	t.Helper()
	ep := coap.NewEndpoint(tr, nil, fastCoAP())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan struct{})
	go func() { _ = ep.Run(ctx); close(done) }()
	defer func() { cancel(); tr.Close(); <-done }()
	m := &coap.Message{Code: coap.GET}
	m.SetPath(path)
	m.SetBlock(coap.Block2, coap.Block{Num: num, SZX: szx})
	r, err := ep.Do(ctx, peer, m)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// TestFirmwareDownloadAccess: only a device with an active deployment of
// an image downloads it, over its own security mode and (plain CoAP) from
// its registration's address; everyone else gets a short 4.03/4.04 or
// 403/404; blocks start anywhere; HTTP honours Range.
func TestFirmwareDownloadAccess(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	hold := func(dc *simulation.DeviceConfig) {
		dc.FirmwareUpdate.Hold = true
		dc.FirmwareUpdate.Protocols = []int64{0}
	}
	plain := ta.startFWDevice("acc-plain", false, func(dc *simulation.DeviceConfig) { hold(dc); dc.LocalAddr = "127.0.3.1:0" })
	other := ta.startFWDevice("acc-other", false, func(dc *simulation.DeviceConfig) { hold(dc); dc.LocalAddr = "127.0.3.2:0" })
	secure := ta.startFWDevice("acc-psk", true, func(dc *simulation.DeviceConfig) { hold(dc); dc.FirmwareUpdate.Protocols = []int64{1} })
	web := ta.startFWDevice("acc-http", false, func(dc *simulation.DeviceConfig) {
		hold(dc)
		dc.FirmwareUpdate.Protocols = []int64{2}
		dc.LocalAddr = "127.0.3.3:0"
	})
	_ = other

	img := simulation.FirmwareImage("3.0.0", 5000, 3)
	otherImg := simulation.FirmwareImage("3.0.1", 700, 4)
	id := ta.mustUpload("3.0.0", img)
	ta.mustUpload("3.0.1", otherImg)
	// A deployment to an unknown device is refused whole.
	var e struct{ Error string }
	ta.do("POST", "/api/v1/firmware/"+id+"/deployments", webui.DeployRequest{Endpoints: []string{"acc-plain", "ghost"}}, http.StatusNotFound, &e)
	if !strings.Contains(e.Error, "ghost") {
		t.Errorf("unknown endpoint: %q", e.Error)
	}
	ta.do("POST", "/api/v1/firmware/999/deployments", webui.DeployRequest{Endpoints: []string{"acc-plain"}}, http.StatusNotFound, nil)
	if l, _ := ta.a.db.Deployments(context.Background()); len(l) != 0 {
		t.Fatalf("refused deployments left rows: %+v", l)
	}
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"acc-plain", "acc-psk", "acc-http"}})
	ta.waitDeployment(t, dep, "URIs written", 20*time.Second, func(d webui.Deployment) bool { return d.Counts["downloading"] == 3 })
	waitURI(t, plain, secure, web)

	uri, err := url.Parse(plain.dev.PackageURI())
	if err != nil || uri.Scheme != "coap" || uri.Host != ta.a.Addrs().CoAP || len(plain.dev.PackageURI()) > 255 {
		t.Fatalf("package URI %q", plain.dev.PackageURI())
	}
	coapAddr := ta.a.Addrs().CoAP

	t.Run("blocks from the middle at every size", func(t *testing.T) {
		var etag []byte
		for _, szx := range []uint8{0, 4, 6} {
			size := 16 << szx
			num := uint32(3)
			r := coapGet(t, "127.0.3.1:0", coapAddr, uri.Path, num, szx)
			b, _ := r.Block(coap.Block2)
			s2, _ := r.Uint(coap.Size2)
			tag, _ := r.ETag()
			want := img[int(num)*size : min(int(num+1)*size, len(img))]
			if r.Code != coap.Content || !bytes.Equal(r.Payload, want) || b.Num != num || b.SZX != szx || !b.More || s2 != uint32(len(img)) {
				t.Fatalf("szx %d: %s %+v size2 %d, %d bytes", szx, r.Code, b, s2, len(r.Payload))
			}
			if etag != nil && !bytes.Equal(tag, etag) || len(tag) == 0 {
				t.Fatalf("ETag %x then %x", etag, tag)
			}
			etag = tag
		}
		// By id as well as by hash; block 0 makes the client fetch all.
		if r := coapGet(t, "127.0.3.1:0", coapAddr, "/fw/"+id, 0, 6); r.Code != coap.Content || !bytes.Equal(r.Payload, img) {
			t.Fatalf("by id: %s", r.Code)
		}
		// Past the end.
		if r := coapGet(t, "127.0.3.1:0", coapAddr, uri.Path, 500, 6); r.Code != coap.BadOption {
			t.Fatalf("past the end: %s", r.Code)
		}
	})

	t.Run("refusals over CoAP", func(t *testing.T) {
		cases := []struct {
			local, path string
			want        coap.Code
		}{
			{"127.0.3.2:0", uri.Path, coap.Forbidden},                         // registered, not deployed
			{"127.0.3.99:0", uri.Path, coap.Forbidden},                        // spoofed/unknown source
			{"127.0.3.1:0", "/fw/" + strings.Repeat("ab", 32), coap.NotFound}, // unknown hash
			{"127.0.3.1:0", "/fw/999", coap.NotFound},
			{"127.0.3.1:0", "/fw/0", coap.NotFound},
			{"127.0.3.1:0", "/fw/-1", coap.NotFound},
			{"127.0.3.1:0", "/fw/01", coap.NotFound},
			{"127.0.3.1:0", "/fw/1x", coap.NotFound},
			{"127.0.3.1:0", "/fw/../flownexus.db", coap.NotFound},
			{"127.0.3.1:0", "/fw/" + uri.Path[4:67], coap.NotFound},
			{"127.0.3.1:0", uri.Path + "/x", coap.NotFound},
			{"127.0.3.1:0", "/fw/2", coap.NotFound},                                  // another image, deployed to nobody
			{"127.0.3.1:0", uri.Path[:69] + strings.Repeat("0", 32), coap.Forbidden}, // a token of nobody
			{"127.0.3.1:0", "/fw/2/" + uri.Path[69:], coap.NotFound},                 // the token with an image deployed to nobody
			{"127.0.3.1:0", uri.Path + "0", coap.NotFound},
		}
		for _, c := range cases {
			r := coapGet(t, c.local, coapAddr, c.path, 0, 6)
			if r.Code != c.want || len(r.Payload) > 64 {
				t.Errorf("%s from %s: %s, %d bytes", c.path, c.local, r.Code, len(r.Payload))
			}
		}
	})

	t.Run("spoofed source gets no large answer", func(t *testing.T) {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.3.77")}, net.UDPAddrFromAddrPort(mustAddrPort(t, coapAddr)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := &coap.Message{Type: coap.Confirmable, Code: coap.GET, MessageID: 7, Token: []byte{1, 2}}
		m.SetPath(uri.Path)
		req, _ := m.Marshal()
		c.Write(req)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := coap.Unmarshal(buf[:n])
		if err != nil || resp.Code != coap.Forbidden || n > 2*len(req)+64 {
			t.Fatalf("answer %v, %d bytes to a %d-byte request (%v)", resp, n, len(req), err)
		}
	})

	t.Run("coaps only with the device's own identity", func(t *testing.T) {
		suri, _ := url.Parse(secure.dev.PackageURI())
		if suri.Scheme != "coaps" {
			t.Fatalf("psk device got %q", secure.dev.PackageURI())
		}
		cred, _ := ta.a.db.Credential(context.Background(), "acc-psk")
		c, err := dtls.Dial(context.Background(), suri.Host, dtls.ClientConfig{PSKIdentity: cred.PSKIdentity, PSK: cred.PSKKey, HandshakeTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r := coapGetOn(t, c, c.Peer(), suri.Path, 2, 5); r.Code != coap.Content || !bytes.Equal(r.Payload, img[1024:1536]) {
			t.Fatalf("own session: %s", r.Code)
		}
		// The PSK device's image is not for a plain request from its address.
		if r := coapGet(t, "127.0.0.1:0", coapAddr, suri.Path, 0, 6); r.Code != coap.Forbidden {
			t.Fatalf("plain request for a DTLS device's image: %s", r.Code)
		}
		// Another identity's session.
		key, _ := GeneratePSK(0)
		ta.a.db.SetCredential(context.Background(), store.Credential{Endpoint: "intruder", Mode: store.ModePSK, PSKIdentity: "intruder", PSKKey: key})
		c2, err := dtls.Dial(context.Background(), suri.Host, dtls.ClientConfig{PSKIdentity: "intruder", PSK: key, HandshakeTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r := coapGetOn(t, c2, c2.Peer(), suri.Path, 0, 6); r.Code != coap.Forbidden {
			t.Fatalf("other identity: %s", r.Code)
		}
	})

	t.Run("http with Range, by token only", func(t *testing.T) {
		hu := web.dev.PackageURI()
		if !strings.HasPrefix(hu, ta.url+"/fw/") {
			t.Fatalf("http device got %q", hu)
		}
		req, _ := http.NewRequest("GET", hu, nil)
		req.Header.Set("Range", "bytes=1000-1999")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, img[1000:2000]) || resp.Header.Get("Content-Range") != "bytes 1000-1999/5000" || resp.Header.Get("ETag") == "" {
			t.Fatalf("range: %s %q %d bytes", resp.Status, resp.Header.Get("Content-Range"), len(body))
		}
		full, _ := http.Get(hu)
		fb, _ := io.ReadAll(full.Body)
		full.Body.Close()
		if full.StatusCode != http.StatusOK || !bytes.Equal(fb, img) {
			t.Fatalf("full: %s %d bytes", full.Status, len(fb))
		}
		base := hu[:strings.LastIndex(hu, "/")]
		sha := base[strings.LastIndex(base, "/")+1:]
		token := hu[strings.LastIndex(hu, "/")+1:]
		var otherSHA string
		fs, _ := ta.a.db.Firmwares(context.Background())
		for _, f := range fs {
			if f.SHA256 != sha {
				otherSHA = f.SHA256
			}
		}
		cases := []struct {
			path string
			want int
		}{
			{"/fw/" + sha + "/" + strings.Repeat("0", 32), http.StatusNotFound}, // unknown token
			{"/fw/" + otherSHA + "/" + token, http.StatusForbidden},             // token of another image
			{"/fw/" + sha, http.StatusNotFound},                                 // no token
			{"/fw/" + sha + "/" + token + "/x", http.StatusNotFound},
			{"/fw/../../etc/passwd", http.StatusNotFound},
			{"/fw/%2e%2e/flownexus.db/" + token, http.StatusNotFound},
			{"/fw/1/" + token, http.StatusNotFound},
		}
		for _, c := range cases {
			r, err := http.Get(ta.url + c.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != c.want || len(b) > 200 {
				t.Errorf("%s: %s, %d bytes", c.path, r.Status, len(b))
			}
		}
		if r, _ := http.Post(hu, "text/plain", strings.NewReader("x")); r.StatusCode == http.StatusOK || r.StatusCode == http.StatusPartialContent {
			t.Errorf("POST: %s", r.Status)
		}
		// Cancelled: the token no longer opens the image.
		ta.do("POST", "/api/v1/deployments/"+dep+"/cancel", nil, http.StatusOK, nil)
		r, _ := http.Get(hu)
		r.Body.Close()
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("after cancel: %s", r.Status)
		}
		if r := coapGet(t, "127.0.3.1:0", coapAddr, uri.Path, 0, 6); r.Code != coap.Forbidden && r.Code != coap.NotFound {
			t.Errorf("coap after cancel: %s", r.Code)
		}
		eventually(t, "the cancel reaching the devices", func() bool { return plain.dev.PackageURI() == "" })
		if st, res := plain.dev.FirmwareState(); st != 0 || res != 0 {
			t.Errorf("device after cancel: state %d result %d", st, res)
		}
	})
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
