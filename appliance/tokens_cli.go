package appliance

import (
	"context"
	"fmt"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// cliActor is who the audit trail names for what the command line does.
const cliActor = "cli"

// CreateToken issues a named API token in cfg's data dir (`flownexus token
// create`); expires is what webui.ParseExpiry reads ("" or never, 90d,
// 12h, a date). The secret is in the result only.
func CreateToken(ctx context.Context, cfg Config, name, role, expires string) (store.Token, error) {
	if !store.ValidRole(role) {
		return store.Token{}, fmt.Errorf("token %q: role %q is not admin, operator or viewer", name, role)
	}
	exp, err := webui.ParseExpiry(expires, time.Now())
	if err != nil {
		return store.Token{}, fmt.Errorf("token %q: %w", name, err)
	}
	var t store.Token
	err = withDataDirStore(ctx, cfg, func(db *store.DB) error {
		if t, err = db.CreateToken(ctx, name, role, cliActor, exp); err != nil {
			return err
		}
		_, err = db.Audit(ctx, store.AuditEntry{Actor: cliActor, Action: "token create", Target: t.Name + " (" + t.Role + ")"})
		return err
	})
	return t, err
}

// ListTokens lists the named API tokens without their secrets.
func ListTokens(ctx context.Context, cfg Config) ([]store.Token, error) {
	var ts []store.Token
	err := withDataDirStore(ctx, cfg, func(db *store.DB) error {
		var err error
		ts, err = db.Tokens(ctx)
		return err
	})
	return ts, err
}

// RevokeToken deletes a named API token; store.ErrNotFound when there is
// none by that name.
func RevokeToken(ctx context.Context, cfg Config, name string) error {
	return withDataDirStore(ctx, cfg, func(db *store.DB) error {
		t, err := db.TokenByName(ctx, name)
		if err != nil {
			return err
		}
		if err := db.DeleteToken(ctx, t.ID); err != nil {
			return err
		}
		_, err = db.Audit(ctx, store.AuditEntry{Actor: cliActor, Action: "token revoke", Target: t.Name})
		return err
	})
}

// withDataDirStore opens the data dir's database for f and closes it,
// leaving the files owned like the data dir.
func withDataDirStore(ctx context.Context, cfg Config, f func(*store.DB) error) error {
	db, err := openDataDirStore(ctx, cfg)
	if err != nil {
		return err
	}
	if err := f(db); err != nil {
		db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	return chownLikeDir(cfg.DataDir, []string{databaseFile, databaseFile + "-wal", databaseFile + "-shm"})
}
