package simulation

import (
	"archive/zip"
	"bytes"
	"testing"
)

func zipOf(files map[string]string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, c := range files {
		w, _ := zw.Create(n)
		w.Write([]byte(c))
	}
	zw.Close()
	return buf.Bytes()
}

// FuzzReadBundle: whatever file is given as a bundle, ReadBundle answers
// with a bundle or an error, never a panic.
func FuzzReadBundle(f *testing.F) {
	f.Add(zipOf(map[string]string{"d/device.json": `{"endpoint":"urn:imei:1","mode":"psk","serverUri":"coaps://127.0.0.1:5684","pskKey":"00ff"}`}))
	f.Add(zipOf(map[string]string{"d/device.json": `{"endpoint":"e","mode":"x509","serverUri":"coaps://h"}`, "d/client.pem": "x", "d/client-key.pem": "y", "d/ca.pem": "z"}))
	f.Add(zipOf(map[string]string{"README.txt": "hello"}))
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		bd, err := ReadBundle(bytes.NewReader(b))
		if err == nil && (bd.Endpoint == "" || bd.ServerURI == "") {
			t.Fatalf("accepted a bundle without endpoint or server: %+v", bd)
		}
	})
}
