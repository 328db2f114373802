package server

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Persister keeps the server's registrations and observations where they
// outlive the process, so that a restart is invisible to devices: Restore
// gives them back at the next start. The appliance implements it over
// SQLite; the server itself never touches storage.
//
// The server calls it after each change, outside its lock, on the
// goroutine that made the change (a CoAP worker for Register, Update,
// De-register and notifications; the caller's for Observe). Methods must
// not block for long; errors are the implementation's to log.
type Persister interface {
	// SaveRegistration: a registration started, or an Update or a
	// notification changed something but its time (parameters, object
	// list, peer address or session, listener). A registration with
	// another ID replaces the endpoint's saved one and ends its
	// observations: a new Register is not preceded by DeleteRegistration
	// of the registration it replaces.
	SaveRegistration(r *Registration)
	// TouchRegistration: an Update that changed nothing but LastUpdate.
	// This is the hot path: an implementation may coalesce these and
	// write them later; a restored registration whose LastUpdate is a
	// little old only expires a little earlier.
	TouchRegistration(r *Registration)
	// DeleteRegistration: the registration ended (any DeregisterReason);
	// its observations ended with it.
	DeleteRegistration(r *Registration)
	// SaveObservation: an observation was established.
	SaveObservation(o *Observation)
	// DeleteObservation: an observation ended (cancelled, or ended by the
	// device with an error notification) while its registration lives on.
	DeleteObservation(o *Observation)
}

// WithPersister makes the server report its registrations and
// observations to p (see Restore).
func WithPersister(p Persister) Option {
	return func(s *Server) {
		if p != nil {
			s.persist = p
		}
	}
}

// nopPersister is the default: nothing outlives the process.
type nopPersister struct{}

func (nopPersister) SaveRegistration(*Registration)   {}
func (nopPersister) TouchRegistration(*Registration)  {}
func (nopPersister) DeleteRegistration(*Registration) {}
func (nopPersister) SaveObservation(*Observation)     {}
func (nopPersister) DeleteObservation(*Observation)   {}

// savedState is what a Persister keeps of a registration besides its
// times; an Update that leaves it unchanged is only a touch.
type savedState struct {
	lifetime                      time.Duration
	binding, sms, links, listener string
	queue                         bool
	peer                          coap.Peer
}

func stateOf(r *Registration) savedState {
	return savedState{lifetime: r.Lifetime, binding: r.Binding, sms: r.SMSNumber, links: r.Links,
		listener: r.Listener, queue: r.QueueMode, peer: r.Peer}
}

// Restore gives back registrations and observations that an earlier run
// reported to its Persister. Call it after New and before Serve. A
// registration's lifetime runs from its LastUpdate, as if the server had
// never stopped: one whose lifetime and grace already passed expires at
// once (Handler.Deregistered with ReasonExpired). Restored registrations
// are not reported to Handler.Registered. Each is bound to the transport
// whose local address is its Listener when Serve starts it, or else to the
// transport of the device's next Update; its observations are resumed
// there (RFC 7641 §3.1: the device still holds them), so notifications
// with their tokens are delivered. A queue-mode device is taken to be
// asleep until its next uplink.
//
// Entries that cannot be used (no id, endpoint or lifetime, an endpoint
// already held, an observation of no restored registration or with a bad
// token) are skipped and counted in the error; the rest is restored.
func (s *Server) Restore(regs []*Registration, obs []*Observation) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var skipped []string
	n := 0
	for _, r := range regs {
		if err := s.restoreRegLocked(r); err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		n++
	}
	for _, o := range obs {
		if err := s.restoreObsLocked(o); err != nil {
			skipped = append(skipped, err.Error())
		}
	}
	if len(skipped) > 0 {
		return n, fmt.Errorf("server: restore: %w: %d entries skipped, first: %s", ErrBadRequest, len(skipped), skipped[0])
	}
	return n, nil
}

func (s *Server) restoreRegLocked(r *Registration) error {
	if r.ID == "" || r.Endpoint == "" || r.Lifetime <= 0 {
		return fmt.Errorf("registration %q of %q: missing id, endpoint or lifetime", r.ID, r.Endpoint)
	}
	if s.byEP[r.Endpoint] != nil || s.byID[r.ID] != nil {
		return fmt.Errorf("registration %q of %q: already held", r.ID, r.Endpoint)
	}
	snap := *r
	if len(snap.Objects) == 0 && snap.Links != "" {
		rp, err := parseLinks([]byte(snap.Links))
		if err != nil {
			return fmt.Errorf("registration %q of %q: %w", r.ID, r.Endpoint, err)
		}
		snap.RootPath, snap.Objects, snap.ContentFormats = rp.RootPath, rp.Objects, rp.ContentFormats
	}
	if snap.RootPath == "" {
		snap.RootPath = "/"
	}
	snap.ExpiresAt = snap.LastUpdate.Add(snap.Lifetime)
	reg := &registration{snap: snap, obs: make(map[string]*Observation)}
	s.byID[snap.ID] = reg
	s.byEP[snap.Endpoint] = reg
	s.byPeer[snap.Peer.Key()] = reg
	reg.timer = time.AfterFunc(time.Until(snap.ExpiresAt.Add(s.cfg.ExpiryGrace)), func() { s.expire(reg) })
	for ep := range s.eps {
		if listenerOf(ep) == snap.Listener {
			s.attachLocked(reg, ep)
			break
		}
	}
	return nil
}

func (s *Server) restoreObsLocked(o *Observation) error {
	reg := s.byEP[o.Endpoint]
	if reg == nil || reg.snap.ID != o.RegistrationID {
		return fmt.Errorf("observation %s of %q: no registration %q", o.ID, o.Endpoint, o.RegistrationID)
	}
	if tok, err := hex.DecodeString(o.ID); err != nil || len(tok) == 0 || len(tok) > coap.MaxTokenLength {
		return fmt.Errorf("observation %q of %q: bad token", o.ID, o.Endpoint)
	}
	if len(o.Paths) == 0 || (!o.Composite && len(o.Paths) != 1) {
		return fmt.Errorf("observation %s of %q: %d paths", o.ID, o.Endpoint, len(o.Paths))
	}
	if reg.obs[o.ID] != nil {
		return fmt.Errorf("observation %s of %q: token used twice", o.ID, o.Endpoint)
	}
	c := &Observation{ID: o.ID, Endpoint: o.Endpoint, RegistrationID: o.RegistrationID,
		Paths: append([]lwm2m.Path(nil), o.Paths...), Composite: o.Composite, Format: o.Format, Started: o.Started}
	reg.obs[c.ID] = c
	if reg.ep != nil {
		if err := s.resumeLocked(reg, c); err != nil {
			delete(reg.obs, c.ID)
			return err
		}
	}
	return nil
}

// attachServeLocked binds the restored registrations that came in on the
// listener at ep's address to it; s.mu is held.
func (s *Server) attachServeLocked(ep *coap.Endpoint) {
	addr := listenerOf(ep)
	for _, reg := range s.byID {
		if reg.ep == nil && reg.snap.Listener == addr {
			s.attachLocked(reg, ep)
		}
	}
}

// attachLocked binds a registration to a transport and resumes there the
// observations not yet bound to one; s.mu is held.
func (s *Server) attachLocked(reg *registration, ep *coap.Endpoint) {
	reg.ep = ep
	reg.snap.Listener = listenerOf(ep)
	for id, o := range reg.obs {
		if o.c != nil {
			continue
		}
		if err := s.resumeLocked(reg, o); err != nil {
			s.log.Info("observation not resumed", "endpoint", o.Endpoint, "observation", o.ID, "err", err)
			delete(reg.obs, id)
		}
	}
}

// resumeLocked re-creates an observation's CoAP state on the
// registration's transport: the request it was made with (same token,
// path, formats) so that notifications, block fetches and a proactive
// cancel work as before the restart; s.mu is held.
func (s *Server) resumeLocked(reg *registration, o *Observation) error {
	var m *coap.Message
	base := lwm2m.Path{}
	if o.Composite {
		var err error
		if m, err = compositeRequest(coap.FETCH, o.Paths, o.Format); err != nil {
			return err
		}
		setPath(m, reg.snap.RootPath, "/")
	} else {
		base = o.Paths[0]
		m = &coap.Message{Code: coap.GET}
		if o.Format != lwm2m.FormatNone {
			m.SetAccept(uint16(o.Format))
		}
		setPath(m, reg.snap.RootPath, base.String())
	}
	m.Token, _ = hex.DecodeString(o.ID)
	c, err := reg.ep.Resume(reg.snap.Peer, m, func(n *coap.Notification) error {
		return s.notified(reg, o, base, n)
	})
	if err != nil {
		return err
	}
	o.c = c
	return nil
}

// listenerOf names the transport of an endpoint by its local address.
func listenerOf(ep *coap.Endpoint) string {
	if ep == nil {
		return ""
	}
	return ep.LocalAddr().String()
}

// forget drops the CoAP side of an observation, if it has one yet (a
// restored observation gets it when its registration is bound).
func (o *Observation) forget() {
	if o.c != nil {
		o.c.Forget()
	}
}
