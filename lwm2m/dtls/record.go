package dtls

import (
	"encoding/binary"
	"errors"
)

// DTLS 1.2 record layer constants (RFC 6347 §4.1, RFC 9146 §4).
const (
	contentHandshake = 22
	contentAppData   = 23
	contentCID       = 25 // tls12_cid, RFC 9146 §4

	handshakeClientHello = 1
	handshakeServerHello = 2

	recordHeaderLen = 13 // type(1) version(2) epoch(2) sequence(6) length(2)

	// cidLen is the length of every Connection ID this server assigns. The
	// CID's length is not on the wire (RFC 9146 §4), so the demultiplexer
	// can only find it with one fixed length. The CID is the session id.
	cidLen = 8

	versionDTLS12Major = 0xfe
	versionDTLS12Minor = 0xfd
	versionDTLS10Minor = 0xff
)

var errShortRecord = errors.New("dtls: record shorter than its header")

// recordHeader is what the demultiplexer needs from the first record of a
// datagram.
type recordHeader struct {
	contentType uint8
	version     uint16
	epoch       uint16
	cid         []byte // set for tls12_cid records (aliases the datagram)
	length      int    // fragment length
	headerLen   int
}

// parseRecordHeader reads one DTLS record header at the start of b. For a
// tls12_cid record it takes cidLen bytes of Connection ID after the sequence
// number (RFC 9146 §4).
func parseRecordHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderLen {
		return recordHeader{}, errShortRecord
	}
	h := recordHeader{
		contentType: b[0],
		version:     binary.BigEndian.Uint16(b[1:3]),
		epoch:       binary.BigEndian.Uint16(b[3:5]),
		headerLen:   recordHeaderLen,
	}
	off := 11
	if h.contentType == contentCID {
		if len(b) < recordHeaderLen+cidLen {
			return recordHeader{}, errShortRecord
		}
		h.cid = b[off : off+cidLen]
		off += cidLen
		h.headerLen += cidLen
	}
	h.length = int(binary.BigEndian.Uint16(b[off : off+2]))
	if len(b) < h.headerLen+h.length {
		return recordHeader{}, errShortRecord
	}
	return h, nil
}

// isClientHello reports whether the record at the start of b is an epoch-0
// handshake record carrying (the first fragment of) a ClientHello.
func isClientHello(b []byte) bool {
	h, err := parseRecordHeader(b)
	if err != nil || h.contentType != contentHandshake || h.epoch != 0 || h.length < 1 {
		return false
	}
	return b[h.headerLen] == handshakeClientHello
}

// isServerHello reports whether the first record of b is an epoch-0
// handshake record carrying a ServerHello.
func isServerHello(b []byte) bool {
	h, err := parseRecordHeader(b)
	if err != nil || h.contentType != contentHandshake || h.epoch != 0 || h.length < 1 {
		return false
	}
	return b[h.headerLen] == handshakeServerHello
}

// fixClientHelloVersions rewrites, in place, the record-layer version of
// every epoch-0 ClientHello record in the datagram to DTLS 1.2 and reports
// whether it changed anything.
//
// Some mbedTLS 2.x clients put a version other than DTLS 1.2 (0xfefd) or
// DTLS 1.0 (0xfeff) in the record header of their first ClientHello while
// offering DTLS 1.2 inside the hello. RFC 6347 §4.1 lets a server accept
// any record version on the ClientHello (as TLS servers do, RFC 5246
// Appendix E.1); pion discards such records, so the version is normalised
// here before pion sees it. The version negotiated is still the one inside
// the ClientHello.
func fixClientHelloVersions(b []byte) bool {
	changed := false
	for len(b) >= recordHeaderLen {
		h, err := parseRecordHeader(b)
		if err != nil {
			return changed
		}
		if h.contentType == contentHandshake && h.epoch == 0 && h.length >= 1 &&
			b[h.headerLen] == handshakeClientHello &&
			!knownRecordVersion(b[1], b[2]) {
			b[1], b[2] = versionDTLS12Major, versionDTLS12Minor
			changed = true
		}
		b = b[h.headerLen+h.length:]
	}
	return changed
}

// knownRecordVersion reports the record versions pion accepts: DTLS 1.2
// and DTLS 1.0 (RFC 6347 §4.2.1 allows 1.0 on the first ClientHello).
func knownRecordVersion(major, minor byte) bool {
	return major == versionDTLS12Major && (minor == versionDTLS12Minor || minor == versionDTLS10Minor)
}

// sessionIDFromCID turns a CID this server assigned back into its session
// id; ok is false for a CID of the wrong length or the reserved zero id.
func sessionIDFromCID(cid []byte) (uint64, bool) {
	if len(cid) != cidLen {
		return 0, false
	}
	id := binary.BigEndian.Uint64(cid)
	return id, id != 0
}

func cidForSession(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, cidLen), id)
}
