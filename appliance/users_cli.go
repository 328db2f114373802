package appliance

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// ErrWeakPassword refuses a password too short to resist guessing.
var ErrWeakPassword = errors.New("password too short")

// minPasswordLen matches the web UI's policy so a user created on the command
// line can also change their password there.
const minPasswordLen = 10

// AddUser creates a web UI user directly in the store under cfg's data dir;
// `flownexus user add` uses it, also before the service has ever run (the
// store is created and migrated if needed). The password is hashed with
// argon2id by the web UI's own function, so both check it alike.
func AddUser(ctx context.Context, cfg Config, name, role, password string) (store.User, error) {
	if !store.ValidRole(role) {
		return store.User{}, fmt.Errorf("user %q: role %q is not admin, operator or viewer", name, role)
	}
	if utf8.RuneCountInString(password) < minPasswordLen {
		return store.User{}, fmt.Errorf("user %q: %w: at least %d characters", name, ErrWeakPassword, minPasswordLen)
	}
	hash, err := webui.HashPassword(password)
	if err != nil {
		return store.User{}, fmt.Errorf("user %q: %w", name, err)
	}
	db, err := openDataDirStore(ctx, cfg)
	if err != nil {
		return store.User{}, err
	}
	defer db.Close()
	u, err := db.CreateUser(ctx, name, hash, role)
	if err != nil {
		return store.User{}, err
	}
	if err := db.Close(); err != nil {
		return u, err
	}
	// Run as root on a fresh install, the database must still belong to
	// the service's user.
	return u, chownLikeDir(cfg.DataDir, []string{databaseFile, databaseFile + "-wal", databaseFile + "-shm"})
}

// openDataDirStore opens the data dir's database for a command-line tool; SQLite's
// WAL lets it share the file with a running service.
func openDataDirStore(ctx context.Context, cfg Config) (*store.DB, error) {
	sc := store.DefaultConfig()
	sc.Path = cfg.DatabasePath()
	db, err := store.Open(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", sc.Path, err)
	}
	return db, nil
}
