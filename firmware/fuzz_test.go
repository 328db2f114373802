package firmware

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// FuzzDownloadPaths: whatever path a client asks for over CoAP or HTTP, the
// download decoders answer with a short refusal (nobody holds a grant
// here) and never panic or serve bytes.
func FuzzDownloadPaths(f *testing.F) {
	ctx := context.Background()
	dir := f.TempDir()
	db := openDB(f, dir)
	lib, err := OpenLibrary(ctx, db, filepath.Join(dir, "firmware"), 0, nil)
	if err != nil {
		f.Fatal(err)
	}
	fw, err := lib.Add(ctx, bytes.NewReader(image(3000, 1)), Meta{Version: "1"})
	if err != nil {
		f.Fatal(err)
	}
	svc := New(DefaultConfig(), db, lib, serverDevices{server.New(server.DefaultConfig())})
	for _, s := range []string{"/fw/1", "/fw/" + fw.SHA256, "/fw/" + fw.SHA256 + "/" + strings.Repeat("a", 32), "/fw/../../etc/passwd",
		"/fw/%2e%2e/x", "/fw/0", "/fw/-1", "/fw/99999999999999999999", "/fw//", "/fw/1/2/3", "/rd", "/fw/" + strings.ToUpper(fw.SHA256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		m := &coap.Message{Code: coap.GET}
		m.SetPath(p)
		r := svc.ServeCoAP(ctx, &coap.Request{Message: m, Peer: coap.Peer{}})
		if r.Code != coap.NotFound && r.Code != coap.Forbidden || r.Body != nil || len(r.Payload) > 64 {
			t.Fatalf("CoAP %q: %s body %v, %d bytes", p, r.Code, r.Body != nil, len(r.Payload))
		}
		u := &url.URL{Path: p}
		req := httptest.NewRequest(http.MethodGet, "http://appliance/", nil)
		req.URL = u
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound && w.Code != http.StatusForbidden || w.Body.Len() > 200 {
			t.Fatalf("HTTP %q: %d, %d bytes", p, w.Code, w.Body.Len())
		}
	})
}

// FuzzImageKey: the /fw/<key> decoder accepts only canonical decimal ids
// and 64-digit hex hashes.
func FuzzImageKey(f *testing.F) {
	for _, s := range []string{"1", "01", "0", "abc", strings.Repeat("f", 64), strings.Repeat("g", 64), "9223372036854775807", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, ok := imageKey([]string{"fw", s})
		if !ok {
			return
		}
		if id, isID := parseID(k); isID {
			if id <= 0 || strings.HasPrefix(k, "0") {
				t.Fatalf("%q accepted as id %d", s, id)
			}
			return
		}
		if !isHash(k) || k != strings.ToLower(s) {
			t.Fatalf("%q accepted as %q", s, k)
		}
	})
}
