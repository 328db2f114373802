package dtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	pion "github.com/pion/dtls/v3"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// DefaultCipherSuites are the suites LwM2M devices use (Transport 1.1 §5.2.8.1
// mandates the CCM_8 ones; Zephyr and nRF91 offer the GCM ones too).
var defaultCipherSuites = []pion.CipherSuiteID{
	pion.TLS_PSK_WITH_AES_128_CCM_8,
	pion.TLS_PSK_WITH_AES_128_GCM_SHA256,
	pion.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
	pion.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
}

// DefaultCipherSuites returns a fresh copy of the default suite list.
func DefaultCipherSuites() []pion.CipherSuiteID {
	return append([]pion.CipherSuiteID(nil), defaultCipherSuites...)
}

// Config configures a Server.
type Config struct {
	// PSK returns the key for a PSK identity, or an error wrapping
	// ErrUnknownIdentity. Nil disables the PSK suites.
	PSK func(identity string) ([]byte, error)
	// Certificate is the server's chain and key; nil disables the
	// certificate suites.
	Certificate *tls.Certificate
	// ClientCAs verify device certificates (the appliance CA and imported
	// CAs). A certificate client must present one that chains to them.
	ClientCAs *x509.CertPool
	// VerifyPeer, when set, is called with the verified device certificate
	// at handshake time; an error (e.g. revoked) ends the handshake.
	VerifyPeer func(cert *x509.Certificate) error
	// CipherSuites overrides DefaultCipherSuites.
	CipherSuites []pion.CipherSuiteID

	// ParkAfter is how long an established session may be idle before it
	// is parked (its state exported, its connection dropped).
	ParkAfter time.Duration
	// MaxLive is how many sessions may hold a live connection (about 60 KB
	// and 4 goroutines each) before the longest-idle ones are parked
	// early, after one idle second instead of ParkAfter.
	MaxLive int
	// SessionLifetime is how long a parked session is kept without
	// traffic; a device quiet for longer must handshake again. It should
	// exceed the longest registration lifetime in use.
	SessionLifetime time.Duration
	// HandshakeTimeout bounds one handshake, retransmissions included.
	HandshakeTimeout time.Duration
	// HelloTimeout ends a handshake whose client sent nothing after its
	// first ClientHello (it never answered the HelloVerifyRequest).
	HelloTimeout time.Duration
	// MaxSessions caps established plus parked sessions; new handshakes
	// are refused above it.
	MaxSessions int
	// MaxHandshakes caps handshakes in progress; further ClientHellos are
	// dropped (the client retransmits).
	MaxHandshakes int
	// HelloCookieAt is how many handshakes in progress make the server
	// answer ClientHellos from unverified addresses with a stateless
	// HelloVerifyRequest (cookie.go) instead of starting a handshake:
	// a flood. 0 takes the default, MaxHandshakes/4; a negative value
	// does it always.
	HelloCookieAt int
	// SessionFile, when set, keeps sessions across restarts: Close
	// writes every session there (0600) and New reads and deletes it.
	// SessionFile+".journal" keeps them across a crash (journal.go). Both
	// hold session keys; put them in the data dir.
	SessionFile string
	// MTU is passed to pion for handshake fragmentation.
	MTU int
	// ReadBuffer is the UDP receive buffer to ask for, in bytes
	// (DefaultConfig: coap.DefaultReadBuffer; 0 keeps the kernel's
	// default; see coap.SetReadBuffer).
	ReadBuffer int
	// Logger receives handshake failures and session events.
	Logger *slog.Logger
	// OnEvent, when set, is called (synchronously, keep it short) on each
	// session event: for audit logs, metrics and tests.
	OnEvent func(Event)
}

// EventKind says what happened to a session.
type EventKind int

// Session events.
const (
	EventEstablished EventKind = iota + 1 // handshake completed
	EventFailed                           // handshake refused or timed out; Err says why
	EventClosed                           // the peer closed the session (close_notify, fatal alert)
	EventReplaced                         // a newer handshake of the same identity or address replaced it
)

func (k EventKind) String() string {
	switch k {
	case EventEstablished:
		return "established"
	case EventFailed:
		return "failed"
	case EventClosed:
		return "closed"
	case EventReplaced:
		return "replaced"
	}
	return "unknown"
}

// Event reports a session event. For a failed handshake Peer.Identity is
// the known PSK identity the client offered when Err is ErrKeyMismatch,
// and empty otherwise.
type Event struct {
	Kind EventKind
	Peer coap.Peer
	Err  error
}

// DefaultConfig returns the settings used by the appliance.
func DefaultConfig() Config {
	return Config{
		ParkAfter:        30 * time.Second,
		MaxLive:          500,
		SessionLifetime:  72 * time.Hour,
		HandshakeTimeout: 30 * time.Second,
		HelloTimeout:     5 * time.Second,
		MaxSessions:      200_000,
		MaxHandshakes:    1024,
		MTU:              1280,
		ReadBuffer:       coap.DefaultReadBuffer,
	}
}

func (c *Config) normalise() error {
	d := DefaultConfig()
	if c.PSK == nil && c.Certificate == nil {
		return ErrNoCredentials
	}
	if c.ParkAfter <= 0 {
		c.ParkAfter = d.ParkAfter
	}
	if c.MaxLive <= 0 {
		c.MaxLive = d.MaxLive
	}
	if c.SessionLifetime <= 0 {
		c.SessionLifetime = d.SessionLifetime
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = d.HelloTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = d.MaxHandshakes
	}
	if c.HelloCookieAt == 0 {
		c.HelloCookieAt = max(1, c.MaxHandshakes/4)
	}
	if c.MTU <= 0 {
		c.MTU = d.MTU
	}

	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.CipherSuites) == 0 {
		c.CipherSuites = DefaultCipherSuites()
	}
	// pion refuses a certificate suite without a certificate and a PSK
	// suite without a callback; keep only what is configured.
	var suites []pion.CipherSuiteID
	for _, s := range c.CipherSuites {
		if isPSKSuite(s) && c.PSK == nil || !isPSKSuite(s) && c.Certificate == nil {
			continue
		}
		suites = append(suites, s)
	}
	if len(suites) == 0 {
		return fmt.Errorf("dtls: none of the configured cipher suites fits the credentials: %w", ErrNoCredentials)
	}
	c.CipherSuites = suites
	return nil
}

func isPSKSuite(id pion.CipherSuiteID) bool {
	switch id {
	case pion.TLS_PSK_WITH_AES_128_CCM, pion.TLS_PSK_WITH_AES_128_CCM_8,
		pion.TLS_PSK_WITH_AES_256_CCM_8, pion.TLS_PSK_WITH_AES_128_GCM_SHA256,
		pion.TLS_PSK_WITH_AES_128_CBC_SHA256, pion.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
		pion.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, pion.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}
