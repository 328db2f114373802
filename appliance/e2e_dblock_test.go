package appliance

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// dbLock holds SQLite's write lock on an appliance's database from a
// connection of its own, so that nothing commits until it is released:
// what a slow disk looks like to the ingestion writer.
type dbLock struct{ conn *sql.Conn }

func openDBLock(t *testing.T, dataDir string) *dbLock {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dataDir, "flownexus.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &dbLock{conn}
}

func (l *dbLock) hold(t *testing.T) { l.exec(t, `BEGIN IMMEDIATE`) }

func (l *dbLock) release(t *testing.T) { l.exec(t, `ROLLBACK`) }

func (l *dbLock) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := l.conn.ExecContext(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}
