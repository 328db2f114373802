package dtls

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Stateless HelloVerifyRequest (RFC 6347 §4.2.1), used while a flood is on.
//
// pion answers a ClientHello with its own HelloVerifyRequest, but it keeps
// the cookie in a handshake it has already made, so a flood of ClientHellos
// from spoofed addresses fills Config.MaxHandshakes. From
// Config.HelloCookieAt handshakes in progress on, a ClientHello from an
// address not yet verified makes no state at all: it is answered here with
// a HelloVerifyRequest whose cookie is an HMAC of the client's address and
// its hello (version, random, session id) under a secret that changes every
// cookieRotate. A ClientHello that returns a valid cookie proves the
// address, which is remembered for verifiedFor.
//
// pion cannot continue a handshake whose cookie it did not make: its server
// takes only a ClientHello with message_seq 0 and its own cookie, and the
// retried ClientHello is part of the Finished hash (RFC 6347 §4.2.6), so it
// cannot be rewritten. The verified client is therefore told to start over
// (a fatal handshake_failure alert, RFC 5246 §7.2.2); its next ClientHello
// comes from a verified address and goes to pion as usual. Only verified
// addresses ever hold handshake state during a flood, so spoofed hellos
// cannot crowd real devices out however fast they come; the price is one
// restarted handshake for a device that arrives during a flood.

const (
	cookieLen       = 20
	cookieRotate    = 30 * time.Second
	verifiedFor     = time.Minute
	maxVerified     = 1 << 16
	handshakeHVR    = 3  // hello_verify_request
	contentAlert    = 21 // RFC 5246 §6.2.1
	alertFatal      = 2
	alertHandshake  = 40 // handshake_failure
	handshakeHdrLen = 12 // type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
)

// cookieJar makes and checks stateless cookies and remembers the
// addresses that returned one.
type cookieJar struct {
	mu       sync.Mutex
	secret   [32]byte
	previous [32]byte
	rotated  time.Time
	verified map[netip.Addr]time.Time
}

// helloFields are the parts of a ClientHello the cookie covers, and where
// its cookie is.
type helloFields struct {
	recordSeq [6]byte // echoed in the HelloVerifyRequest (RFC 6347 §4.2.1)
	params    []byte  // client_version, random, session_id (with its length)
	cookie    []byte
}

// parseHello reads an unfragmented ClientHello in the first record of b.
func parseHello(b []byte) (helloFields, bool) {
	var f helloFields
	h, err := parseRecordHeader(b)
	if err != nil || h.contentType != contentHandshake || h.epoch != 0 || h.cid != nil {
		return f, false
	}
	copy(f.recordSeq[:], b[5:11])
	m := b[h.headerLen : h.headerLen+h.length]
	if len(m) < handshakeHdrLen || m[0] != handshakeClientHello {
		return f, false
	}
	length := uint24(m[1:4])
	if uint24(m[6:9]) != 0 || uint24(m[9:12]) != length || len(m) < handshakeHdrLen+length {
		return f, false // fragmented: a flood gets no reassembly
	}
	body := m[handshakeHdrLen : handshakeHdrLen+length]
	const fixed = 2 + 32 // client_version, random
	if len(body) < fixed+1 {
		return f, false
	}
	sid := int(body[fixed])
	if len(body) < fixed+1+sid+1 {
		return f, false
	}
	f.params = body[:fixed+1+sid]
	n := int(body[fixed+1+sid])
	if len(body) < fixed+1+sid+1+n {
		return f, false
	}
	f.cookie = body[fixed+1+sid+1 : fixed+1+sid+1+n]
	return f, true
}

func uint24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// rotateLocked replaces the secret every cookieRotate; a cookie made with
// the one before still verifies.
func (j *cookieJar) rotateLocked(now time.Time) {
	if now.Sub(j.rotated) < cookieRotate {
		return
	}
	fresh := j.rotated.IsZero() || now.Sub(j.rotated) >= 2*cookieRotate
	j.previous = j.secret
	_, _ = rand.Read(j.secret[:])
	if fresh {
		j.previous = j.secret
	}
	j.rotated = now
}

func cookieFor(secret *[32]byte, from netip.AddrPort, params []byte) []byte {
	mac := hmac.New(sha256.New, secret[:])
	addr, _ := from.MarshalBinary()
	mac.Write(addr)
	mac.Write(params)
	return mac.Sum(nil)[:cookieLen]
}

// cookie returns the cookie for a hello from an address now.
func (j *cookieJar) cookie(from netip.AddrPort, params []byte, now time.Time) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateLocked(now)
	return cookieFor(&j.secret, from, params)
}

// check reports whether a hello returns a valid cookie, and if so
// remembers its address as verified.
func (j *cookieJar) check(from netip.AddrPort, f helloFields, now time.Time) bool {
	if len(f.cookie) != cookieLen {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateLocked(now)
	if !hmac.Equal(f.cookie, cookieFor(&j.secret, from, f.params)) &&
		!hmac.Equal(f.cookie, cookieFor(&j.previous, from, f.params)) {
		return false
	}
	if j.verified == nil {
		j.verified = make(map[netip.Addr]time.Time)
	}
	if len(j.verified) >= maxVerified {
		j.expireLocked(now)
	}
	if len(j.verified) < maxVerified {
		j.verified[from.Addr()] = now.Add(verifiedFor)
	}
	return true
}

// isVerified reports an address that returned a cookie lately.
func (j *cookieJar) isVerified(a netip.Addr, now time.Time) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	until, ok := j.verified[a]
	return ok && now.Before(until)
}

func (j *cookieJar) expireLocked(now time.Time) {
	for a, until := range j.verified {
		if !now.Before(until) {
			delete(j.verified, a)
		}
	}
}

// helloVerifyRequest is the datagram answering a hello: record version
// and server_version DTLS 1.0 (RFC 6347 §4.2.1), the hello's record
// sequence number, message_seq 0.
func helloVerifyRequest(f helloFields, cookie []byte) []byte {
	body := append([]byte{versionDTLS12Major, versionDTLS10Minor, byte(len(cookie))}, cookie...)
	return handshakeRecord(f.recordSeq, handshakeHVR, body)
}

func handshakeRecord(seq [6]byte, typ byte, body []byte) []byte {
	n := len(body)
	b := make([]byte, 0, recordHeaderLen+handshakeHdrLen+n)
	b = append(b, contentHandshake, versionDTLS12Major, versionDTLS10Minor, 0, 0)
	b = append(b, seq[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(handshakeHdrLen+n))
	b = append(b, typ, byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, 0, 0, byte(n>>16), byte(n>>8), byte(n))
	return append(b, body...)
}

// restartAlert is the fatal alert that makes a verified client start its
// handshake again.
func restartAlert(seq [6]byte) []byte {
	b := []byte{contentAlert, versionDTLS12Major, versionDTLS12Minor, 0, 0}
	b = append(b, seq[:]...)
	return append(b, 0, 2, alertFatal, alertHandshake)
}
