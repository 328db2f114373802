package server

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Server is an LwM2M server. Create it with New, add extra CoAP routes with
// Handle, and run it on one or more transports with Serve (plain CoAP and
// DTLS at once share registrations).
type Server struct {
	cfg     Config
	h       Handler
	persist Persister
	reg     *lwm2m.Registry
	log     *slog.Logger
	baseLog *slog.Logger

	mu     sync.Mutex
	closed bool
	byID   map[string]*registration
	byEP   map[string]*registration
	byPeer map[coap.PeerKey]*registration
	routes []route
	eps    map[*coap.Endpoint]struct{}
	// attached closes, and is replaced, each time Serve takes a transport.
	attached chan struct{}
	queued   int // requests waiting for a queue-mode device
	// pending holds the ids of Registers being handled (accepted by
	// the Handler, not stored yet), for AwaitRegistration; the channel
	// closes once the Register is refused, or stored and answered.
	pending map[string]chan struct{}

	// awake is Config.AwakeWindow, changeable while running.
	awake atomic.Int64

	st counters
}

// SetAwakeWindow changes how long a queue-mode device is taken to listen
// after an uplink (Core §6.5), from its next uplink on.
func (s *Server) SetAwakeWindow(d time.Duration) {
	if d > 0 {
		s.awake.Store(int64(d))
	}
}

// AwakeWindow is the queue-mode window in force.
func (s *Server) AwakeWindow() time.Duration { return s.awakeWindow() }

func (s *Server) awakeWindow() time.Duration { return time.Duration(s.awake.Load()) }

type route struct {
	prefix string
	h      coap.Handler
}

// registration is the server's live state of one registration; snap is
// guarded by Server.mu.
type registration struct {
	snap     Registration
	ep       *coap.Endpoint
	obs      map[string]*Observation // by token
	awake    time.Time               // queue mode: requests may go until then
	wake     chan struct{}           // requests queued for an uplink wait on it; nil when none waits
	timer    *time.Timer             // expiry
	finished bool
	// ctx ends with the registration; requests to the device are bound
	// to it (regctx.go). Made on first use; guarded by Server.mu.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// New returns a server; start it with Serve.
func New(cfg Config, opts ...Option) *Server {
	d := DefaultConfig()
	if cfg.DefaultLifetime <= 0 {
		cfg.DefaultLifetime = d.DefaultLifetime
	}
	if cfg.ExpiryGrace < 0 {
		cfg.ExpiryGrace = 0
	}
	if cfg.AwakeWindow <= 0 {
		cfg.AwakeWindow = d.AwakeWindow
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.MaxLinksSize <= 0 {
		cfg.MaxLinksSize = d.MaxLinksSize
	}
	s := &Server{
		cfg:      cfg,
		h:        NopHandler{},
		persist:  nopPersister{},
		reg:      lwm2m.NewRegistry(),
		log:      slog.New(slog.DiscardHandler),
		byID:     make(map[string]*registration),
		byEP:     make(map[string]*registration),
		byPeer:   make(map[coap.PeerKey]*registration),
		pending:  make(map[string]chan struct{}),
		eps:      make(map[*coap.Endpoint]struct{}),
		attached: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.awake.Store(int64(s.cfg.AwakeWindow))
	return s
}

// Handle serves CoAP requests whose path starts with prefix (for example
// "/fw/") with h, on every transport, before the LwM2M routes. Call it
// before Serve.
func (s *Server) Handle(prefix string, h coap.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = append(s.routes, route{prefix: prefix, h: h})
}

// Serve runs the server on t until ctx ends or t fails, and closes t. It
// may be called for several transports at once. When the last Serve
// returns because ctx ended, registrations are kept: a restart of the
// listener does not log devices out.
func (s *Server) Serve(ctx context.Context, t coap.Transport) error {
	var opts []coap.EndpointOption
	if s.baseLog != nil {
		opts = append(opts, coap.WithLogger(s.baseLog))
	}
	ep := coap.NewEndpoint(t, coap.HandlerFunc(s.serveCoAP), s.cfg.CoAP, opts...)
	s.mu.Lock()
	s.eps[ep] = struct{}{}
	s.attachServeLocked(ep)
	close(s.attached)
	s.attached = make(chan struct{})
	s.mu.Unlock()
	s.log.Info("listening", "addr", t.LocalAddr().String())
	err := ep.Run(ctx)
	s.mu.Lock()
	delete(s.eps, ep)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("server: %s: %w", t.LocalAddr(), err)
	}
	return nil
}

// Serving waits until Serve has taken t. From then on the server's own
// requests can go out on t (TriggerUpdate, reads of restored
// registrations); before, a request to a device on t finds no route.
func (s *Server) Serving(ctx context.Context, t coap.Transport) error {
	for {
		s.mu.Lock()
		for ep := range s.eps {
			if ep.Transport() == t {
				s.mu.Unlock()
				return nil
			}
		}
		ch := s.attached
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("server: waiting for %s to be served: %w", t.LocalAddr(), ctx.Err())
		}
	}
}

// Close ends the server's bookkeeping: requests waiting for queue-mode
// devices fail with ErrClosed and registrations stop expiring, without
// Deregistered events or Persister deletions (a restarted server gets
// them back through Restore). Stop the transports by cancelling the
// contexts given to Serve.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, r := range s.byID {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.wakeLocked()
	}
	return nil
}

// serveCoAP routes an incoming request.
func (s *Server) serveCoAP(ctx context.Context, r *coap.Request) *coap.Response {
	path := r.Message.Path()
	s.mu.Lock()
	routes := s.routes
	s.mu.Unlock()
	for _, rt := range routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt.h.ServeCoAP(ctx, r)
		}
	}
	segs := r.Message.PathSegments()
	switch {
	case len(segs) == 1 && segs[0] == "rd":
		if r.Message.Code != coap.POST {
			return coap.ErrorResponse(coap.MethodNotAllowed, "Register is POST /rd")
		}
		return s.register(ctx, r)
	case len(segs) == 2 && segs[0] == "rd":
		switch r.Message.Code {
		case coap.POST:
			return s.update(ctx, r, segs[1])
		case coap.DELETE:
			return s.deregister(ctx, r, segs[1])
		}
		return coap.ErrorResponse(coap.MethodNotAllowed, "Update is POST, De-register is DELETE")
	case len(segs) == 1 && segs[0] == "dp":
		if r.Message.Code != coap.POST {
			return coap.ErrorResponse(coap.MethodNotAllowed, "Send is POST /dp")
		}
		return s.send(ctx, r)
	}
	return coap.ErrorResponse(coap.NotFound, "no such resource")
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newID() string {
	var b [5]byte
	_, _ = crand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// Registration returns a snapshot of the endpoint's current registration.
func (s *Server) Registration(endpoint string) (*Registration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.byEP[endpoint]
	if r == nil {
		return nil, false
	}
	snap := r.snapshot()
	return snap, true
}

// IsRegistered reports whether the endpoint has a current registration,
// without Registration's snapshot of it.
func (s *Server) IsRegistered(endpoint string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byEP[endpoint] != nil
}

// Registrations returns snapshots of all current registrations.
func (s *Server) Registrations() []*Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Registration, 0, len(s.byEP))
	for _, r := range s.byEP {
		out = append(out, r.snapshot())
	}
	return out
}

// wakeChanLocked is the channel a request queued for the device's next
// uplink waits on; s.mu is held. It is made only when a request waits, so
// an uplink with nobody waiting allocates nothing (issue 15).
func (r *registration) wakeChanLocked() chan struct{} {
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}

// wakeLocked wakes the requests queued for the device; s.mu is held.
func (r *registration) wakeLocked() {
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
}

// view copies the registration for a handler of a notification or a Send:
// its slices are shared (see Registration), so a message costs one
// allocation, not one per announced object (issue 15). s.mu is held.
func (r *registration) view() *Registration {
	c := r.snap
	return &c
}

// snapshot copies the registration; s.mu is held.
func (r *registration) snapshot() *Registration {
	c := r.snap
	c.Objects = make([]lwm2m.RegisteredObject, len(r.snap.Objects))
	for i, o := range r.snap.Objects {
		o.Instances = append([]uint16(nil), o.Instances...)
		c.Objects[i] = o
	}
	c.ContentFormats = append([]lwm2m.Format(nil), r.snap.ContentFormats...)
	return &c
}

type counters struct {
	registrations, updates, deregistrations, expirations, replaced, refused,
	notifications, notificationDrops, sends, sendDrops, requests, requestErrors atomic.Uint64
}

// Stats are the server's counters for /metrics; the CoAP figures are summed
// over the running endpoints.
type Stats struct {
	Registered        int    // current registrations
	Registrations     uint64 // accepted Registers
	Updates           uint64
	Deregistrations   uint64 // explicit De-registers
	Expirations       uint64
	Replaced          uint64 // registrations replaced by a new Register
	Refused           uint64 // Registers refused (handler or malformed)
	Notifications     uint64 // notifications delivered to the handler
	NotificationDrops uint64 // notifications the handler refused (5.03) or could not decode
	Sends             uint64
	SendDrops         uint64
	Requests          uint64 // requests sent to devices
	RequestErrors     uint64 // of which failed (timeouts, error codes)
	Observations      int    // active observations
	Queued            int    // requests waiting for a queue-mode device to wake
	CoAP              coap.Stats
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Registrations: s.st.registrations.Load(), Updates: s.st.updates.Load(),
		Deregistrations: s.st.deregistrations.Load(), Expirations: s.st.expirations.Load(),
		Replaced: s.st.replaced.Load(), Refused: s.st.refused.Load(),
		Notifications: s.st.notifications.Load(), NotificationDrops: s.st.notificationDrops.Load(),
		Sends: s.st.sends.Load(), SendDrops: s.st.sendDrops.Load(),
		Requests: s.st.requests.Load(), RequestErrors: s.st.requestErrors.Load(),
	}
	s.mu.Lock()
	st.Registered = len(s.byEP)
	st.Queued = s.queued
	for _, r := range s.byEP {
		st.Observations += len(r.obs)
	}
	eps := make([]*coap.Endpoint, 0, len(s.eps))
	for e := range s.eps {
		eps = append(eps, e)
	}
	s.mu.Unlock()
	for _, e := range eps {
		c := e.Stats()
		a := &st.CoAP
		a.Received += c.Received
		a.Sent += c.Sent
		a.Requests += c.Requests
		a.Notifications += c.Notifications
		a.Duplicates += c.Duplicates
		a.Retransmissions += c.Retransmissions
		a.Timeouts += c.Timeouts
		a.Resets += c.Resets
		a.Rejected += c.Rejected
		a.RateLimited += c.RateLimited
		a.Malformed += c.Malformed
		a.Overloaded += c.Overloaded
		a.StaleNotifications += c.StaleNotifications
		a.WriteErrors += c.WriteErrors
		a.PeerBusy += c.PeerBusy
		a.Trimmed += c.Trimmed
		a.DedupEvicted += c.DedupEvicted
		a.Queued += c.Queued
		a.Waiting += c.Waiting
		a.Peers += c.Peers
		a.Exchanges += c.Exchanges
		a.Pending += c.Pending
		a.Observations += c.Observations
		a.Dedup += c.Dedup
	}
	return st
}
