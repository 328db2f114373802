package firmware

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// TestServeStatsCount: every Block2 response that carries image bytes
// counts one block and its bytes, whatever the block size; HTTP counts
// the bytes of the range sent; refusals (unknown image, a source without
// a deployment, a block past the end) count nothing. Real UDP on loopback.
func TestServeStatsCount(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	db := openDB(t, dir)
	lib, err := OpenLibrary(ctx, db, filepath.Join(dir, "firmware"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := image(3000, 4)
	fw, err := lib.Add(ctx, bytes.NewReader(img), Meta{Version: "4"})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.DefaultConfig())
	svc := New(DefaultConfig(), db, lib, serverDevices{srv})
	srv.Handle("/fw/", svc)
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, tr); close(done) }()
	defer func() { cancel(); <-done }()

	dial := func(local string) (*coap.Endpoint, coap.Peer) {
		t.Helper()
		c, peer, err := coap.DialUDP(local, tr.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		ep := coap.NewEndpoint(c, nil, coap.DefaultConfig())
		ectx, stop := context.WithCancel(ctx)
		edone := make(chan struct{})
		go func() { _ = ep.Run(ectx); close(edone) }()
		t.Cleanup(func() { stop(); c.Close(); <-edone })
		return ep, peer
	}
	dev, peer := dial("127.0.0.1:0")
	reg := &coap.Message{Code: coap.POST, Payload: []byte("</5/0>")}
	reg.SetPath("/rd")
	reg.AddQuery("ep=st-coap")
	reg.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
	if r, err := dev.Do(ctx, peer, reg); err != nil || r.Code != coap.Created {
		t.Fatalf("register: %v %v", r, err)
	}
	for _, ep := range []string{"st-coap", "st-http"} {
		if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: ep}); err != nil {
			t.Fatal(err)
		}
	}
	dep, err := db.CreateDeployment(ctx, fw.ID, []string{"st-coap", "st-http"})
	if err != nil {
		t.Fatal(err)
	}
	for ep, m := range map[string]string{"st-coap": MethodCoAP, "st-http": MethodHTTP} {
		if err := db.UpdateDeploymentDevice(ctx, dep.ID, ep, store.DeviceChange{State: store.DeviceDownloading, Method: m, Restart: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := svc.Stats(); got != (ServeStats{}) {
		t.Fatalf("before any download: %+v", got)
	}

	get := func(ep *coap.Endpoint, p coap.Peer, path string, num uint32, szx uint8) *coap.Message {
		t.Helper()
		m := &coap.Message{Code: coap.GET}
		m.SetPath(path)
		m.SetBlock(coap.Block2, coap.Block{Num: num, SZX: szx})
		r, err := ep.Do(ctx, p, m)
		if err != nil {
			t.Fatalf("GET %s block %d: %v", path, num, err)
		}
		return r
	}
	// From block 0 the client fetches blocks 1 and 2 itself (three
	// responses); from block N > 0 it asks for that block alone.
	path := "/fw/" + fw.SHA256
	for _, b := range []struct {
		num       uint32
		szx       uint8
		from, end int
	}{{0, 6, 0, 3000}, {2, 6, 2048, 3000}, {5, 4, 1280, 1536}} {
		if r := get(dev, peer, path, b.num, b.szx); r.Code != coap.Content || !bytes.Equal(r.Payload, img[b.from:b.end]) {
			t.Fatalf("block %d/%d: %s, %d bytes", b.num, b.szx, r.Code, len(r.Payload))
		}
	}
	// Refused or empty: past the end, an unknown image, a stranger.
	if r := get(dev, peer, path, 3, 6); r.Code == coap.Content && len(r.Payload) > 0 {
		t.Fatalf("block past the end: %s with %d bytes", r.Code, len(r.Payload))
	}
	if r := get(dev, peer, "/fw/"+fw.SHA256[:63]+"0", 0, 6); r.Code != coap.NotFound {
		t.Fatalf("unknown image: %s", r.Code)
	}
	stranger, sp := dial("127.0.0.2:0")
	if r := get(stranger, sp, path, 0, 6); r.Code != coap.Forbidden {
		t.Fatalf("stranger: %s", r.Code)
	}
	want := ServeStats{Blocks: 3 + 1 + 1, CoAPBytes: 3000 + 952 + 256}
	if got := svc.Stats(); got != want {
		t.Fatalf("after the CoAP downloads: %+v, want %+v", got, want)
	}

	open, err := db.OpenDeploymentDevices(ctx, "st-http")
	if err != nil || len(open) != 1 || open[0].Token == "" {
		t.Fatalf("st-http's download: %v %v", open, err)
	}
	for _, rg := range []string{"bytes=100-599", ""} {
		req := httptest.NewRequest(http.MethodGet, "http://appliance/fw/"+fw.SHA256+"/"+open[0].Token, nil)
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusPartialContent {
			t.Fatalf("HTTP %q: %d %s", rg, w.Code, w.Body)
		}
	}
	want.HTTPBytes = 500 + 3000
	if got := svc.Stats(); got != want {
		t.Fatalf("after the HTTP downloads: %+v, want %+v", got, want)
	}
}
