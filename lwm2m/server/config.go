package server

import (
	"log/slog"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Config holds the server's protocol settings.
type Config struct {
	// DefaultLifetime applies when a Register has no lt= (Core §6.2.1:
	// 86400 s).
	DefaultLifetime time.Duration
	// ExpiryGrace is added to a registration's lifetime before it expires,
	// so a device whose Update is a little late is not dropped.
	ExpiryGrace time.Duration
	// AwakeWindow is how long a queue-mode device takes requests after an
	// uplink (Core §6.5: MAX_TRANSMIT_WAIT, 93 s, by default).
	AwakeWindow time.Duration
	// RequestTimeout bounds device requests whose context has no deadline.
	RequestTimeout time.Duration
	// MaxLinksSize bounds a Register/Update payload; larger gets 4.13.
	MaxLinksSize int
	// CoAP configures the endpoints Serve creates.
	CoAP coap.Config
}

// DefaultConfig returns the defaults of the TS.
func DefaultConfig() Config {
	return Config{
		DefaultLifetime: 86400 * time.Second,
		ExpiryGrace:     30 * time.Second,
		AwakeWindow:     93 * time.Second,
		RequestTimeout:  93 * time.Second,
		MaxLinksSize:    64 << 10,
		CoAP:            coap.DefaultConfig(),
	}
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (scoped with component=lwm2m-server).
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.baseLog = l
			s.log = l.With("component", "lwm2m-server")
		}
	}
}

// WithHandler sets the events handler (NopHandler by default).
func WithHandler(h Handler) Option {
	return func(s *Server) {
		if h != nil {
			s.h = h
		}
	}
}

// WithRegistry sets the object models used to type decoded values (the
// built-in models of lwm2m.NewRegistry by default); the appliance passes
// its registry with the vendor DDFs it loaded.
func WithRegistry(r *lwm2m.Registry) Option {
	return func(s *Server) {
		if r != nil {
			s.reg = r
		}
	}
}
