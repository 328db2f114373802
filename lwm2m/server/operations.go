package server

import (
	"context"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// decode reads a device payload. Without a Content-Format the format asked
// for is assumed, else plain text for a resource and TLV for more (what
// 1.0 devices send by default, Core 1.0 §6.4).
func (s *Server) decode(endpoint string, resp *coap.Message, asked lwm2m.Format, base lwm2m.Path) ([]lwm2m.Record, lwm2m.Format, error) {
	f := asked
	if cf, ok := resp.ContentFormat(); ok {
		f = lwm2m.Format(cf)
	} else if f == lwm2m.FormatNone {
		f = lwm2m.FormatTLV
		if base.Len() >= 3 {
			f = lwm2m.FormatText
		}
	}
	recs, err := lwm2m.Decode(f, base, resp.Payload, s.reg)
	if err != nil {
		return nil, f, fmt.Errorf("server: %s: %w: %w", endpoint, ErrDecode, err)
	}
	return recs, f, nil
}

// Read reads an object, instance, resource or resource instance (Core
// §6.3.1). accept is the content format to ask for, lwm2m.FormatNone to
// let the device choose.
func (s *Server) Read(ctx context.Context, endpoint string, p lwm2m.Path, accept lwm2m.Format) ([]lwm2m.Record, error) {
	m := &coap.Message{Code: coap.GET}
	if accept != lwm2m.FormatNone {
		m.SetAccept(uint16(accept))
	}
	resp, _, err := s.call(ctx, endpoint, m, p.String())
	if err != nil {
		return nil, err
	}
	recs, _, err := s.decode(endpoint, resp, accept, p)
	return recs, err
}

// Discover returns the device's link-format description of an object,
// instance or resource with its attributes (Core §6.3.3).
func (s *Server) Discover(ctx context.Context, endpoint string, p lwm2m.Path) (string, error) {
	m := &coap.Message{Code: coap.GET}
	m.SetAccept(uint16(lwm2m.FormatLinkFormat))
	resp, _, err := s.call(ctx, endpoint, m, p.String())
	if err != nil {
		return "", err
	}
	if cf, ok := resp.ContentFormat(); ok && cf != uint16(lwm2m.FormatLinkFormat) {
		return "", fmt.Errorf("server: %s: %w: Discover answered with content format %d", endpoint, ErrDecode, cf)
	}
	return string(resp.Payload), nil
}

// Write writes values under p (Core §6.3.4): replace true is PUT (replace
// the instance or resource), false is POST (partial update). f is the
// payload format.
func (s *Server) Write(ctx context.Context, endpoint string, p lwm2m.Path, f lwm2m.Format, recs []lwm2m.Record, replace bool) error {
	payload, err := lwm2m.Encode(f, p, recs, s.reg)
	if err != nil {
		return fmt.Errorf("server: %s: write %s: %w", endpoint, p, err)
	}
	m := &coap.Message{Code: coap.POST, Payload: payload}
	if replace {
		m.Code = coap.PUT
	}
	m.SetContentFormat(uint16(f))
	_, _, err = s.call(ctx, endpoint, m, p.String())
	return err
}

// WriteAttributes sets notification attributes on p (Core §6.3.5): PUT with
// one Uri-Query per attribute (pmin, pmax, gt, lt, st, epmin, epmax, edge,
// con, hqmax; an unset attribute is sent as its bare name, which removes
// it) and no payload. Attributes that contradict each other are refused
// before anything is sent.
func (s *Server) WriteAttributes(ctx context.Context, endpoint string, p lwm2m.Path, attrs lwm2m.Attributes) error {
	if err := attrs.Validate(); err != nil {
		return fmt.Errorf("server: %s: write-attributes %s: %w: %w", endpoint, p, ErrBadRequest, err)
	}
	m := &coap.Message{Code: coap.PUT}
	for _, q := range attrs.Queries() {
		m.AddQuery(q)
	}
	_, _, err := s.call(ctx, endpoint, m, p.String())
	return err
}

// Execute executes a resource with optional arguments in the Core §5.4.2
// syntax ("0='a',1") (Core §6.3.6).
func (s *Server) Execute(ctx context.Context, endpoint string, p lwm2m.Path, args string) error {
	if !p.IsResource() {
		return fmt.Errorf("server: %s: execute %s: %w: Execute addresses a resource", endpoint, p, lwm2m.ErrInvalidPath)
	}
	m := &coap.Message{Code: coap.POST, Payload: []byte(args)}
	if args != "" {
		m.SetContentFormat(uint16(lwm2m.FormatText))
	}
	_, _, err := s.call(ctx, endpoint, m, p.String())
	return err
}

// Create creates an object instance (Core §6.3.7). target is the object
// (the device picks the instance id, returned from Location-Path) or, with
// recs under an instance path, the object of that instance. It returns the
// new instance's path.
func (s *Server) Create(ctx context.Context, endpoint string, object lwm2m.Path, f lwm2m.Format, recs []lwm2m.Record) (lwm2m.Path, error) {
	if !object.IsObject() {
		return lwm2m.Path{}, fmt.Errorf("server: %s: create %s: %w: Create addresses an object", endpoint, object, lwm2m.ErrInvalidPath)
	}
	payload, err := lwm2m.Encode(f, object, recs, s.reg)
	if err != nil {
		return lwm2m.Path{}, fmt.Errorf("server: %s: create in %s: %w", endpoint, object, err)
	}
	m := &coap.Message{Code: coap.POST, Payload: payload}
	m.SetContentFormat(uint16(f))
	resp, t, err := s.call(ctx, endpoint, m, object.String())
	if err != nil {
		return lwm2m.Path{}, err
	}
	loc := "/" + joinSegs(resp.LocationPath())
	if t.root != "/" && len(loc) > len(t.root) && loc[:len(t.root)] == t.root {
		loc = loc[len(t.root):]
	}
	if p, err := lwm2m.ParsePath(loc); err == nil && p.IsInstance() {
		return p, nil
	}
	// No usable Location-Path: the instance is the one in the payload.
	for _, r := range recs {
		if r.Path.Len() >= 2 {
			return r.Path.Truncate(2), nil
		}
	}
	return object, nil
}

func joinSegs(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "/"
		}
		out += x
	}
	return out
}

// Delete deletes an object instance (Core §6.3.8).
func (s *Server) Delete(ctx context.Context, endpoint string, p lwm2m.Path) error {
	_, _, err := s.call(ctx, endpoint, &coap.Message{Code: coap.DELETE}, p.String())
	return err
}

// ReadComposite reads several paths at once (Core §6.3.9, Transport §7.4):
// FETCH on the root with the path list in f, which must be a composite
// format (SenML JSON, SenML CBOR, LwM2M CBOR); the answer is asked in f too.
func (s *Server) ReadComposite(ctx context.Context, endpoint string, paths []lwm2m.Path, f lwm2m.Format) ([]lwm2m.Record, error) {
	m, err := compositeRequest(coap.FETCH, paths, f)
	if err != nil {
		return nil, fmt.Errorf("server: %s: read-composite: %w", endpoint, err)
	}
	resp, _, err := s.call(ctx, endpoint, m, "/")
	if err != nil {
		return nil, err
	}
	recs, _, err := s.decode(endpoint, resp, f, lwm2m.Path{})
	return recs, err
}

func compositeRequest(code coap.Code, paths []lwm2m.Path, f lwm2m.Format) (*coap.Message, error) {
	if !f.Composite() {
		return nil, fmt.Errorf("%w: %s cannot carry a composite request", lwm2m.ErrUnsupportedFormat, f)
	}
	payload, err := lwm2m.EncodePaths(f, paths)
	if err != nil {
		return nil, err
	}
	m := &coap.Message{Code: code, Payload: payload}
	m.SetContentFormat(uint16(f))
	m.SetAccept(uint16(f))
	return m, nil
}

// WriteComposite writes values at several paths at once (Core §6.3.10):
// iPATCH on the root with records in the composite format f.
func (s *Server) WriteComposite(ctx context.Context, endpoint string, f lwm2m.Format, recs []lwm2m.Record) error {
	if !f.Composite() {
		return fmt.Errorf("server: %s: write-composite: %w: %s", endpoint, lwm2m.ErrUnsupportedFormat, f)
	}
	payload, err := lwm2m.Encode(f, lwm2m.Path{}, recs, s.reg)
	if err != nil {
		return fmt.Errorf("server: %s: write-composite: %w", endpoint, err)
	}
	m := &coap.Message{Code: coap.IPATCH, Payload: payload}
	m.SetContentFormat(uint16(f))
	_, _, err = s.call(ctx, endpoint, m, "/")
	return err
}
