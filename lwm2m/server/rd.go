package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// checkLinksRequest applies the content rules shared by Register and
// Update: the payload is link-format (Core §6.2.1; Content-Format may be
// absent from 1.0 clients), the response carries no representation, and
// the payload has a size limit.
func (s *Server) checkLinksRequest(m *coap.Message) *coap.Response {
	if a, ok := m.Accept(); ok && a != uint16(lwm2m.FormatLinkFormat) {
		return coap.ErrorResponse(coap.NotAcceptable, "the registration interface answers no representation but link-format")
	}
	if cf, ok := m.ContentFormat(); ok && cf != uint16(lwm2m.FormatLinkFormat) {
		return coap.ErrorResponse(coap.UnsupportedContentFormat, "registration payload must be application/link-format (40)")
	}
	if len(m.Payload) > s.cfg.MaxLinksSize {
		r := coap.ErrorResponse(coap.RequestEntityTooLarge, "object list too large")
		r.SetUint(coap.Size1, uint32(s.cfg.MaxLinksSize))
		return r
	}
	return nil
}

// register is Register, POST /rd?ep=… (Core §6.2.1, Transport §6.2.1).
func (s *Server) register(ctx context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	if resp := s.checkLinksRequest(m); resp != nil {
		s.st.refused.Add(1)
		return resp
	}
	p, err := parseRegParams(m.Queries(), true)
	if err != nil {
		s.st.refused.Add(1)
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	rp, err := parseLinks(m.Payload)
	if err != nil {
		s.st.refused.Add(1)
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	now := time.Now()
	snap := Registration{
		ID:             newID(),
		Endpoint:       p.ep,
		Lifetime:       s.cfg.DefaultLifetime,
		LwM2MVersion:   "1.0",
		Binding:        "U",
		SMSNumber:      p.sms,
		Peer:           r.Peer,
		Listener:       listenerOf(r.Endpoint),
		RootPath:       rp.RootPath,
		Objects:        rp.Objects,
		ContentFormats: rp.ContentFormats,
		Links:          string(m.Payload),
		RegisteredAt:   now,
		LastUpdate:     now,
	}
	if p.hasLt {
		snap.Lifetime = p.lt
	}
	if p.lwm2m != "" {
		snap.LwM2MVersion = p.lwm2m
	}
	if p.hasB {
		snap.Binding = p.binding
	}
	// Queue mode: b=UQ in 1.0 (Core 1.0 §5.3.1.1), the Q parameter from 1.1.
	snap.QueueMode = p.q || strings.Contains(snap.Binding, "Q")
	snap.ExpiresAt = now.Add(snap.Lifetime)
	check := snap
	// Work the Handler starts for the device waits in AwaitRegistration
	// until the 2.01 has gone out: a request that overtook it would reach
	// a device that does not know yet that it is registered (Core §6.2.1).
	answered := false
	defer func() {
		if !answered {
			s.settled(snap.ID)
		}
	}()
	s.registering(snap.ID)
	if err := s.h.Registered(ctx, &check); err != nil {
		s.st.refused.Add(1)
		code := refusalCode(err)
		if code == coap.InternalServerError {
			// The server side failed (a store error), not the device.
			s.log.Warn("registration failed", "endpoint", p.ep, "peer", r.Peer.Addr.String(), "err", err)
		} else {
			// A refusal is the handler's decision; it says why in its own log.
			s.log.Debug("registration refused", "endpoint", p.ep, "peer", r.Peer.Addr.String(), "err", err)
		}
		return coap.ErrorResponse(code, err.Error())
	}
	reg := &registration{snap: snap, ep: r.Endpoint, obs: make(map[string]*Observation), awake: now.Add(s.awakeWindow())}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return coap.ErrorResponse(coap.ServiceUnavailable, "server is stopping")
	}
	old := s.byEP[p.ep]
	var oldObs []*Observation
	var oldSnap *Registration
	if old != nil {
		oldSnap = old.snapshot()
		oldObs = s.removeLocked(old)
	}
	s.byID[reg.snap.ID] = reg
	s.byEP[reg.snap.Endpoint] = reg
	s.byPeer[r.Peer.Key()] = reg
	reg.timer = time.AfterFunc(snap.Lifetime+s.cfg.ExpiryGrace, func() { s.expire(reg) })
	saved := reg.snapshot()
	s.mu.Unlock()
	s.st.registrations.Add(1)
	if old != nil {
		// A new Register replaces the registration and its observations
		// (Core §6.2.1): the device has forgotten them. Saving the new
		// one replaces the old one's saved state (Persister), so a
		// re-registration costs the store one write, not two.
		for _, o := range oldObs {
			o.forget()
		}
	}
	s.persist.SaveRegistration(saved)
	if old != nil {
		s.st.replaced.Add(1)
		s.h.Deregistered(ctx, oldSnap, ReasonReplaced)
	}
	s.log.Debug("registered", "endpoint", p.ep, "id", snap.ID, "peer", r.Peer.Addr.String(), "lifetime", snap.Lifetime)
	resp := coap.NewResponse(coap.Created)
	resp.AddOption(coap.LocationPath, []byte("rd"))
	resp.AddOption(coap.LocationPath, []byte(snap.ID))
	answered = true
	resp.Then = func() {
		s.settled(snap.ID)
		s.wakeUp(reg)
	}
	return resp
}

// lookup finds a registration for Update and De-register and checks that
// the request may act on it: a DTLS registration only from the same
// authenticated identity. A plain CoAP registration accepts a new source
// address or port (NAT rebinding, Transport §6.2.2).
func (s *Server) lookup(r *coap.Request, id string) (*registration, *coap.Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reg := s.byID[id]
	if reg == nil {
		return nil, coap.ErrorResponse(coap.NotFound, "unknown registration "+id)
	}
	old := reg.snap.Peer
	if old.Secure() != r.Peer.Secure() || old.Identity != r.Peer.Identity {
		return nil, coap.ErrorResponse(coap.Forbidden, "registration belongs to another identity")
	}
	return reg, nil
}

// rebindLocked moves the registration to a new peer address; s.mu is held.
func (s *Server) rebindLocked(reg *registration, p coap.Peer, ep *coap.Endpoint) {
	if k := reg.snap.Peer.Key(); k != p.Key() {
		if s.byPeer[k] == reg {
			delete(s.byPeer, k)
		}
		s.byPeer[p.Key()] = reg
	}
	reg.snap.Peer = p
	if ep != nil && ep != reg.ep {
		s.attachLocked(reg, ep)
	}
}

// update is Update, POST /rd/<id> (Core §6.2.2).
func (s *Server) update(ctx context.Context, r *coap.Request, id string) *coap.Response {
	m := r.Message
	if resp := s.checkLinksRequest(m); resp != nil {
		return resp
	}
	reg, resp := s.lookup(r, id)
	if resp != nil {
		return resp
	}
	p, err := parseRegParams(m.Queries(), false)
	if err != nil {
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	var rp lwm2m.RegisterPayload
	if len(m.Payload) > 0 {
		if rp, err = parseLinks(m.Payload); err != nil {
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
	}
	now := time.Now()
	s.mu.Lock()
	if reg.finished {
		s.mu.Unlock()
		return coap.ErrorResponse(coap.NotFound, "registration ended")
	}
	before := stateOf(&reg.snap)
	sn := &reg.snap
	if p.hasLt {
		sn.Lifetime = p.lt
	}
	if p.hasB {
		sn.Binding = p.binding
		sn.QueueMode = p.q || strings.Contains(p.binding, "Q")
	} else if p.q {
		sn.QueueMode = true
	}
	if p.hasSMS {
		sn.SMSNumber = p.sms
	}
	if len(m.Payload) > 0 {
		sn.RootPath, sn.Objects, sn.ContentFormats, sn.Links = rp.RootPath, rp.Objects, rp.ContentFormats, string(m.Payload)
	}
	sn.LastUpdate = now
	sn.ExpiresAt = now.Add(sn.Lifetime)
	s.rebindLocked(reg, r.Peer, r.Endpoint)
	reg.timer.Reset(sn.Lifetime + s.cfg.ExpiryGrace)
	snap := reg.snapshot()
	s.mu.Unlock()
	s.st.updates.Add(1)
	if stateOf(snap) == before {
		s.persist.TouchRegistration(snap)
	} else {
		s.persist.SaveRegistration(snap)
	}
	// The registration id was sent only to the device's address: naming
	// it proves the sender receives there (RFC 7252 §11.3).
	r.Endpoint.Verify(r.Peer)
	s.h.Updated(ctx, snap)
	resp = coap.NewResponse(coap.Changed)
	resp.Then = func() { s.wakeUp(reg) }
	return resp
}

// deregister is De-register, DELETE /rd/<id> (Core §6.2.3).
func (s *Server) deregister(ctx context.Context, r *coap.Request, id string) *coap.Response {
	reg, resp := s.lookup(r, id)
	if resp != nil {
		return resp
	}
	s.mu.Lock()
	if reg.finished {
		s.mu.Unlock()
		return coap.ErrorResponse(coap.NotFound, "registration ended")
	}
	snap := reg.snapshot()
	obs := s.removeLocked(reg)
	s.mu.Unlock()
	for _, o := range obs {
		o.forget()
	}
	s.st.deregistrations.Add(1)
	s.persist.DeleteRegistration(snap)
	s.h.Deregistered(ctx, snap, ReasonExplicit)
	return coap.NewResponse(coap.Deleted)
}

// Evict ends an endpoint's registration from the server side, as when an
// admin deletes the device: its observations are forgotten (its next
// notification is answered with RST, RFC 7641 §3.6) and its next Update
// gets 4.04, so it must Register again and pass the handler's checks
// (Core §6.2.2). It reports whether there was a registration.
func (s *Server) Evict(ctx context.Context, endpoint string) bool {
	s.mu.Lock()
	reg := s.byEP[endpoint]
	if reg == nil || reg.finished {
		s.mu.Unlock()
		return false
	}
	snap := reg.snapshot()
	obs := s.removeLocked(reg)
	s.mu.Unlock()
	for _, o := range obs {
		o.forget()
	}
	s.persist.DeleteRegistration(snap)
	s.h.Deregistered(ctx, snap, ReasonEvicted)
	return true
}

// removeLocked ends a registration and returns its observations for the
// caller to forget outside the lock; s.mu is held.
func (s *Server) removeLocked(reg *registration) []*Observation {
	reg.finished = true
	reg.endLocked()
	if s.byID[reg.snap.ID] == reg {
		delete(s.byID, reg.snap.ID)
	}
	if s.byEP[reg.snap.Endpoint] == reg {
		delete(s.byEP, reg.snap.Endpoint)
	}
	if k := reg.snap.Peer.Key(); s.byPeer[k] == reg {
		delete(s.byPeer, k)
	}
	if reg.timer != nil {
		reg.timer.Stop()
	}
	// Wake queued requests: they look the endpoint up again and either
	// find its new registration or fail with ErrNotRegistered.
	reg.wakeLocked()
	obs := make([]*Observation, 0, len(reg.obs))
	for _, o := range reg.obs {
		obs = append(obs, o)
	}
	clear(reg.obs)
	return obs
}

// expire ends a registration whose lifetime and grace passed (Core §6.2.1).
func (s *Server) expire(reg *registration) {
	s.mu.Lock()
	if reg.finished {
		s.mu.Unlock()
		return
	}
	if left := time.Until(reg.snap.ExpiresAt.Add(s.cfg.ExpiryGrace)); left > 0 {
		// An Update moved the deadline while this timer was firing.
		reg.timer.Reset(left)
		s.mu.Unlock()
		return
	}
	snap := reg.snapshot()
	obs := s.removeLocked(reg)
	s.mu.Unlock()
	for _, o := range obs {
		o.forget()
	}
	s.st.expirations.Add(1)
	s.persist.DeleteRegistration(snap)
	s.log.Debug("registration expired", "endpoint", snap.Endpoint, "id", snap.ID)
	s.h.Deregistered(context.Background(), snap, ReasonExpired)
}

// wakeUp marks an uplink: a queue-mode device takes requests for
// AwakeWindow from now (Core §6.5), and queued requests go out.
func (s *Server) wakeUp(reg *registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeUpLocked(reg)
}

// wakeUpLocked is wakeUp with s.mu held.
func (s *Server) wakeUpLocked(reg *registration) {
	if reg.finished {
		return
	}
	reg.awake = time.Now().Add(s.awakeWindow())
	reg.wakeLocked()
}

// send is Send, POST /dp (Core §6.4.2, Transport §6.4.3): SenML JSON, SenML
// CBOR or LwM2M CBOR values with optional timestamps. Devices may send it
// with an empty token.
func (s *Server) send(ctx context.Context, r *coap.Request) *coap.Response {
	s.mu.Lock()
	reg := s.byPeer[r.Peer.Key()]
	var snap *Registration
	if reg != nil {
		snap = reg.view()
	}
	s.mu.Unlock()
	if reg == nil {
		return coap.ErrorResponse(coap.NotFound, "Send from a peer that is not registered")
	}
	cf, ok := r.Message.ContentFormat()
	if !ok {
		return coap.ErrorResponse(coap.BadRequest, "Send needs a Content-Format")
	}
	f := lwm2m.Format(cf)
	if f != lwm2m.FormatSenMLJSON && f != lwm2m.FormatSenMLCBOR && f != lwm2m.FormatLwM2MCBOR {
		return coap.ErrorResponse(coap.UnsupportedContentFormat, "Send takes SenML JSON (110), SenML CBOR (112) or LwM2M CBOR (11544)")
	}
	recs, err := lwm2m.Decode(f, lwm2m.Path{}, r.Message.Payload, s.reg)
	if err != nil {
		s.st.sendDrops.Add(1)
		if errors.Is(err, lwm2m.ErrUnsupportedFormat) {
			return coap.ErrorResponse(coap.UnsupportedContentFormat, err.Error())
		}
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	s.wakeUp(reg)
	if dh, ok := s.h.(DeferredHandler); ok {
		// 2.04 only once the values are stored.
		respond := r.Defer()
		stored := func(err error) { respond(s.sendAnswer(err)) }
		if err := dh.SentDeferred(ctx, snap, recs, stored); err != nil {
			stored(err)
		}
		return nil
	}
	return s.sendAnswer(s.h.Sent(ctx, snap, recs))
}

// sendAnswer is the response to a Send whose values were stored (err nil)
// or could not be taken: 5.03, so the device sends them again later (RFC
// 7252 §5.9.3.4).
func (s *Server) sendAnswer(err error) *coap.Response {
	if err != nil {
		s.st.sendDrops.Add(1)
		// A payload the handler cannot take in any case gets 4.13 or
		// 4.00 with the reason (RFC 7252 §5.9.2); anything else 5.03, so
		// the device retries.
		switch {
		case errors.Is(err, ErrTooLarge):
			return coap.ErrorResponse(coap.RequestEntityTooLarge, err.Error())
		case errors.Is(err, ErrBadRequest):
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
		return coap.ErrorResponse(coap.ServiceUnavailable, "cannot take the values now")
	}
	s.st.sends.Add(1)
	return coap.NewResponse(coap.Changed)
}
