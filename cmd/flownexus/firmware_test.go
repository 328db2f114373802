package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFirmwareAdd(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "app-1.2.0.bin")
	body := append([]byte{0x96, 0xf3, 0xb8, 0x3d, 0, 0, 0, 0}, []byte(strings.Repeat("\x00\x01firmware", 500))...)
	if err := os.WriteFile(img, body, 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, "", "firmware", "add", img, "--version", "1.2.0", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "firmware #1 1.2.0 (app-1.2.0.bin) added") {
		t.Fatalf("firmware add: %+v", r)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "firmware"))
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".bin") {
		t.Fatalf("library files: %v", ents)
	}
	text := filepath.Join(t.TempDir(), "README.txt")
	os.WriteFile(text, []byte("not an image\n"), 0o600)
	refusals := []struct {
		args []string
		code int
		want string
	}{
		{[]string{img, "--version", "1.2.1"}, exitFail, "same image"},
		{[]string{text, "--version", "1"}, exitFail, "not a firmware image"},
		{[]string{filepath.Join(dir, "nope.bin"), "--version", "1"}, exitFail, "no such file"},
		{[]string{img}, exitUsage, "--version is required"},
		{[]string{}, exitUsage, "one file"},
	}
	for _, c := range refusals {
		r := runCmd(t, "", append([]string{"firmware", "add", "--data-dir", dir}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: %+v, want exit %d mentioning %q", c.args, r, c.code, c.want)
		}
	}
	if r := runCmd(t, "", "firmware", "remove"); r.code != exitUsage {
		t.Errorf("unknown subcommand: %+v", r)
	}
	ents, _ = os.ReadDir(filepath.Join(dir, "firmware"))
	if len(ents) != 1 {
		t.Fatalf("refusals left files: %v", ents)
	}
}
