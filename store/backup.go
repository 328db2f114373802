package store

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// BackupTo writes a consistent copy of the live database to the file
// dest (which must not exist) with SQLite's online backup API. Writers
// continue meanwhile; the copy is the database as of the backup's start.
func (d *DB) BackupTo(ctx context.Context, dest string) error {
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("store: backup to %s: %w: file exists", dest, ErrConflict)
	}
	dst, err := sql.Open("sqlite3", "file:"+dest)
	if err != nil {
		return fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	defer dst.Close()
	dst.SetMaxOpenConns(1)
	dconn, err := dst.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	defer dconn.Close()
	sconn, err := d.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	defer sconn.Close()
	err = dconn.Raw(func(dc any) error {
		return sconn.Raw(func(sc any) error {
			ddc, ok1 := dc.(*sqlite3.SQLiteConn)
			ssc, ok2 := sc.(*sqlite3.SQLiteConn)
			if !ok1 || !ok2 {
				return fmt.Errorf("unexpected driver connection types")
			}
			b, err := ddc.Backup("main", ssc, "main")
			if err != nil {
				return err
			}
			// One step copies everything under a single read
			// transaction. In WAL mode that never blocks the writer, and
			// it must be one step: a step-wise backup restarts whenever
			// another connection writes, which ingestion does constantly.
			if _, err := b.Step(-1); err != nil {
				b.Finish()
				return err
			}
			return b.Finish()
		})
	})
	if err != nil {
		os.Remove(dest)
		return fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	// The copy inherits WAL mode; fold it into one self-contained file.
	if _, err := dconn.ExecContext(ctx, `PRAGMA journal_mode=DELETE`); err != nil {
		return fmt.Errorf("store: backup to %s: %w", dest, err)
	}
	return nil
}

// Backup writes a consistent copy of the live database to w: it backs up
// into a temporary file next to the database and streams that.
func (d *DB) Backup(ctx context.Context, w io.Writer) error {
	dir, release, err := MakeWorkDir(filepath.Dir(d.cfg.Path), BackupWorkPrefix)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	defer release()
	tmp := filepath.Join(dir, "flownexus.db")
	if err := d.BackupTo(ctx, tmp); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	return nil
}
