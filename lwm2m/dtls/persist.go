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
		buf = binary.BigEndian.AppendUint64(buf[:0], r.id)
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
		if _, err := bw.Write(buf); err != nil {
			return 0, fmt.Errorf("dtls: write sessions: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("dtls: write sessions: %w", err)
	}
	return len(recs), nil
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
		var fixed [17]byte
		if _, err := io.ReadFull(br, fixed[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, fmt.Errorf("%w: truncated", ErrSessionFile)
		}
		rec := parkedRecord{
			id:         binary.BigEndian.Uint64(fixed[0:8]),
			lastActive: int64(binary.BigEndian.Uint64(fixed[8:16])),
			cid:        fixed[16] == 1,
		}
		var fields [3][]byte
		for i := range fields {
			n, err := binary.ReadUvarint(br)
			if err != nil || n > maxStateLen {
				return 0, fmt.Errorf("%w: bad field length", ErrSessionFile)
			}
			fields[i] = make([]byte, n)
			if _, err := io.ReadFull(br, fields[i]); err != nil {
				return 0, fmt.Errorf("%w: truncated", ErrSessionFile)
			}
		}
		if err := rec.addr.UnmarshalBinary(fields[0]); err != nil || rec.id == 0 {
			return 0, fmt.Errorf("%w: bad session", ErrSessionFile)
		}
		rec.identity, rec.state = string(fields[1]), fields[2]
		recs = append(recs, rec)
	}
	cutoff := time.Now().Add(-s.cfg.SessionLifetime).UnixNano()
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
	return n, nil
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
