package client

import (
	"context"
	"errors"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// startObservation registers an observation; it starts notifying once the
// response that establishes it has gone out (RFC 7641 §3.1: the response
// carries Observe with the first sequence number).
func (c *Client) startObservation(r *coap.Request, resp *coap.Response, paths []lwm2m.Path, composite bool, f lwm2m.Format, recs []lwm2m.Record) {
	resp.SetObserve(c.nextSeq())
	o := &Observation{
		Token:     string(r.Message.Token),
		Paths:     paths,
		Composite: composite,
		Format:    f,
		Handle:    r.Peer,
	}
	c.obs.start(o, recs)
	resp.Then = func() { c.obs.activate(o) }
}

// nextSeq returns the next Observe sequence number (RFC 7641 §4.4: 24 bits,
// increasing; one counter for all of the client's observations keeps each
// observation's numbers increasing too).
func (c *Client) nextSeq() uint32 {
	return c.seq.Add(1) & (1<<24 - 1)
}

// emit sends one notification; it is the observe engine's output. recs nil
// means the observed path is gone: a 4.04 notification ends the observation
// (RFC 7641 §3.2).
func (c *Client) emit(o *Observation, recs []lwm2m.Record, con bool) {
	s, err := c.session()
	if err != nil {
		return
	}
	if c.cfg.QueueMode && c.Asleep() {
		// A sleeping device first wakes the server up with an Update, then
		// notifies (what Zephyr does when its RX is off); flushPending runs
		// after that Update.
		c.mu.Lock()
		if c.held == nil {
			c.held = make(map[string]*Observation)
		}
		c.held[o.Token] = o
		c.mu.Unlock()
		c.TriggerUpdate()
		return
	}
	var n *coap.Response
	if recs == nil {
		n = coap.ErrorResponse(coap.NotFound, "observed path no longer exists")
	} else {
		var b []byte
		var f lwm2m.Format
		if o.Composite {
			b, f, err = encodeComposite(o.Format, recs, c.tree.Registry())
		} else {
			b, f, err = encodeAnswer(c.cfg.Version, o.Format, o.Paths[0], recs, c.tree.Registry())
		}
		if err != nil {
			c.log.Warn("notification not encodable", "paths", o.Paths, "err", err)
			return
		}
		n = content(b, f)
		n.SetObserve(c.nextSeq())
	}
	peer, _ := o.Handle.(coap.Peer)
	if peer == (coap.Peer{}) {
		peer = s.server
	}
	c.touch()
	c.stats.notifications.Add(1)
	token := []byte(o.Token)
	if !(con || c.cfg.ConfirmableNotify) {
		n.Type = coap.NonConfirmable
		if err := s.ep.Notify(s.ctx, peer, token, n); err != nil {
			c.log.Debug("notification not sent", "err", err)
		}
		c.event(EventNotified, nil)
		return
	}
	n.Type = coap.Confirmable
	// A confirmable notification waits for its ACK; the caller may be a
	// value change on a shared simulation tick, so the wait runs apart.
	go func() {
		sent := time.Now()
		err := s.ep.Notify(s.ctx, peer, token, n)
		var latency time.Duration
		if err == nil {
			latency = time.Since(sent)
		}
		switch {
		case errors.Is(err, coap.ErrReset):
			c.obs.cancel(o.Token)
		case errors.Is(err, coap.ErrTimeout):
			// RFC 7641 §4.5: an unacknowledged CON notification ends the
			// observation.
			c.obs.cancel(o.Token)
		case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, coap.ErrClosed):
			c.log.Debug("notification failed", "err", err)
		}
		var acked []lwm2m.Record
		if err == nil {
			acked = recs
		}
		c.eventWith(EventNotified, err, latency, acked)
	}()
}

// flushPending sends the notifications held while the client slept, with
// current values.
func (c *Client) flushPending() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for _, o := range held {
		if o.isCancelled() {
			continue
		}
		recs, err := c.obs.read(o)
		if err != nil {
			c.obs.cancel(o.Token)
			c.emit(o, nil, true)
			continue
		}
		_, _, _, _, con := c.obs.periods(o)
		c.emit(o, recs, con)
	}
}

func (o *Observation) isCancelled() bool {
	o.eng.mu.Lock()
	defer o.eng.mu.Unlock()
	return o.cancelled
}
