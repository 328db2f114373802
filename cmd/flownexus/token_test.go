package main

import (
	"context"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/appliance"
	"github.com/flownexus/flownexus/store"
)

func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	r := runCmd(t, "", "token", "create", "ci-deploy", "--role", "operator", "--expires", "90d", "--data-dir", dir)
	secret := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(secret, "fnx_") || !strings.Contains(r.stderr, "shown only now") {
		t.Fatalf("token create: %+v", r)
	}
	cfg := appliance.DefaultConfig()
	cfg.DataDir = dir
	sc := store.DefaultConfig()
	sc.Path = cfg.DatabasePath()
	db, err := store.Open(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := db.TokenBySecret(context.Background(), secret)
	db.Close()
	if err != nil || tok.Role != "operator" || tok.Expires.IsZero() {
		t.Fatalf("stored token: %+v %v", tok, err)
	}
	r = runCmd(t, "", "token", "list", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "ci-deploy") || !strings.Contains(r.stdout, "operator") || strings.Contains(r.stdout, secret) {
		t.Fatalf("token list: %+v", r)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"token"}, exitUsage, "token create"},
		{[]string{"token", "frob"}, exitUsage, "unknown subcommand"},
		{[]string{"token", "create", "x"}, exitUsage, "--role"},
		{[]string{"token", "create", "ci-deploy", "--role", "viewer"}, exitFail, "conflict"},
		{[]string{"token", "create", "y", "--role", "root"}, exitFail, "role"},
		{[]string{"token", "create", "y", "--role", "viewer", "--expires", "soon"}, exitFail, "expiry"},
		{[]string{"token", "revoke", "nope"}, exitFail, "not found"},
	} {
		r := runCmd(t, "", append(c.args, "--data-dir", dir)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: %+v, want exit %d mentioning %q", c.args, r, c.code, c.want)
		}
	}
	if r := runCmd(t, "", "token", "revoke", "ci-deploy", "--data-dir", dir); r.code != 0 {
		t.Fatalf("token revoke: %+v", r)
	}
	if r := runCmd(t, "", "token", "list", "--data-dir", dir); strings.Contains(r.stdout, "ci-deploy") {
		t.Fatalf("revoked token still listed: %+v", r)
	}
}
