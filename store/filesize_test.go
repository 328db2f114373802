package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestFileSize checks the size-only stat the writer runs after every
// group commit against a full one, and that a missing WAL reads as 0.
func TestFileSize(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, n := range []int{0, 1, 4096, 1<<20 + 24} {
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := fileSize(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fileSizeStat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != int64(n) || want != int64(n) {
			t.Fatalf("size of a %d-byte file: fileSize %d, stat %d", n, got, want)
		}
	}
	if _, err := fileSize(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	d := &DB{cfg: Config{Path: filepath.Join(dir, "none.db")}}
	if n := d.walBytes(); n != 0 {
		t.Fatalf("walBytes without a WAL = %d", n)
	}
}
