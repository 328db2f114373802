package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/store"
)

func TestLibraryAddListDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	lib, err := OpenLibrary(ctx, db, filepath.Join(dir, "firmware"), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := image(300000, 1)
	f, err := lib.Add(ctx, bytes.NewReader(img), Meta{Version: " 2.1.0 ", Name: "app", Notes: "fixes", Target: "FN-SIM-9160"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(img)) || f.Version != "2.1.0" || f.Notes != "fixes" || f.Target != "FN-SIM-9160" {
		t.Fatalf("added %+v", f)
	}
	got, err := os.ReadFile(filepath.Join(lib.Dir(), f.SHA256+".bin"))
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("stored file: %d bytes, %v", len(got), err)
	}
	if _, err := lib.Add(ctx, bytes.NewReader(img), Meta{Version: "again"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same image twice: %v", err)
	}
	for _, key := range []string{"1", f.SHA256, strings.ToUpper(f.SHA256)} {
		if g, err := lib.Image(ctx, key); err != nil || g.ID != f.ID {
			t.Fatalf("Image(%q): %+v %v", key, g, err)
		}
	}
	for _, key := range []string{"", "0", "01", "-1", "../1", "1.bin", f.SHA256[:63], "99"} {
		if _, err := lib.Image(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Image(%q): %v", key, err)
		}
	}
	if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: "dev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateDeployment(ctx, f.ID, []string{"dev"}); err != nil {
		t.Fatal(err)
	}
	if err := lib.Delete(ctx, f.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete while deployed: %v", err)
	}
	if fs := files(t, lib.Dir()); len(fs) != 1 {
		t.Fatalf("files after refused delete: %v", fs)
	}
	g, err := lib.Add(ctx, bytes.NewReader(image(1000, 2)), Meta{Version: "3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Delete(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if fs := files(t, lib.Dir()); len(fs) != 1 || fs[0] != f.SHA256+".bin" {
		t.Fatalf("files after delete: %v", fs)
	}
	if err := lib.Delete(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

// TestLibraryRefusals: each bad upload gets its own error and leaves
// neither a file nor a row.
func TestLibraryRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	lib, err := OpenLibrary(ctx, db, filepath.Join(dir, "firmware"), 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		r    func() *bytes.Reader
		meta Meta
		want error
	}{
		{"over the limit", func() *bytes.Reader { return bytes.NewReader(image(4097, 1)) }, Meta{Version: "1"}, ErrTooLarge},
		{"empty", func() *bytes.Reader { return bytes.NewReader(nil) }, Meta{Version: "1"}, ErrNotImage},
		{"html", func() *bytes.Reader { return bytes.NewReader([]byte("<!DOCTYPE html><html><body>404</body></html>")) }, Meta{Version: "1"}, ErrNotImage},
		{"text", func() *bytes.Reader { return bytes.NewReader([]byte("just a README\nwith lines\n")) }, Meta{Version: "1"}, ErrNotImage},
		{"no version", func() *bytes.Reader { return bytes.NewReader(image(10, 1)) }, Meta{Version: "  "}, store.ErrInvalid},
		{"long version", func() *bytes.Reader { return bytes.NewReader(image(10, 1)) }, Meta{Version: strings.Repeat("9", 65)}, store.ErrInvalid},
	}
	for _, c := range cases {
		if _, err := lib.Add(ctx, c.r(), c.meta); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// Truncated: the client's connection breaks mid-upload.
	if _, err := lib.Add(ctx, &failingReader{bytes.NewReader(image(3000, 3))}, Meta{Version: "1"}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("truncated upload: %v", err)
	}
	if fs := files(t, lib.Dir()); len(fs) != 0 {
		t.Fatalf("refused uploads left files: %v", fs)
	}
	if l, _ := lib.List(ctx); len(l) != 0 {
		t.Fatalf("refused uploads left rows: %+v", l)
	}
}

// TestLibrarySweep: a crash mid-upload (temp file) or between the rename
// and the row (orphan image) leaves nothing after the next start.
func TestLibrarySweep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	fdir := filepath.Join(dir, "firmware")
	lib, err := OpenLibrary(ctx, db, fdir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lib.MaxSize() != DefaultMaxSize {
		t.Fatalf("default limit %d", lib.MaxSize())
	}
	f, err := lib.Add(ctx, bytes.NewReader(image(5000, 4)), Meta{Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	lib.Close()
	os.WriteFile(filepath.Join(fdir, "upload-123.tmp"), image(100, 5), 0o600)
	os.WriteFile(filepath.Join(fdir, strings.Repeat("ab", 32)+".bin"), image(100, 6), 0o600)
	os.MkdirAll(filepath.Join(fdir, "sub"), 0o700)
	if _, err := OpenLibrary(ctx, db, fdir, 0, nil); err != nil {
		t.Fatal(err)
	}
	if fs := files(t, fdir); len(fs) != 2 || fs[0] != f.SHA256+".bin" || fs[1] != "sub" {
		t.Fatalf("after sweep: %v", fs)
	}
}
