package dtls

import (
	"bytes"
	"encoding/gob"
	"fmt"
)

// crashSeqMargin is how far a session restored from the crash journal
// moves its record sequence number on. The journal holds a snapshot taken
// while the connection kept sending, so records numbered above the snapshot
// may already have left with the same keys; reusing their numbers would
// reuse AEAD nonces (the explicit nonce of the CCM and GCM suites is the
// epoch and sequence number, RFC 6655 §3, RFC 5288 §3). A session sends
// fewer than resnapshotAfter records between two journalled snapshots
// (session.noteSent), far below this margin. The 48-bit sequence space
// (RFC 6347 §4.1) allows 65,536 such restarts of one session; the peer's
// replay window accepts the jump (RFC 6347 §4.1.2.6: newer numbers move
// the window on).
const crashSeqMargin = 1 << 32

// resnapshotAfter is how many records a session may send after its last
// journalled snapshot before it journals a new one.
const resnapshotAfter = 1 << 30

// maxSeq is the largest DTLS 1.2 record sequence number (48 bits).
const maxSeq = 1<<48 - 1

// pionState has the field names and types of the state pion/dtls v3
// serialises in State.MarshalBinary: an encoding/gob stream, which matches
// fields by name. Only SequenceNumber is changed here; every other field
// is carried through unchanged (TestStateBumpKeepsSession resumes a bumped
// state against a real client, PSK and certificate, with and without CID).
type pionState struct {
	RemoteSequenceNumber  uint64
	HandshakeComplete     bool
	LocalEpoch            uint16
	RemoteEpoch           uint16
	LocalRandom           [32]byte
	RemoteRandom          [32]byte
	CipherSuiteID         uint16
	MasterSecret          []byte
	SequenceNumber        uint64
	SRTPProtectionProfile uint16
	PeerCertificates      [][]byte
	IdentityHint          []byte
	SessionID             []byte
	LocalConnectionID     []byte
	RemoteConnectionID    []byte
	IsClient              bool
	NegotiatedProtocol    string
}

// bumpSequence returns the serialised state with its local (sending)
// record sequence number moved on by n.
func bumpSequence(state []byte, n uint64) ([]byte, error) {
	var st pionState
	if err := gob.NewDecoder(bytes.NewReader(state)).Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if !st.HandshakeComplete || len(st.MasterSecret) == 0 {
		return nil, fmt.Errorf("%w: not an established session", ErrBadState)
	}
	if st.SequenceNumber > maxSeq-n {
		return nil, fmt.Errorf("%w: sequence numbers exhausted", ErrBadState)
	}
	st.SequenceNumber += n
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	return buf.Bytes(), nil
}
