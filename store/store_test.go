package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "test.db")
	return cfg
}

func openTest(t testing.TB, opts ...Option) *DB {
	t.Helper()
	return openWith(t, testConfig(t), opts...)
}

func openWith(t testing.TB, cfg Config, opts ...Option) *DB {
	t.Helper()
	d, err := Open(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenMigratesAndReopens(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	var v int
	if err := d.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion() || v < 2 {
		t.Fatalf("schema version %d, want %d", v, SchemaVersion())
	}
	var mode string
	d.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)
	if mode != "wal" {
		t.Fatalf("journal_mode %q, want wal", mode)
	}
	var fk int
	d.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk)
	if fk != 1 {
		t.Fatal("foreign keys off")
	}
	if _, err := d.CreateUser(ctx, "alice", "h", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.CreateUser(ctx, "bob", "h", RoleAdmin); err == nil {
		t.Fatal("write after Close succeeded")
	}
	d2 := openWith(t, cfg)
	if _, err := d2.UserByName(ctx, "alice"); err != nil {
		t.Fatalf("user lost across reopen: %v", err)
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty path: %v", err)
	}
	cfg := testConfig(t)
	cfg.RetentionOverrides = map[string]time.Duration{"3303": time.Hour}
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad override: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	if _, err := d.w.ExecContext(ctx, `INSERT INTO schema_version(version, name, applied) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("newer schema: %v", err)
	}
}

// TestUpgradeFromFirstSchema builds a database with migration 0001 only,
// writes data the way that version would, and opens it with the current
// binary: the data must survive and the newer tables must work.
func TestUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	raw, err := openRaw(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, raw, 1); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO user(name, password_hash, role, created) VALUES ('old-admin', '$argon2id$x', 'admin', 1000)`,
		`INSERT INTO endpoint(name, online, lifetime, created) VALUES ('old-dev', 1, 300, 1000)`,
		`INSERT INTO operation(endpoint_id, type, paths, status, attempts, created, updated) VALUES (1, 'read', '["/3/0/0"]', 'sending', 1, 1000, 1000)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var tables int
	raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'series'`).Scan(&tables)
	if tables != 0 {
		t.Fatal("migration 1 alone created telemetry tables")
	}
	raw.Close()

	d := openWith(t, cfg)
	if u, err := d.UserByName(ctx, "old-admin"); err != nil || u.Role != RoleAdmin {
		t.Fatalf("user after upgrade: %+v %v", u, err)
	}
	e, err := d.Endpoint(ctx, "old-dev")
	if err != nil || e.Lifetime != 300 {
		t.Fatalf("endpoint after upgrade: %+v %v", e, err)
	}
	ops, err := d.Operations(ctx, OperationQuery{Endpoint: "old-dev"})
	if err != nil || len(ops) != 1 || ops[0].Status != StatusQueued || ops[0].Attempts != 1 {
		t.Fatalf("operation after upgrade: %+v %v", ops, err)
	}
	var v int
	d.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v)
	if v != SchemaVersion() {
		t.Fatalf("version %d after upgrade", v)
	}
	runWriter(t, d)
	ingestOne(t, d, "old-dev", "/3303/0/5700", 21.5)
	if l, err := d.Latest(ctx, "old-dev"); err != nil || len(l) != 1 {
		t.Fatalf("telemetry after upgrade: %+v %v", l, err)
	}
}
