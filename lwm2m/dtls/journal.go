package dtls

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The crash journal keeps sessions across a process that dies without
// Close (kill -9, a power cut, the OOM killer), which the session file
// cannot: that is written at a clean stop only. Every handshake appends the
// new session's state, every forgotten session a tombstone; one goroutine
// writes them in batches as they come, which a killed process cannot lose
// (they are in the kernel's page cache), and fsyncs the file at most once
// per journalSyncEvery, which bounds what a power cut can lose to the
// sessions of the last interval: those devices handshake again (issue 15:
// an fsync per handshake cost about 80 µs of CPU, a tenth of a PSK
// handshake and its Register). It rewrites the file from
// the sessions held when it has grown to several times its size after the
// last rewrite. After a crash, the next start restores the last state of
// every session the journal holds, with its record sequence number moved on
// by crashSeqMargin (the snapshot may be older than the last record sent).
// The journal is deleted at a clean stop, once the session file is written,
// and started afresh from the restored sessions at every start, so no
// state is restored twice without a margin. Its records are those of the
// session file (persist.go); a record without state is a tombstone.
const journalMagic = "FNXDJRN1"

// journalSuffix names the journal beside Config.SessionFile.
const journalSuffix = ".journal"

// journalCompactMin is the least size at which the journal is rewritten.
const journalCompactMin = 1 << 20

// journalSyncEvery is the longest a written record waits for its fsync.
const journalSyncEvery = 200 * time.Millisecond

// journalMaxPending bounds the records waiting for the writer; beyond it
// new ones are dropped (a lost snapshot costs its device a handshake after
// a crash, a lost tombstone restores a session nobody uses until it expires).
const journalMaxPending = 1 << 17

type journal struct {
	path      string
	log       *slog.Logger
	syncEvery time.Duration
	// sessions returns every session held now, for a rewrite.
	sessions func() []parkedRecord

	mu      sync.Mutex
	pending []parkedRecord
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	f          *os.File // owned by run
	size, base int64
	written    atomic.Uint64 // session states made durable
	syncs      atomic.Uint64 // fsyncs of appended records
	rewriteNow atomic.Bool   // set by requestRewrite
	failing    bool          // the last write failed: the next flush rewrites (owned by run)
	unsynced   bool          // records written and not yet fsynced (owned by run)
	dirty      int           // of them, session states (tombstones are not counted)
	lastSync   time.Time     // the last fsync (owned by run)
	failures   atomic.Uint64 // writes that failed
}

// openJournal writes a fresh journal holding recs and starts its writer,
// which fsyncs at most once per syncEvery.
func openJournal(path string, recs []parkedRecord, sessions func() []parkedRecord, syncEvery time.Duration, log *slog.Logger) (*journal, error) {
	j := &journal{path: path, log: log, sessions: sessions, syncEvery: syncEvery,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := j.rewrite(recs); err != nil {
		return nil, err
	}
	go j.run()
	return j, nil
}

// add queues a record for the writer; it never blocks.
func (j *journal) add(r parkedRecord) {
	if j == nil {
		return
	}
	j.mu.Lock()
	if len(j.pending) >= journalMaxPending {
		j.mu.Unlock()
		return
	}
	j.pending = append(j.pending, r)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *journal) run() {
	defer close(j.done)
	due := time.NewTimer(time.Hour)
	due.Stop()
	for {
		select {
		case <-j.wake:
			j.flush()
			if j.rewriteNow.Swap(false) || j.size > max(journalCompactMin, 4*j.base) {
				if err := j.rewrite(j.sessions()); err != nil {
					j.log.Warn("dtls session journal not rewritten", "err", err)
				}
			}
			if j.unsynced {
				if wait := j.syncEvery - time.Since(j.lastSync); wait > 0 {
					due.Reset(wait) // always lastSync + syncEvery
					continue
				}
				j.sync()
			}
		case <-due.C:
			j.sync()
		case <-j.stop:
			due.Stop()
			j.flush()
			j.sync()
			return
		}
	}
}

// sync makes what flush wrote durable.
func (j *journal) sync() {
	if !j.unsynced || j.failing {
		return
	}
	j.lastSync = time.Now()
	j.syncs.Add(1)
	if err := j.f.Sync(); err != nil {
		j.failWrite(err)
		return
	}
	j.written.Add(uint64(j.dirty))
	j.unsynced, j.dirty = false, 0
}

// failWrite notes a failed write or fsync: the next flush rewrites the
// journal from the sessions held.
func (j *journal) failWrite(err error) {
	j.failures.Add(1)
	j.failing = true
	j.unsynced, j.dirty = false, 0
	j.log.Warn("dtls session journal not written; until it is, devices that handshake now handshake again after a crash", "err", err)
}

// requestRewrite has the writer rewrite the journal now (tests).
func (j *journal) requestRewrite() {
	j.rewriteNow.Store(true)
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// flush appends what is pending with one write; sync makes it durable. After a
// failed write (a disk full, say) the file may end in part of a record, so
// the next flush rewrites the journal from the sessions held instead, which
// also covers what was pending.
func (j *journal) flush() {
	j.mu.Lock()
	recs := j.pending
	j.pending = nil
	j.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if j.failing {
		if err := j.rewrite(j.sessions()); err != nil {
			j.failures.Add(1)
			return
		}
		j.failing = false
		j.log.Info("dtls session journal written again")
		return
	}
	var buf []byte
	states := 0
	for _, r := range recs {
		buf = r.appendTo(buf)
		if len(r.state) > 0 {
			states++
		}
	}
	if _, err := j.f.Write(buf); err != nil {
		j.failWrite(err)
		return
	}
	j.size += int64(len(buf))
	j.unsynced = true
	j.dirty += states
}

// rewrite replaces the journal with one holding recs (write, fsync,
// rename, fsync of the directory) and appends to it from then on.
func (j *journal) rewrite(recs []parkedRecord) error {
	dir := filepath.Dir(j.path)
	tmp, err := os.CreateTemp(dir, ".journal-*")
	if err != nil {
		return fmt.Errorf("dtls: session journal: %w", err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("dtls: session journal: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	buf := []byte(journalMagic)
	for _, r := range recs {
		buf = r.appendTo(buf)
	}
	if _, err := tmp.Write(buf); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), j.path); err != nil {
		return fail(err)
	}
	syncDir(dir)
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size, j.base = tmp, int64(len(buf)), int64(len(buf))
	j.unsynced, j.dirty = false, 0 // the new file holds every session, fsynced
	j.written.Add(uint64(len(recs)))
	return nil
}

// close stops the writer after a last flush.
func (j *journal) close() {
	if j == nil {
		return
	}
	close(j.stop)
	<-j.done
	j.f.Close()
}

// remove deletes the journal after close, once the session file holds
// the sessions.
func (j *journal) remove() {
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		j.log.Warn("dtls session journal not removed", "err", err)
	}
}

// readJournal returns the last state of every session a journal holds, with
// the time of its last write. A record cut short by the crash ends it.
func readJournal(path string) ([]parkedRecord, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("dtls: session journal: %w", err)
	}
	recs, err := decodeJournal(bufio.NewReader(f))
	if err != nil {
		return nil, 0, err
	}
	return recs, st.ModTime().UnixNano(), nil
}

// decodeJournal reads a journal: the last record of each session wins, a
// tombstone removes it, and a record cut short ends the journal.
func decodeJournal(br *bufio.Reader) ([]parkedRecord, error) {
	magic := make([]byte, len(journalMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != journalMagic {
		return nil, fmt.Errorf("%w: journal has no header", ErrSessionFile)
	}
	last := make(map[uint64]parkedRecord)
	var order []uint64
	for {
		rec, err := readRecord(br)
		if errors.Is(err, io.EOF) || errors.Is(err, errTruncated) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(rec.state) == 0 {
			delete(last, rec.id)
			continue
		}
		if _, seen := last[rec.id]; !seen {
			order = append(order, rec.id)
		}
		last[rec.id] = rec
	}
	recs := make([]parkedRecord, 0, len(last))
	for _, id := range order {
		if r, ok := last[id]; ok {
			recs = append(recs, r)
			delete(last, id) // an id forgotten and seen again is listed once
		}
	}
	return recs, nil
}

// syncDir makes a rename in dir durable; where directories cannot be
// opened or synced it is a no-op.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
