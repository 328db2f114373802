package webui

import (
	"crypto/tls"
	"net"
	"time"
)

// Config is the server's configuration. Start from DefaultConfig.
type Config struct {
	// Listen is the plain-HTTP address. When TLS is set it only redirects
	// to HTTPS (first setup happens before a certificate exists).
	Listen string
	// TLSListen is the HTTPS address, used when TLS is set.
	TLSListen string
	// TLS turns HTTPS on; the appliance fills it from its CA.
	TLS *tls.Config

	SessionIdle     time.Duration // a session unused this long ends
	SessionAbsolute time.Duration // and every session ends after this

	LoginFailures int           // failures per user or address within LoginWindow before lockout
	LoginWindow   time.Duration // window in which failures are counted
	LoginLockout  time.Duration // how long a locked user or address waits

	MaxBody   int64 // JSON and form bodies
	MaxUpload int64 // firmware, backups, self-update binaries

	MaxWait     time.Duration // cap on ?wait= for operations
	QueueWindow time.Duration // a queue-mode device seen this recently is awake, else sleeping
	EnrollTTL   time.Duration // how long the wizard keeps fresh credentials for the bundle download
}

// DefaultConfig returns the defaults: HTTP on :8080, sessions idle 30 min and
// at most 12 h, lockout of 15 min after 5 failures in 15 min.
func DefaultConfig() Config {
	return Config{
		Listen:          ":8080",
		TLSListen:       ":8443",
		SessionIdle:     30 * time.Minute,
		SessionAbsolute: 12 * time.Hour,
		LoginFailures:   5,
		LoginWindow:     15 * time.Minute,
		LoginLockout:    15 * time.Minute,
		MaxBody:         1 << 20,
		MaxUpload:       256 << 20,
		MaxWait:         120 * time.Second,
		QueueWindow:     60 * time.Second,
		EnrollTTL:       30 * time.Minute,
	}
}

// Option changes how New builds the server.
type Option func(*Server)

// WithListener serves plain HTTP on an existing listener (systemd socket
// activation, tests) instead of listening on cfg.Listen.
func WithListener(l net.Listener) Option { return func(s *Server) { s.httpLn = l } }

// WithTLSListener serves HTTPS on an existing listener.
func WithTLSListener(l net.Listener) Option { return func(s *Server) { s.tlsLn = l } }

// WithClock replaces time.Now (tests of timeouts and lockouts).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithVersion sets the version shown when System is nil.
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }
