package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/appliance"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errb,
		getenv: func(string) string { return "" },
	})
	return result{code, out.String(), errb.String()}
}

func TestVersion(t *testing.T) {
	r := runCmd(t, "", "version")
	if r.code != 0 || r.stdout != "flownexus "+appliance.Version+"\n" {
		t.Fatalf("version: %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"serve", "extra"},
		{"serve", "--no-such-flag"},
		{"user"},
		{"user", "add"},
		{"user", "add", "alice"},
		{"backup"},
		{"restore"},
	} {
		r := runCmd(t, "", args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, r.code, exitUsage, r.stderr)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	r := runCmd(t, "", "serve", "--check-config", "--config", "../../packaging/flownexus.toml")
	if r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
		t.Fatalf("packaged conffile: %+v", r)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[listen]\nhttp = \":8080\"\nhtpps = true\n"), 0o644)
	r = runCmd(t, "", "serve", "--check-config", "--config", bad)
	if r.code != exitFail || !strings.Contains(r.stderr, "unknown key listen.htpps") {
		t.Fatalf("unknown key: %+v", r)
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("reason takes %d lines, want one: %q", n, r.stderr)
	}
	// A flag overrides the file and is validated too.
	r = runCmd(t, "", "serve", "--check-config", "--config", "../../packaging/flownexus.toml", "--http", "localhost")
	if r.code != exitFail || !strings.Contains(r.stderr, "listen.http") {
		t.Fatalf("bad --http: %+v", r)
	}
	r = runCmd(t, "", "serve", "--check-config", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	if r.code != exitFail || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("missing file: %+v", r)
	}
}

// TestServePortInUse: serve exits non-zero with a one-line reason when a
// port is taken.
func TestServePortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := runCmd(t, "", "serve", "--config", "../../packaging/flownexus.toml", "--data-dir", t.TempDir(),
		"--http", l.Addr().String(), "--coap", "127.0.0.1:0", "--coaps", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0")
	if r.code != exitFail {
		t.Fatalf("exit %d, want %d: %q", r.code, exitFail, r.stderr)
	}
	last := strings.TrimSpace(r.stderr)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:] // the lines before are the log
	}
	if !strings.HasPrefix(last, "flownexus: ") || !strings.Contains(last, "address already in use") {
		t.Fatalf("last line %q does not give the reason", last)
	}
}

func TestUserAdd(t *testing.T) {
	dir := t.TempDir()
	r := runCmd(t, "correct horse battery\n", "user", "add", "alice", "--role", "admin", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "user alice created with role admin") {
		t.Fatalf("user add: %+v", r)
	}
	cfg := appliance.DefaultConfig()
	cfg.DataDir = dir
	sc := store.DefaultConfig()
	sc.Path = cfg.DatabasePath()
	db, err := store.Open(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.UserByName(context.Background(), "alice")
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != "admin" || !webui.CheckPassword(u.PasswordHash, "correct horse battery") {
		t.Errorf("user %+v does not log in with the given password", u)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not argon2id with OWASP parameters", u.PasswordHash)
	}

	refusals := []struct {
		stdin string
		args  []string
		want  string
	}{
		{"correct horse battery\n", []string{"alice", "--role", "viewer"}, "conflict"},
		{"correct horse battery\n", []string{"bob", "--role", "root"}, "role"},
		{"short\n", []string{"bob", "--role", "viewer"}, "password too short"},
		{"", []string{"bob", "--role", "viewer"}, "no password"},
	}
	for _, c := range refusals {
		r := runCmd(t, c.stdin, append([]string{"user", "add", "--data-dir", dir}, c.args...)...)
		if r.code != exitFail || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: %+v, want exit 1 mentioning %q", c.args, r, c.want)
		}
	}
}

func TestBackupRestoreRefusals(t *testing.T) {
	empty := t.TempDir()
	r := runCmd(t, "", "backup", "--data-dir", empty, "--out", filepath.Join(t.TempDir(), "b.tar.gz"))
	if r.code != exitFail || !strings.Contains(r.stderr, "flownexus.db") {
		t.Errorf("backup of a data dir without a database: %+v", r)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "flownexus.db"), []byte("x"), 0o600)
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	os.WriteFile(archive, []byte("not an archive"), 0o600)
	r = runCmd(t, "", "restore", "--data-dir", full, "--in", archive)
	if r.code != exitFail || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("restore into a non-empty dir: %+v", r)
	}
	r = runCmd(t, "", "restore", "--data-dir", t.TempDir(), "--in", archive)
	if r.code != exitFail || !strings.Contains(r.stderr, "invalid backup archive") {
		t.Errorf("restore of garbage: %+v", r)
	}
}
