package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// DefaultMinFreeBytes is the free space below which the store refuses new
// telemetry (Config.MinFreeBytes 0). It leaves room for the WAL of the
// transactions in flight, for checkpoints and for the writes of the web UI
// and the operation dispatcher, which are small and are not refused.
const DefaultMinFreeBytes = 16 << 20

// DiskState says whether the store is refusing telemetry for want of space.
type DiskState struct {
	// Full is true while Ingest refuses with ErrDiskFull.
	Full bool
	// Reason says why, for /healthz and the web UI ("" when not Full).
	Reason string
	// FreeBytes is the free space of the data directory's file system at
	// the last check (-1 when it could not be read).
	FreeBytes int64
	// Refused counts the batches Ingest refused with ErrDiskFull.
	Refused uint64
}

// space tracks the disk state. SQLite reports SQLITE_FULL on a write that
// finds no room; that and a free-space check against the reserve both
// mark the store full. It recovers by itself: the check runs every
// second from Run, and a full caused by SQLITE_FULL ends as soon as the
// file system has more free space than when the write failed. A write
// that still finds no room marks it full again, and under
// acknowledge-after-commit its readings are refused, not lost.
type space struct {
	mu        sync.Mutex
	full      bool
	reason    string
	free      int64
	sqlFull   bool  // a write failed with SQLITE_FULL …
	freeAtErr int64 // … when this much was free

	flag    atomic.Bool   // full, read by Ingest without the mutex
	refused atomic.Uint64 // batches refused for want of space
}

// reserve is the configured free-space floor; negative disables it.
func (d *DB) reserve() int64 {
	switch {
	case d.cfg.MinFreeBytes < 0:
		return 0
	case d.cfg.MinFreeBytes == 0:
		return DefaultMinFreeBytes
	}
	return d.cfg.MinFreeBytes
}

// freeBytes is the space available to this process on the file system of
// the database, -1 when unknown.
func (d *DB) freeBytes() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(d.cfg.Path), &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// CheckSpace reads the free space now and updates the disk state: Run
// calls it every second; tests call it to avoid waiting.
func (d *DB) CheckSpace() DiskState {
	free := d.freeBytes()
	s := &d.space
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = free
	if s.sqlFull && free > s.freeAtErr {
		s.sqlFull = false // space came back: let the next write try
	}
	res := d.reserve()
	wasFull := s.full
	switch {
	case free >= 0 && res > 0 && free < res:
		s.full = true
		s.reason = fmt.Sprintf("disk full: %d bytes free on the data directory's file system, below the %d-byte reserve", free, res)
	case s.sqlFull:
		s.full = true
		s.reason = "disk full: the database could not grow (SQLITE_FULL)"
	default:
		s.full, s.reason = false, ""
	}
	d.setFullFlag(s.full)
	if s.full != wasFull {
		if s.full {
			d.log.Error("refusing telemetry: disk full", "reason", s.reason)
		} else {
			d.log.Info("disk space available again: accepting telemetry", "free_bytes", free)
		}
	}
	return DiskState{Full: s.full, Reason: s.reason, FreeBytes: free, Refused: s.refused.Load()}
}

// DiskState returns the disk state of the last check, without checking.
func (d *DB) DiskState() DiskState {
	s := &d.space
	s.mu.Lock()
	defer s.mu.Unlock()
	return DiskState{Full: s.full, Reason: s.reason, FreeBytes: s.free, Refused: s.refused.Load()}
}

func (d *DB) setFullFlag(full bool) { d.space.flag.Store(full) }

// isSQLiteFull reports whether err is SQLite's SQLITE_FULL (or an I/O
// error from a file system with no space left, which SQLite reports as
// SQLITE_IOERR_WRITE and friends with ENOSPC underneath).
func isSQLiteFull(err error) bool {
	if err == nil {
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		if se.Code == sqlite3.ErrFull {
			return true
		}
		if se.Code == sqlite3.ErrIoErr && errors.Is(se.SystemErrno, syscall.ENOSPC) {
			return true
		}
	}
	return errors.Is(err, syscall.ENOSPC)
}

// noteWriteErr marks the store full when err says the disk is, and
// returns err wrapped with ErrDiskFull in that case (unchanged otherwise).
func (d *DB) noteWriteErr(err error) error {
	if !isSQLiteFull(err) {
		return err
	}
	free := d.freeBytes()
	s := &d.space
	s.mu.Lock()
	first := !s.full
	s.sqlFull, s.freeAtErr, s.free = true, free, free
	s.full = true
	s.reason = "disk full: the database could not grow (SQLITE_FULL)"
	reason := s.reason
	d.setFullFlag(true)
	s.mu.Unlock()
	if first {
		d.log.Error("refusing telemetry: disk full", "reason", reason, "free_bytes", free)
	}
	if errors.Is(err, ErrDiskFull) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDiskFull, err)
}

// refuseIfFull is Ingest's first check: while the disk is full nothing
// new is accepted, so the device keeps its readings and retries.
func (d *DB) refuseIfFull(ep string) error {
	if !d.space.flag.Load() {
		return nil
	}
	d.stats.refused.Add(1)
	d.space.refused.Add(1)
	return fmt.Errorf("store: ingest from %q: %w", ep, ErrDiskFull)
}

// failFull counts and logs the batches a commit could not store for want
// of space. Under acknowledge-after-commit their devices get the error
// and retry; nothing of them was stored.
func (d *DB) failFull(bs []*batch, err error) {
	var nb, nr int
	for _, b := range bs {
		if b.done == nil {
			nb++
			nr += len(b.Records)
		}
	}
	d.stats.failed.Add(uint64(nb))
	d.log.Error("ingestion commit failed: disk full", "batches", nb, "readings", nr, "err", err)
}
