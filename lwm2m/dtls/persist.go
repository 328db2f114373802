package dtls

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The session file keeps parked sessions across a restart of the appliance
// (an update, a reboot), so that devices continue their DTLS sessions
// instead of timing out and handshaking again. It holds session keys: it is
// written 0600 at a clean shutdown, after every session was silenced, and
// deleted as soon as it is read, so a state is never restored twice (the
// record sequence numbers in it must not be reused, RFC 6347 §4.1.2.6).
const sessionFileMagic = "FNXDTLS1"

// maxStateLen bounds one serialised state (certificate chains included).
const maxStateLen = 64 << 10

// ErrSessionFile is returned for a session file that cannot be read.
var ErrSessionFile = errors.New("dtls: bad session file")

type parkedRecord struct {
	id         uint64
	lastActive int64
	cid        bool
	addr       netip.AddrPort
	identity   string
	state      []byte
}

// ExportSessions parks every established session and writes them all to w.
// Call it after the server stopped reading (Close), so no session changes
// underneath; it returns how many sessions it wrote.
func (s *Server) ExportSessions(w io.Writer) (int, error) {
	s.ParkIdle(0)
	s.mu.Lock()
	var recs []parkedRecord
	for _, sess := range s.byID {
		sess.mu.Lock()
		if sess.established && !sess.closed && sess.conn == nil && len(sess.state) > 0 {
			recs = append(recs, parkedRecord{
				id: sess.id, lastActive: sess.lastActive.Load(), cid: sess.cid,
				addr: sess.addr, identity: sess.identity, state: sess.state,
			})
		}
		sess.mu.Unlock()
	}
	s.mu.Unlock()
	bw := bufio.NewWriter(w)
	bw.WriteString(sessionFileMagic)
	var buf []byte
	for _, r := range recs {
		if _, err := bw.Write(r.appendTo(buf[:0])); err != nil {
			return 0, fmt.Errorf("dtls: write sessions: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("dtls: write sessions: %w", err)
	}
	return len(recs), nil
}

// appendTo encodes one record: id, last activity, CID flag, then address,
// identity and state, each with its length. A record with no state is a
// tombstone (journal only).
func (r parkedRecord) appendTo(buf []byte) []byte {
	buf = binary.BigEndian.AppendUint64(buf, r.id)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.lastActive))
	cid := byte(0)
	if r.cid {
		cid = 1
	}
	buf = append(buf, cid)
	addr, _ := r.addr.MarshalBinary()
	for _, field := range [][]byte{addr, []byte(r.identity), r.state} {
		buf = binary.AppendUvarint(buf, uint64(len(field)))
		buf = append(buf, field...)
	}
	return buf
}

// errTruncated is a record cut short: the end of a journal written when
// the process died.
var errTruncated = fmt.Errorf("%w: truncated", ErrSessionFile)

// readRecord decodes the next record; io.EOF at a clean end.
func readRecord(br *bufio.Reader) (parkedRecord, error) {
	var fixed [17]byte
	if _, err := io.ReadFull(br, fixed[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return parkedRecord{}, io.EOF
		}
		return parkedRecord{}, errTruncated
	}
	rec := parkedRecord{
		id:         binary.BigEndian.Uint64(fixed[0:8]),
		lastActive: int64(binary.BigEndian.Uint64(fixed[8:16])),
		cid:        fixed[16] == 1,
	}
	var fields [3][]byte
	for i := range fields {
		n, err := binary.ReadUvarint(br)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return parkedRecord{}, errTruncated
		}
		if err != nil || n > maxStateLen {
			return parkedRecord{}, fmt.Errorf("%w: bad field length", ErrSessionFile)
		}
		fields[i] = make([]byte, n)
		if _, err := io.ReadFull(br, fields[i]); err != nil {
			return parkedRecord{}, errTruncated
		}
	}
	if err := rec.addr.UnmarshalBinary(fields[0]); err != nil || rec.id == 0 {
		return parkedRecord{}, fmt.Errorf("%w: bad session", ErrSessionFile)
	}
	rec.identity, rec.state = string(fields[1]), fields[2]
	return rec, nil
}

// ImportSessions adds the parked sessions ExportSessions wrote. Call it
// before Run. Sessions past SessionLifetime are skipped.
func (s *Server) ImportSessions(r io.Reader) (int, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(sessionFileMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != sessionFileMagic {
		return 0, fmt.Errorf("%w: no header", ErrSessionFile)
	}
	var recs []parkedRecord
	for {
		rec, err := readRecord(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if len(rec.state) == 0 {
			return 0, fmt.Errorf("%w: session without state", ErrSessionFile)
		}
		recs = append(recs, rec)
	}
	cutoff := time.Now().Add(-s.cfg.SessionLifetime).UnixNano()
	return s.importRecords(recs, cutoff), nil
}

// importRecords adds parked sessions last active after cutoff, as far as
// MaxSessions allows, and returns how many it added.
func (s *Server) importRecords(recs []parkedRecord, cutoff int64) int {
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range recs {
		if rec.lastActive < cutoff || s.byID[rec.id] != nil || len(s.byID) >= s.cfg.MaxSessions {
			continue
		}
		sess := &session{srv: s, id: rec.id, addr: rec.addr, identity: rec.identity,
			established: true, cid: rec.cid, state: rec.state, created: rec.lastActive}
		sess.lastActive.Store(rec.lastActive)
		s.byID[rec.id] = sess
		s.byAddr[rec.addr] = sess
		if rec.identity != "" {
			s.byIdentity[rec.identity] = sess
		}
		n++
	}
	return n
}

// saveSessions writes the session file at Close.
func (s *Server) saveSessions(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sessions-*")
	if err != nil {
		return fmt.Errorf("dtls: session file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("dtls: session file: %w", err)
	}
	n, err := s.ExportSessions(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dtls: session file: %w", err)
	}
	s.log.Info("dtls sessions saved", "sessions", n, "file", path)
	return nil
}

// restoreSessions restores the sessions of the last run at New: from the
// session file after a clean stop, else from the crash journal; then it
// starts a fresh journal holding them. Problems cost the devices a
// handshake, never the start.
func (s *Server) restoreSessions(path string) {
	jpath := path + journalSuffix
	fromJournal := false
	if _, err := os.Stat(path); err == nil {
		if err := s.loadSessions(path); err != nil {
			s.log.Warn("dtls sessions not restored", "err", err)
		}
	} else if err := s.loadJournal(jpath); err == nil {
		fromJournal = true
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("dtls sessions not restored from the journal", "err", err)
	}
	j, err := openJournal(jpath, s.snapshotAll(), s.snapshotAll, journalSyncEvery, s.log)
	if err != nil {
		s.log.Warn("dtls session journal not started; sessions are kept across a clean stop only", "err", err)
		// The old journal's states were moved on once; restored again
		// after another crash they would be moved on by the same amount
		// from the same snapshot, reusing sequence numbers.
		if rerr := os.Remove(jpath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && fromJournal {
			s.dropAll()
		}
		return
	}
	s.journal = j
}

// loadJournal restores the sessions of a run that ended without Close.
func (s *Server) loadJournal(path string) error {
	recs, written, err := readJournal(path)
	if err != nil {
		return err
	}
	kept := recs[:0]
	for _, r := range recs {
		state, err := bumpSequence(r.state, crashSeqMargin)
		if err != nil {
			s.log.Warn("dtls session not restored from the journal", "session", r.id, "err", err)
			continue
		}
		// Active until the crash, as far as anyone knows: the journal
		// holds no tombstone for it.
		r.state, r.lastActive = state, max(r.lastActive, written)
		kept = append(kept, r)
	}
	n := s.importRecords(kept, time.Now().Add(-s.cfg.SessionLifetime).UnixNano())
	s.log.Info("dtls sessions restored after an unclean stop", "sessions", n, "journal", path)
	return nil
}

// snapshotAll lists every established session as it is now: at New the
// restored ones that start the journal, later a rewrite of it.
func (s *Server) snapshotAll() []parkedRecord {
	s.mu.Lock()
	all := make([]*session, 0, len(s.byID))
	for _, sess := range s.byID {
		all = append(all, sess)
	}
	s.mu.Unlock()
	recs := make([]parkedRecord, 0, len(all))
	for _, sess := range all {
		if r, ok := sess.snapshot(); ok {
			recs = append(recs, r)
		}
	}
	return recs
}

// dropAll forgets every session (New only, before anything uses them).
func (s *Server) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.byID)
	clear(s.byAddr)
	clear(s.byIdentity)
}

// loadSessions reads and deletes the session file at New; a missing file
// is no error.
func (s *Server) loadSessions(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dtls: session file: %w", err)
	}
	defer f.Close()
	// Delete first: whatever happens next, these states are used once.
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("dtls: session file: %w", err)
	}
	n, err := s.ImportSessions(f)
	if err != nil {
		return err
	}
	s.log.Info("dtls sessions restored", "sessions", n, "file", path)
	return nil
}
