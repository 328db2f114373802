package dtls

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzImportSessions: the session file decoder never panics, and whatever
// it accepts is a session it can route.
func FuzzImportSessions(f *testing.F) {
	f.Add([]byte(sessionFileMagic))
	f.Add([]byte("FNXDTLS1\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x01\x07\x7f\x00\x00\x01\x13\x88\x01x\x02ab"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &Server{byID: map[uint64]*session{}, byAddr: map[netip.AddrPort]*session{}, byIdentity: map[string]*session{}, older: map[string]*session{}}
		s.cfg.SessionLifetime = 1 << 62
		s.cfg.MaxSessions = 1 << 20
		n, err := s.ImportSessions(bytes.NewReader(b))
		if err != nil && n != 0 {
			t.Fatal("error with sessions imported")
		}
		for id, sess := range s.byID {
			if id == 0 || sess.id != id || !sess.established {
				t.Fatalf("bad session %x", id)
			}
		}
	})
}
