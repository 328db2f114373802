package appliance

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/simulation"
)

// TestFirmwareUploadRefusals: each bad upload gets a clear error and
// leaves neither a file nor a row; a good one (fields before or after the
// file) is listed.
func TestFirmwareUploadRefusals(t *testing.T) {
	cfg := testConfig(t)
	cfg.Firmware.MaxSizeMiB = 1
	ta := startAppliance(t, cfg)
	noLeftovers := func(what string, wantRows int) {
		t.Helper()
		ents, _ := os.ReadDir(cfg.FirmwareDir())
		if len(ents) != wantRows {
			t.Errorf("%s: %d files in the library dir", what, len(ents))
		}
		var list struct{ Firmware []map[string]any }
		ta.do("GET", "/api/v1/firmware", nil, http.StatusOK, &list)
		if len(list.Firmware) != wantRows {
			t.Errorf("%s: %d rows", what, len(list.Firmware))
		}
	}
	cases := []struct {
		name   string
		fields map[string]string
		image  []byte
		want   int
		msg    string
	}{
		{"over the limit", map[string]string{"version": "1"}, simulation.FirmwareImage("1", 1<<20+1, 1), http.StatusRequestEntityTooLarge, "too large"},
		{"empty file", map[string]string{"version": "1"}, []byte{}, http.StatusUnprocessableEntity, "empty"},
		{"html page", map[string]string{"version": "1"}, []byte("<!doctype html><title>Not Found</title>"), http.StatusUnprocessableEntity, "not a firmware image"},
		{"text file", map[string]string{"version": "1"}, []byte("release notes\n"), http.StatusUnprocessableEntity, "not a firmware image"},
		{"no version", map[string]string{"name": "x"}, simulation.FirmwareImage("1", 100, 1), http.StatusUnprocessableEntity, "version"},
		{"no file", map[string]string{"version": "1"}, nil, http.StatusBadRequest, "file"},
	}
	for _, c := range cases {
		code, out := ta.upload(c.fields, true, c.image)
		if code != c.want || !strings.Contains(fmt.Sprint(out["error"]), c.msg) {
			t.Errorf("%s: %d %v", c.name, code, out)
		}
		noLeftovers(c.name, 0)
	}
	// Truncated: the multipart body ends inside the file.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("version", "1")
	fw, _ := mw.CreateFormFile("file", "app.bin")
	fw.Write(simulation.FirmwareImage("1", 50000, 2))
	cut := body.Bytes()[:body.Len()-1000]
	req, _ := http.NewRequest("POST", ta.url+"/api/v1/firmware", bytes.NewReader(cut))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("truncated: %s", resp.Status)
	}
	noLeftovers("truncated", 0)
	// Not multipart at all.
	ta.doRaw("POST", "/api/v1/firmware", []byte("x"), http.StatusBadRequest, nil)
	noLeftovers("not multipart", 0)

	// Fields after the file, as some clients send them.
	img := simulation.FirmwareImage("6.1.0", 4000, 3)
	code, out := ta.upload(map[string]string{"version": "6.1.0", "name": "sensor app", "notes": "fixes the battery reading", "target": "FN-SIM-9160"}, false, img)
	if code != http.StatusCreated || out["version"] != "6.1.0" || out["name"] != "sensor app" || out["target"] != "FN-SIM-9160" || out["size"] != float64(len(img)) {
		t.Fatalf("upload: %d %v", code, out)
	}
	noLeftovers("good upload", 1)
	if code, out := ta.upload(map[string]string{"version": "6.1.1"}, true, img); code != http.StatusConflict {
		t.Errorf("same image again: %d %v", code, out)
	}
	noLeftovers("duplicate", 1)
	id := out["id"].(string)
	ta.do("DELETE", "/api/v1/firmware/"+id, nil, http.StatusNoContent, nil)
	noLeftovers("deleted", 0)
	ta.do("DELETE", "/api/v1/firmware/"+id, nil, http.StatusNotFound, nil)
}
