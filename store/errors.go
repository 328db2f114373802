package store

import "errors"

// Sentinel errors. Methods wrap them with context; compare with errors.Is.
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique name or key is taken, or a referenced row is
	// missing or still referenced.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is malformed (empty name, unknown role, bad
	// state transition).
	ErrInvalid = errors.New("invalid")
	// ErrQueueFull: the ingestion queue is full; the caller should answer
	// 5.03 Service Unavailable so the device retries.
	ErrQueueFull = errors.New("ingestion queue full")
	// ErrDiskFull: the data directory's file system is (nearly) full; new
	// telemetry is refused (answer 5.03 so the device keeps it and
	// retries) until space returns. See DiskState.
	ErrDiskFull = errors.New("disk full")
	// ErrClosed: the database is closed.
	ErrClosed = errors.New("store closed")
)
