package server

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Observation is an observation the server holds on a device (Core
// §6.4.1, RFC 7641). Its fields do not change.
type Observation struct {
	// ID is the hex token; notifications are matched by it.
	ID string
	// Endpoint and RegistrationID it was made under; a new Register ends it.
	Endpoint       string
	RegistrationID string
	// Paths observed: one for Observe, several for Observe-Composite.
	Paths     []lwm2m.Path
	Composite bool
	// Format asked for (FormatNone: the device's choice).
	Format  lwm2m.Format
	Started time.Time

	c *coap.Observation
}

// Observe starts observing p (Core §6.4.1) and returns the observation and
// the current values. Notifications go to Handler.Notified.
//
// A device that sends its answer as a confirmable message of its own (a
// separate response after an empty ACK, or a first notification that
// overtook a lost piggybacked response) gets it acknowledged like a
// notification (RFC 7641 §3.2, coap.Observation.FirstNotified): its
// values go to Handler.Notified (or NotifiedDeferred), and Observe
// returns none, so that they are kept once, and acknowledged only once
// kept.
func (s *Server) Observe(ctx context.Context, endpoint string, p lwm2m.Path, accept lwm2m.Format) (*Observation, []lwm2m.Record, error) {
	m := &coap.Message{Code: coap.GET}
	if accept != lwm2m.FormatNone {
		m.SetAccept(uint16(accept))
	}
	return s.observe(ctx, endpoint, m, p.String(), &Observation{Paths: []lwm2m.Path{p}, Format: accept})
}

// ObserveComposite observes several paths with one FETCH (Core §6.4.1,
// Observe-Composite); f is the composite format of the path list and of
// the notifications. Its first values go to the Handler instead of being
// returned in the same case as Observe's.
func (s *Server) ObserveComposite(ctx context.Context, endpoint string, paths []lwm2m.Path, f lwm2m.Format) (*Observation, []lwm2m.Record, error) {
	m, err := compositeRequest(coap.FETCH, paths, f)
	if err != nil {
		return nil, nil, fmt.Errorf("server: %s: observe-composite: %w", endpoint, err)
	}
	return s.observe(ctx, endpoint, m, "/", &Observation{Paths: append([]lwm2m.Path(nil), paths...), Composite: true, Format: f})
}

func (s *Server) observe(ctx context.Context, endpoint string, m *coap.Message, path string, o *Observation) (*Observation, []lwm2m.Record, error) {
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	t, err := s.awaitTarget(ctx, endpoint)
	if err != nil {
		return nil, nil, err
	}
	setPath(m, t.root, path)
	o.Endpoint, o.RegistrationID, o.Started = endpoint, t.reg.snap.ID, time.Now()
	base := lwm2m.Path{}
	if !o.Composite {
		base = o.Paths[0]
	}
	reg := t.reg
	// The token is chosen here so that the observation is complete before
	// the first notification can arrive.
	var tok [8]byte
	_, _ = crand.Read(tok[:])
	m.Token = tok[:]
	o.ID = hex.EncodeToString(tok[:])
	s.st.requests.Add(1)
	bctx, bcancel := s.bind(ctx, reg)
	defer bcancel()
	co, resp, err := t.ep.Observe(bctx, t.peer, m, func(n *coap.Notification) error {
		return s.notified(reg, o, base, n)
	})
	if err != nil && resp == nil {
		s.st.requestErrors.Add(1)
		if e := endedErr(bctx, endpoint); e != nil {
			return nil, nil, e
		}
		return nil, nil, transportErr(endpoint, err)
	}
	s.wakeUp(reg)
	if !resp.Code.IsSuccess() {
		s.st.requestErrors.Add(1)
		return nil, nil, fmt.Errorf("server: %s observe %s: %w", endpoint, path, &ResponseError{Code: resp.Code, Message: string(resp.Payload)})
	}
	if co == nil {
		s.st.requestErrors.Add(1)
		return nil, nil, fmt.Errorf("server: %s observe %s: %w", endpoint, path, ErrNotObserved)
	}
	o.c = co
	s.mu.Lock()
	if reg.finished {
		s.mu.Unlock()
		co.Forget()
		return nil, nil, fmt.Errorf("server: %s: %w: registration ended during observe", endpoint, ErrNotRegistered)
	}
	reg.obs[o.ID] = o
	s.mu.Unlock()
	s.persist.SaveObservation(o)
	if co.FirstNotified() {
		// The response went to notified, which keeps its values.
		return o, nil, nil
	}
	recs, _, err := s.decode(endpoint, resp, o.Format, base)
	if err != nil {
		return o, nil, err
	}
	return o, recs, nil
}

// notified runs on the CoAP worker of the device.
func (s *Server) notified(reg *registration, o *Observation, base lwm2m.Path, n *coap.Notification) error {
	s.mu.Lock()
	if reg.finished {
		s.mu.Unlock()
		return nil
	}
	var moved *Registration
	if !n.Stale && n.Peer.Key() != reg.snap.Peer.Key() && (!n.Peer.Secure() || n.Peer.Identity == reg.snap.Peer.Identity) {
		// NAT rebinding seen through a notification, or a DTLS device
		// that handshook again (the CoAP layer checked the identity). A
		// stale (reordered) notification may come from the address
		// before the last rebinding: it moves nothing.
		s.rebindLocked(reg, n.Peer, reg.ep)
		moved = reg.snapshot()
	}
	if !n.Message.Code.IsSuccess() {
		// The device ended the observation (RFC 7641 §3.2: a notification
		// with an error code, 4.04 when the resource went away).
		ended := reg.obs[o.ID] == o
		if ended {
			delete(reg.obs, o.ID)
		}
		s.mu.Unlock()
		if moved != nil {
			s.persist.SaveRegistration(moved)
		}
		if ended {
			s.persist.DeleteObservation(o)
		}
		s.st.notificationDrops.Add(1)
		s.log.Info("device ended observation", "endpoint", o.Endpoint, "observation", o.ID, "code", n.Message.Code.String())
		return nil
	}
	snap := reg.view()
	s.wakeUpLocked(reg)
	s.mu.Unlock()
	if moved != nil {
		s.persist.SaveRegistration(moved)
	}
	recs, _, err := s.decode(snap.Endpoint, n.Message, o.Format, base)
	if err != nil {
		s.st.notificationDrops.Add(1)
		s.log.Info("undecodable notification", "endpoint", snap.Endpoint, "observation", o.ID, "err", err)
		return nil
	}
	if dh, ok := s.h.(DeferredHandler); ok {
		take := dh.NotifiedDeferred
		if sh, ok := s.h.(StaleHandler); ok && n.Stale {
			// RFC 7641 §3.4: older than a notification already
			// delivered, so history, not the current state.
			take = sh.NotifiedStale
		}
		done := n.Defer()
		err := take(context.Background(), snap, o, recs, func(err error) {
			s.countNotification(err)
			done(err)
		})
		if err != nil {
			s.st.notificationDrops.Add(1)
		}
		return err
	}
	err = s.h.Notified(context.Background(), snap, o, recs)
	s.countNotification(err)
	return err
}

func (s *Server) countNotification(err error) {
	if err != nil {
		s.st.notificationDrops.Add(1)
		return
	}
	s.st.notifications.Add(1)
}

// Observations lists the endpoint's active observations.
func (s *Server) Observations(endpoint string) []*Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	reg := s.byEP[endpoint]
	if reg == nil {
		return nil
	}
	out := make([]*Observation, 0, len(reg.obs))
	for _, o := range reg.obs {
		out = append(out, o)
	}
	return out
}

// CancelObservation ends an observation (Core §6.4.2). proactive sends the
// observe request again with Observe=1 (RFC 7641 §3.6) and waits for the
// device (a queue-mode device when it wakes); otherwise the observation is
// forgotten and the device's next notification is answered with RST.
func (s *Server) CancelObservation(ctx context.Context, o *Observation, proactive bool) error {
	s.mu.Lock()
	held := false
	if reg := s.byEP[o.Endpoint]; reg != nil && reg.obs[o.ID] == o {
		delete(reg.obs, o.ID)
		held = true
	}
	c := o.c
	s.mu.Unlock()
	if held {
		s.persist.DeleteObservation(o)
	}
	if c == nil {
		return nil
	}
	if !proactive {
		c.Forget()
		return nil
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	t, err := s.awaitTarget(ctx, o.Endpoint)
	if err != nil {
		c.Forget()
		return err
	}
	s.st.requests.Add(1)
	ctx, bcancel := s.bind(ctx, t.reg)
	defer bcancel()
	resp, err := c.Cancel(ctx)
	if err != nil {
		s.st.requestErrors.Add(1)
		if e := endedErr(ctx, o.Endpoint); e != nil {
			return e
		}
		return transportErr(o.Endpoint, err)
	}
	s.wakeUp(t.reg)
	if !resp.Code.IsSuccess() {
		return fmt.Errorf("server: %s cancel observation %s: %w", o.Endpoint, o.ID, &ResponseError{Code: resp.Code, Message: string(resp.Payload)})
	}
	return nil
}
