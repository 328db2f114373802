package dtls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pion "github.com/pion/dtls/v3"
)

// waitFor polls cond until it holds (20 s at most).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runUntilStopped runs srv and returns a stop function that waits for a
// clean stop (Close: the session file is written, the journal removed).
func runUntilStopped(t *testing.T, srv *Server) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	go echo(srv)
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionsSurviveCrash: a device keeps its DTLS session across an
// appliance that died without Close. The journal on disk at the "crash" is
// the one taken after the handshake; the server then sent more records with
// those keys, so a restore that did not move the sequence number on would
// reuse record numbers (and AEAD nonces): the client's replay window drops
// them and the round trip after the restart fails.
func TestSessionsSurviveCrash(t *testing.T) {
	ca := newTestCA(t, "FlowNexus test CA")
	srvCert, _ := ca.issue(t, "flownexus", true, time.Now().Add(time.Hour))
	devCert, _ := ca.issue(t, "urn:imei:350457790000002", false, time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name, identity string
		client         ClientConfig
	}{
		{"psk with CID", "dev-1", ClientConfig{PSKIdentity: "dev-1", PSK: devKey}},
		{"psk without CID", "dev-1", ClientConfig{PSKIdentity: "dev-1", PSK: devKey, NoConnectionID: true}},
		{"certificate CCM_8", "urn:imei:350457790000002", ClientConfig{Certificate: devCert, RootCAs: ca.pool, ServerName: "localhost",
			CipherSuites: []pion.CipherSuiteID{pion.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}},
		{"certificate GCM", "urn:imei:350457790000002", ClientConfig{Certificate: devCert, RootCAs: ca.pool, ServerName: "localhost",
			CipherSuites: []pion.CipherSuiteID{pion.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "dtls-sessions")
			cfg := DefaultConfig()
			cfg.PSK = pskTable{"dev-1": devKey}.lookup
			cfg.Certificate, cfg.ClientCAs = srvCert, ca.pool
			cfg.SessionFile = file
			srv1, err := Listen("127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			addr := srv1.LocalAddr().String()
			stop := runUntilStopped(t, srv1)
			c := dial(t, addr, tc.client)
			if got := roundTrip(t, c, "before"); got != tc.identity+"|before" {
				t.Fatalf("echo %q", got)
			}
			waitFor(t, "the session journalled", func() bool { return srv1.Stats().Journaled >= 1 })
			crashed, err := os.ReadFile(file + journalSuffix)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				roundTrip(t, c, "more")
			}
			stop()
			// What a kill -9 leaves: the journal as it was, no session file.
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file+journalSuffix, crashed, 0o600); err != nil {
				t.Fatal(err)
			}

			srv2 := startServer(t, cfg, addr)
			if st := srv2.Stats(); st.Sessions != 1 || st.Live != 0 || st.Journaled != 1 {
				t.Fatalf("restored from the journal: %+v", st)
			}
			for i := range 3 {
				if got := roundTrip(t, c, "after"); got != tc.identity+"|after" {
					t.Fatalf("echo %d after the crash %q", i, got)
				}
			}
			if st := srv2.Stats(); st.HandshakesOK != 0 || st.Resumed != 1 {
				t.Fatalf("after the crash: %+v", st)
			}
		})
	}
}

// TestJournalForgetsAndRewrites: a session the peer closed is not restored
// after a crash, the journal is rewritten from the sessions held once it
// has grown, and a session that keeps sending journals a new snapshot.
func TestJournalForgetsAndRewrites(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dtls-sessions")
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey, "dev-2": []byte("fedcba9876543210")}.lookup
	cfg.SessionFile = file
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.resnapAfter = 4
	stop := runUntilStopped(t, srv)
	defer stop()
	addr := srv.LocalAddr().String()

	c1 := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	c2 := dial(t, addr, ClientConfig{PSKIdentity: "dev-2", PSK: []byte("fedcba9876543210")})
	roundTrip(t, c1, "x")
	roundTrip(t, c2, "x")
	waitFor(t, "both sessions journalled", func() bool { return srv.Stats().Journaled >= 2 })
	peer2, _ := srv.Peer(sessionOf(t, srv, "dev-2"))

	// Four records to dev-1 since its snapshot: a new one is journalled.
	for range 4 {
		roundTrip(t, c1, "y")
	}
	waitFor(t, "a fresh snapshot of dev-1", func() bool { return srv.Stats().Journaled >= 3 })
	recs, _, err := readJournal(file + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("journal holds %d sessions, want 2", len(recs))
	}

	// dev-2 says goodbye (close_notify): a tombstone.
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dev-2 forgotten", func() bool { _, ok := srv.Peer(peer2.Session); return !ok })
	waitFor(t, "the tombstone written", func() bool {
		recs, _, err := readJournal(file + journalSuffix)
		return err == nil && len(recs) == 1 && recs[0].identity == "dev-1"
	})

	// A rewrite leaves exactly the sessions held, however long the
	// journal had grown.
	before, _ := os.Stat(file + journalSuffix)
	journaled := srv.Stats().Journaled
	srv.journal.requestRewrite()
	waitFor(t, "the rewrite", func() bool { return srv.Stats().Journaled > journaled })
	after, _ := os.Stat(file + journalSuffix)
	recs, _, err = readJournal(file + journalSuffix)
	if err != nil || len(recs) != 1 || recs[0].identity != "dev-1" || after.Size() >= before.Size() {
		t.Fatalf("after a rewrite: %d sessions, %v, %d -> %d bytes", len(recs), err, before.Size(), after.Size())
	}
	if st, _ := os.Stat(file + journalSuffix); st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v", st.Mode())
	}
	roundTrip(t, c1, "still there")
}

func sessionOf(t *testing.T, srv *Server, identity string) uint64 {
	t.Helper()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	sess := srv.byIdentity[identity]
	if sess == nil {
		t.Fatalf("no session for %s", identity)
	}
	return sess.id
}

// TestJournalCutShort: a record the crash cut in half ends the journal;
// the complete ones before it are restored. A state that is not an
// established session's is refused by the sequence bump.
func TestJournalCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	a := parkedRecord{id: 1, addr: netip.MustParseAddrPort("127.0.0.1:5000"), identity: "a", state: []byte("s1")}
	b := parkedRecord{id: 2, addr: netip.MustParseAddrPort("127.0.0.1:5001"), identity: "b", state: []byte("s2")}
	buf := append([]byte(journalMagic), a.appendTo(nil)...)
	whole := b.appendTo(nil)
	for cut := 1; cut < len(whole); cut++ {
		if err := os.WriteFile(path, append(bytes.Clone(buf), whole[:cut]...), 0o600); err != nil {
			t.Fatal(err)
		}
		recs, _, err := readJournal(path)
		if err != nil || len(recs) != 1 || recs[0].identity != "a" {
			t.Fatalf("cut at %d: %v %+v", cut, err, recs)
		}
	}
	if _, err := bumpSequence([]byte("s1"), 1); err == nil {
		t.Fatal("a garbage state was bumped")
	}
}

// FuzzReadJournal: the journal decoder never panics and returns only
// sessions with a state, each once.
func FuzzReadJournal(f *testing.F) {
	rec := parkedRecord{id: 7, addr: netip.MustParseAddrPort("127.0.0.1:5000"), identity: "x", state: []byte("st")}
	f.Add(append([]byte(journalMagic), rec.appendTo(nil)...))
	f.Add(append(append([]byte(journalMagic), rec.appendTo(nil)...), parkedRecord{id: 7, addr: rec.addr}.appendTo(nil)...))
	f.Add([]byte("FNXDJRN1\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeJournal(bufio.NewReader(bytes.NewReader(b)))
		if err != nil && recs != nil {
			t.Fatal("sessions with an error")
		}
		seen := map[uint64]bool{}
		for _, r := range recs {
			if r.id == 0 || len(r.state) == 0 || seen[r.id] {
				t.Fatalf("bad record %+v", r)
			}
			seen[r.id] = true
		}
	})
}

// TestJournalRecoversFromFailedWrite: a write that fails (here the file
// cannot be written; on a device, a full disk) may leave part of a record,
// so the next flush rewrites the journal from the sessions held, and
// every session is in it again.
func TestJournalRecoversFromFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dtls-sessions"+journalSuffix)
	a := parkedRecord{id: 1, addr: netip.MustParseAddrPort("127.0.0.1:5000"), identity: "a", state: []byte("s1")}
	b := parkedRecord{id: 2, addr: netip.MustParseAddrPort("127.0.0.1:5001"), identity: "b", state: []byte("s2")}
	var held []parkedRecord
	var mu sync.Mutex
	j, err := openJournal(path, nil, func() []parkedRecord {
		mu.Lock()
		defer mu.Unlock()
		return append([]parkedRecord(nil), held...)
	}, journalSyncEvery, nopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	// Before anything is queued the writer does not touch the file; the
	// queueing below orders this swap before its next use.
	good := j.f
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	j.f = ro
	good.Close()

	mu.Lock()
	held = append(held, a)
	mu.Unlock()
	j.add(a)
	waitFor(t, "the failed write", func() bool { return j.failures.Load() == 1 })

	mu.Lock()
	held = append(held, b)
	mu.Unlock()
	j.add(b)
	waitFor(t, "the rewrite", func() bool { return j.written.Load() == 2 })
	recs, _, err := readJournal(path)
	if ids := identities(recs); err != nil || ids != "ab" && ids != "ba" {
		t.Fatalf("journal after the rewrite: %v %+v", err, recs)
	}
	// And appends work again.
	c := parkedRecord{id: 3, addr: netip.MustParseAddrPort("127.0.0.1:5002"), identity: "c", state: []byte("s3")}
	j.add(c)
	waitFor(t, "the append", func() bool { return j.written.Load() == 3 })
	if recs, _, err := readJournal(path); err != nil || len(recs) != 3 || j.failures.Load() != 1 {
		t.Fatalf("journal after the append: %v %d records, %d failures", err, len(recs), j.failures.Load())
	}
}

// TestJournalSyncsOncePerInterval: records reach the file as they come,
// so a killed process loses none of them, but they are fsynced at most
// once per interval (here one that never passes) and at the stop.
func TestJournalSyncsOncePerInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dtls-sessions"+journalSuffix)
	j, err := openJournal(path, nil, func() []parkedRecord { return nil }, time.Hour, nopLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		j.add(parkedRecord{id: uint64(i + 1), addr: netip.MustParseAddrPort("127.0.0.1:5000"), identity: fmt.Sprint(i), state: []byte("s")})
		waitFor(t, "the record in the file", func() bool {
			recs, _, err := readJournal(path)
			return err == nil && len(recs) == i+1
		})
	}
	// The first record finds no fsync in the last hour (the rewrite at
	// the open is not counted): it is fsynced at once, the others wait.
	if n, w := j.syncs.Load(), j.written.Load(); n != 1 || w != 1 {
		t.Fatalf("before the stop: %d fsyncs, %d records durable; want 1 and 1", n, w)
	}
	j.close()
	if n, w := j.syncs.Load(), j.written.Load(); n != 2 || w != 10 {
		t.Fatalf("after the stop: %d fsyncs, %d records durable; want 2 and 10", n, w)
	}
}

func identities(recs []parkedRecord) string {
	var s string
	for _, r := range recs {
		s += r.identity
	}
	return s
}

// FuzzBumpSequence: a journalled state that is not pion's (a damaged
// journal) is refused, never a panic; one that is accepted moves on by
// exactly the amount asked.
func FuzzBumpSequence(f *testing.F) {
	var st pionState
	st.HandshakeComplete, st.MasterSecret, st.SequenceNumber = true, []byte("secret"), 7
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(st); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes(), uint64(crashSeqMargin))
	f.Add([]byte("garbage"), uint64(1))
	f.Fuzz(func(t *testing.T, state []byte, n uint64) {
		before, err := stateSequence(state)
		out, berr := bumpSequence(state, n)
		if berr != nil {
			return
		}
		after, err2 := stateSequence(out)
		if err != nil || err2 != nil || after != before+n || after > maxSeq {
			t.Fatalf("bumped %d by %d to %d (%v, %v)", before, n, after, err, err2)
		}
	})
}

// stateSequence reads the local record sequence number of a serialised
// state.
func stateSequence(state []byte) (uint64, error) {
	var st pionState
	if err := gob.NewDecoder(bytes.NewReader(state)).Decode(&st); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	return st.SequenceNumber, nil
}
