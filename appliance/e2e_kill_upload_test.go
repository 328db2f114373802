package appliance

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
)

// TestKillDuringFirmwareUpload (issue 13 §3): the appliance is killed
// (SIGKILL) while an image is being uploaded, after part of it reached the
// library's disk. After the restart there is no image row and no partial
// file, the database passes integrity_check, and the same image uploads
// whole.
func TestKillDuringFirmwareUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: starts the appliance twice")
	}
	r, ta := startChildAppliance(t)
	fwDir := filepath.Join(r.dir, "firmware")

	// The upload streams from a pipe: its first 2 MiB go out, then the
	// sender waits, holding the request open, until the appliance is
	// killed.
	img := simulation.FirmwareImage("3.0.0", 8<<20, 5)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, _ := http.NewRequest("POST", ta.url+"/api/v1/firmware", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+ta.token)
	sent := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the upload was answered %s", resp.Status)
		}
		sent <- err
	}()
	if err := mw.WriteField("version", "3.0.0"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "sensor-3.0.0.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(img[:2<<20]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "part of the upload on the library's disk", func() bool {
		return stagedBytes(t, fwDir) >= 1<<20
	})
	r.kill()
	pw.CloseWithError(io.ErrClosedPipe)
	if err := <-sent; err == nil {
		t.Fatal("the killed upload was answered")
	}

	r.start()
	var list struct{ Images []map[string]any }
	ta.do("GET", "/api/v1/firmware", nil, http.StatusOK, &list)
	if len(list.Images) != 0 {
		t.Fatalf("images after the killed upload: %+v", list.Images)
	}
	if n := stagedBytes(t, fwDir); n != 0 {
		t.Fatalf("%d bytes of the killed upload left in %s", n, fwDir)
	}
	if code, body := ta.upload(map[string]string{"version": "3.0.0"}, true, img); code != http.StatusCreated {
		t.Fatalf("upload after the restart: %d %v", code, body)
	}
	r.stop()

	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(r.dir, "flownexus.db")
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
	imgs, err := db.Firmwares(context.Background())
	if err != nil || len(imgs) != 1 || imgs[0].Size != int64(len(img)) {
		t.Fatalf("images in the store: %+v %v", imgs, err)
	}
}

// stagedBytes is the size of every file in dir that is not a finished
// image (uploads in progress or left behind).
func stagedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return 0
		}
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if e.IsDir() || !strings.HasPrefix(e.Name(), "upload-") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
