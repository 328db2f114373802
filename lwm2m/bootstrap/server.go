package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Request is a device's Bootstrap-Request.
type Request struct {
	// Endpoint is the "ep" parameter.
	Endpoint string
	// Peer is who sent it; for CoAPS Peer.Identity is the authenticated
	// DTLS identity the Provision callback must check against Endpoint.
	Peer coap.Peer
	// PreferredFormat is the "pct" parameter (1.1+), FormatNone if absent.
	PreferredFormat lwm2m.Format
}

// Result reports the end of one bootstrap sequence.
type Result struct {
	Endpoint string
	Peer     coap.Peer
	Err      error // nil when Bootstrap-Finish was acknowledged
	Duration time.Duration
}

// Config configures a Server.
type Config struct {
	// Provision returns the operational account for a device, or an error
	// wrapping ErrRefused (answered 4.03) for one that may not bootstrap.
	// It runs on the CoAP endpoint's worker and should be quick.
	Provision func(ctx context.Context, req Request) (Account, error)
	// OnResult, when set, is told how each sequence ended.
	OnResult func(Result)
	// Timeout bounds one whole sequence.
	Timeout time.Duration
	// MaxConcurrent bounds sequences in progress; more Bootstrap-Requests
	// get 5.03 and the device retries (Core §6.1.4.1 back-off).
	MaxConcurrent int
	Logger        *slog.Logger
}

// DefaultConfig returns the defaults; Provision must still be set.
func DefaultConfig() Config {
	return Config{Timeout: 2 * time.Minute, MaxConcurrent: 64}
}

// Server is the bootstrap server's CoAP handler. Serve it on a
// coap.Endpoint over UDP (5783) and one over DTLS (5784).
type Server struct {
	cfg  Config
	log  *slog.Logger
	sema chan struct{}
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Provision == nil {
		return nil, errors.New("bootstrap: Config.Provision is required")
	}
	d := DefaultConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = d.MaxConcurrent
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("component", "bootstrap"), sema: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// ServeCoAP answers Bootstrap-Request (POST /bs, Transport §6.1.1) and
// refuses everything else.
func (s *Server) ServeCoAP(ctx context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	if m.Code != coap.POST || m.Path() != "/bs" {
		return coap.ErrorResponse(coap.NotFound, "bootstrap server: only POST /bs")
	}
	req, err := parseRequest(m, r.Peer)
	if err != nil {
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	acct, err := s.cfg.Provision(ctx, req)
	if err == nil {
		err = acct.normalise()
	}
	if err != nil {
		s.log.Warn("bootstrap refused", "endpoint", req.Endpoint, "peer", r.Peer.Addr, "identity", r.Peer.Identity, "err", err)
		s.report(Result{Endpoint: req.Endpoint, Peer: r.Peer, Err: err})
		if errors.Is(err, ErrRefused) {
			return coap.ErrorResponse(coap.Forbidden, "bootstrap refused")
		}
		return coap.ErrorResponse(coap.InternalServerError, "bootstrap failed")
	}
	select {
	case s.sema <- struct{}{}:
	default:
		return coap.ErrorResponse(coap.ServiceUnavailable, "bootstrap server busy")
	}
	resp := coap.NewResponse(coap.Changed)
	ep := r.Endpoint
	resp.Then = func() {
		go func() {
			defer func() { <-s.sema }()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			defer cancel()
			err := s.provision(ctx, ep, req, acct)
			if err != nil {
				s.log.Warn("bootstrap failed", "endpoint", req.Endpoint, "peer", req.Peer.Addr, "err", err)
			} else {
				s.log.Info("bootstrap finished", "endpoint", req.Endpoint, "peer", req.Peer.Addr)
			}
			s.report(Result{Endpoint: req.Endpoint, Peer: req.Peer, Err: err, Duration: time.Since(start)})
		}()
	}
	return resp
}

func (s *Server) report(r Result) {
	if s.cfg.OnResult != nil {
		s.cfg.OnResult(r)
	}
}

func parseRequest(m *coap.Message, peer coap.Peer) (Request, error) {
	req := Request{Peer: peer, PreferredFormat: lwm2m.FormatNone}
	for _, q := range m.Queries() {
		k, v, _ := strings.Cut(q, "=")
		switch k {
		case "ep":
			req.Endpoint = v
		case "pct":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return req, fmt.Errorf("%w: pct=%q", ErrBadRequest, v)
			}
			req.PreferredFormat = lwm2m.Format(n)
		}
	}
	if req.Endpoint == "" {
		return req, fmt.Errorf("%w: no endpoint name (ep=)", ErrBadRequest)
	}
	return req, nil
}

// writeFormat picks the Bootstrap-Write content format: the device's
// preferred one when this side encodes it, else TLV, which every 1.0 and
// 1.1 client reads (Core 1.1 §5.2.7.2).
func writeFormat(pct lwm2m.Format) lwm2m.Format {
	switch pct {
	case lwm2m.FormatTLV, lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatLwM2MCBOR:
		return pct
	}
	return lwm2m.FormatTLV
}

// provision runs the sequence of Core 1.1 §5.2.7 after the 2.04: delete
// the stale accounts, learn which Security instance the Bootstrap-Server
// account occupies, write the new account, finish.
func (s *Server) provision(ctx context.Context, ep *coap.Endpoint, req Request, acct Account) error {
	do := func(m *coap.Message, want ...coap.Code) (*coap.Message, error) {
		resp, err := ep.Do(ctx, req.Peer, m)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %s %s: %w", m.Code, m.Path(), err)
		}
		if !slices.Contains(want, resp.Code) {
			return nil, fmt.Errorf("bootstrap: %s %s: device answered %s: %w", m.Code, m.Path(), resp.Code, ErrDevice)
		}
		return resp, nil
	}
	// Bootstrap-Delete /0 and /1: the client keeps its Bootstrap-Server
	// account (Core 1.1 §5.2.7.5); 4.04 means there was nothing to delete.
	for _, p := range []string{"/0", "/1"} {
		if _, err := do(newRequest(coap.DELETE, p), coap.Deleted, coap.NotFound); err != nil {
			return err
		}
	}
	// Bootstrap-Discover /0 finds the instance ids left (the Bootstrap-
	// Server account). A 1.0 client may not support it; it then keeps its
	// account in instance 0 by convention.
	used := []uint16{0}
	disc := newRequest(coap.GET, "/0")
	disc.SetAccept(uint16(lwm2m.FormatLinkFormat))
	if resp, err := ep.Do(ctx, req.Peer, disc); err == nil && resp.Code == coap.Content {
		used = securityInstances(string(resp.Payload))
	}
	secInst := uint16(0)
	for slices.Contains(used, secInst) {
		secInst++
	}
	f := writeFormat(req.PreferredFormat)
	for _, w := range []struct {
		base lwm2m.Path
		recs []lwm2m.Record
	}{
		{lwm2m.NewPath(0, secInst), acct.securityRecords(secInst)},
		{lwm2m.NewPath(1, 0), acct.serverRecords(0)},
	} {
		body, err := lwm2m.Encode(f, w.base, w.recs, nil)
		if err != nil {
			return fmt.Errorf("bootstrap: encode %s: %w", w.base, err)
		}
		m := newRequest(coap.PUT, w.base.String())
		m.SetContentFormat(uint16(f))
		m.Payload = body
		if _, err := do(m, coap.Changed); err != nil {
			return err
		}
	}
	// Bootstrap-Finish (Core 1.1 §5.2.7.3).
	_, err := do(newRequest(coap.POST, "/bs"), coap.Changed)
	return err
}

func newRequest(code coap.Code, path string) *coap.Message {
	m := &coap.Message{Type: coap.Confirmable, Code: code}
	m.SetPath(path)
	return m
}

var instanceLink = regexp.MustCompile(`</0/(\d+)>`)

// securityInstances lists the Security instances named in a
// Bootstrap-Discover answer ("</>;lwm2m=1.1,</0/0>;...").
func securityInstances(links string) []uint16 {
	var ids []uint16
	for _, m := range instanceLink.FindAllStringSubmatch(links, -1) {
		if n, err := strconv.ParseUint(m[1], 10, 16); err == nil {
			ids = append(ids, uint16(n))
		}
	}
	return ids
}
