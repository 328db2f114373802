package webui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v5"
)

// countingFirmware takes the file part of an upload into a byte count:
// the fuzz target below is about the multipart reading around it (the
// library's own staging is fuzzed and tested in firmware and appliance).
type countingFirmware struct {
	Firmware
	open atomic.Int64 // staged and neither committed nor discarded
}

type countedStage struct{ f *countingFirmware }

func (f *countingFirmware) Stage(_ context.Context, r io.Reader) (StagedFirmware, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	f.open.Add(1)
	return countedStage{f}, nil
}

func (s countedStage) Commit(context.Context, FirmwareMeta) (FirmwareImage, error) {
	s.f.open.Add(-1)
	return FirmwareImage{}, nil
}
func (s countedStage) Discard() { s.f.open.Add(-1) }

// FuzzFirmwareUpload feeds arbitrary multipart bodies to the firmware
// upload reader: it must take a well-formed upload or refuse with 400, 413
// or 422, never panic, and never leave a staged file behind on a refusal.
func FuzzFirmwareUpload(f *testing.F) {
	const b = "XbX"
	part := func(name, file, body string) string {
		h := "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name + "\""
		if file != "" {
			h += "; filename=\"" + file + "\""
		}
		return h + "\r\n\r\n" + body + "\r\n"
	}
	f.Add(b, []byte(part("version", "", "2.0.0")+part("file", "fw.bin", "\x00\x01\x02")+"--"+b+"--\r\n"))
	f.Add(b, []byte(part("file", "fw.bin", "abc")+part("version", "", "1")+part("notes", "", "n")+"--"+b+"--\r\n"))
	f.Add(b, []byte(part("file", "a", "x")+part("file", "b", "y")+"--"+b+"--\r\n"))
	f.Add(b, []byte(part("file", "fw.bin", "abc")))
	f.Add("", []byte("--\r\n"))
	fw := &countingFirmware{}
	s := &Server{deps: Deps{Firmware: fw}}
	e := echo.New()
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/firmware", bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=\""+boundary+"\"")
		req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, 1<<20)
		c := e.NewContext(req, httptest.NewRecorder())
		staged, meta, err := s.readFirmwareUpload(c)
		if err != nil {
			if staged != nil {
				t.Fatalf("refusal %v with a staged upload", err)
			}
			var mbe *http.MaxBytesError
			if code, _ := statusOf(err); code != 400 && code != 413 && code != 422 && !errors.As(err, &mbe) {
				t.Fatalf("refused with %d: %v", code, err)
			}
			if n := fw.open.Load(); n != 0 {
				t.Fatalf("%d staged uploads left after a refusal: %v", n, err)
			}
			return
		}
		if staged == nil || meta.Version == "" {
			t.Fatalf("accepted without a file or a version: %+v", meta)
		}
		staged.Discard()
	})
}
