package coap

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Observation is an observation this endpoint holds on a peer's resource
// (RFC 7641 §3): notifications that carry its token go to its function.
type Observation struct {
	e     *Endpoint
	token []byte
	req   *Message // the registering request, for block fetches and cancel
	fn    func(*Notification) error

	// guarded by e.mu
	peer   Peer
	seq    uint32
	when   time.Time
	active bool
	first  bool // the observe's response was delivered to fn (FirstNotified)
}

// Notification is one notification delivered to an Observation's function.
type Notification struct {
	// Peer sent it (after NAT rebinding this can differ from the address
	// the observation was registered with).
	Peer Peer
	// Message is the notification with its whole body (blocks fetched).
	Message *Message
	// Observation it belongs to.
	Observation *Observation
	// Stale marks a notification older than the last one delivered for
	// the observation (RFC 7641 §3.4: its Observe number is behind, it
	// was reordered on the way). It must not be taken as the resource's
	// current state; it is delivered anyway because it is not a
	// duplicate and may carry data of its own (a reading taken before
	// the newer one). It is acknowledged like any other notification.
	Stale bool

	settle   func(error) // nil when the endpoint already acknowledged it
	deferred bool
	once     sync.Once
}

// Defer takes the acknowledgement over from the endpoint: the function's
// return no longer acknowledges the notification, done does, exactly once
// and from any goroutine — with nil to send the empty ACK, with an error to
// leave it unacknowledged (see refuseNotification), as when the function
// returns an error. Use it to acknowledge only once the values are stored
// without holding the peer's worker meanwhile. A function returning an
// error after Defer refuses the notification; done is then a no-op.
// Notifications acknowledged before delivery (the first block of a
// block-wise one, RFC 7959 §2.6) get a no-op done.
func (n *Notification) Defer() (done func(error)) {
	n.deferred = true
	return n.finish
}

func (n *Notification) finish(err error) {
	n.once.Do(func() {
		if n.settle != nil {
			n.settle(err)
		}
	})
}

// Observe registers an observation on a peer (RFC 7641 §3.1): it sends req
// (GET, or FETCH for LwM2M Observe-Composite) with Observe=0 like Do, and
// when the response is a success carrying an Observe option the
// observation is established and every later notification with its token
// goes to fn, on the endpoint's worker for that peer, in order of
// arrival; one older than the last delivered (§3.4, reordered on the
// way) is delivered too, with Notification.Stale set. A notification with an error code is delivered and ends
// the observation (§3.2). fn's error leaves a confirmable notification
// unacknowledged, so the peer retransmits it (see refuseNotification);
// Notification.Defer acknowledges later.
//
// It returns the observation and the first response. When the response is
// an error code, the observation is nil and err is nil: look at resp.Code.
// When it is a success without Observe, err is ErrNotObserved.
//
// A response that comes as a confirmable message of its own — a separate
// response after an empty ACK (RFC 7252 §5.2.2), or the first
// notification when the piggybacked response was lost — is a notification
// too (RFC 7641 §3.2): it is delivered to fn as well and acknowledged only
// as fn lets it, like any later one, so that what the peer was told is
// received was taken. Observation.FirstNotified then reports true: the
// response's values are fn's to keep, not the caller's.
func (e *Endpoint) Observe(ctx context.Context, to Peer, req *Message, fn func(*Notification) error) (*Observation, *Message, error) {
	m := cloneShallow(req)
	m.SetObserve(0)
	if len(m.Token) == 0 {
		m.Token = e.newToken()
	}
	o := &Observation{e: e, token: m.Token, req: m, fn: fn, peer: to}
	resp, err := e.do(ctx, to, m, o)
	if err != nil {
		o.Forget()
		return nil, nil, err
	}
	e.mu.Lock()
	active := o.active || o.first // fn may have ended it since
	e.mu.Unlock()
	if !active {
		if resp.Code.IsSuccess() {
			return nil, resp, ErrNotObserved
		}
		return nil, resp, nil
	}
	return o, resp, nil
}

// Resume re-establishes an observation that an earlier run of the process
// registered on a peer with req (Token set, Observe=0 added here) and that
// the peer still holds (RFC 7641 §3.1: the observer's state is only the
// token and the request). Nothing is sent: notifications carrying the
// token are delivered to fn as if Observe had made the observation. No
// earlier notification is known, so the first one is taken whatever its
// sequence number (§3.4). Call it before Run or while running.
func (e *Endpoint) Resume(to Peer, req *Message, fn func(*Notification) error) (*Observation, error) {
	if len(req.Token) == 0 || len(req.Token) > MaxTokenLength {
		return nil, fmt.Errorf("coap: resume: token of %d bytes", len(req.Token))
	}
	m := cloneShallow(req)
	m.SetObserve(0)
	o := &Observation{e: e, token: m.Token, req: m, fn: fn, peer: to, active: true}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if e.obs[string(m.Token)] != nil || e.tokens[string(m.Token)] != nil {
		return nil, ErrObservationExists
	}
	e.obs[string(m.Token)] = o
	return o, nil
}

// FirstNotified reports whether the response that established the
// observation was delivered to its function as the first notification
// (see Observe): its values went there, acknowledged as the function let
// them, and are not Observe's caller's to keep.
func (o *Observation) FirstNotified() bool {
	o.e.mu.Lock()
	defer o.e.mu.Unlock()
	return o.first
}

// Token is the observation's token.
func (o *Observation) Token() []byte { return o.token }

// Peer is the address notifications last came from.
func (o *Observation) Peer() Peer {
	o.e.mu.Lock()
	defer o.e.mu.Unlock()
	return o.peer
}

// Active reports whether notifications are still delivered.
func (o *Observation) Active() bool {
	o.e.mu.Lock()
	defer o.e.mu.Unlock()
	return o.active
}

// Forget cancels the observation reactively: the next notification is
// answered with RST, which makes the peer drop it (RFC 7641 §3.6).
func (o *Observation) Forget() {
	o.e.mu.Lock()
	defer o.e.mu.Unlock()
	o.active = false
	if o.e.obs[string(o.token)] == o {
		delete(o.e.obs, string(o.token))
	}
}

// Cancel cancels the observation proactively (RFC 7641 §3.6): the
// registering request again, with Observe=1 and the same token. It returns
// the peer's response (a last representation).
func (o *Observation) Cancel(ctx context.Context) (*Message, error) {
	peer := o.Peer()
	o.Forget()
	m := cloneShallow(o.req)
	m.SetObserve(1)
	m.Token = o.token
	return o.e.do(ctx, peer, m, nil)
}

// accepts reports whether a notification from p may belong to o: from the
// same peer; for plain CoAP from a new address after NAT rebinding, since
// the 8-byte random token already identifies it; for DTLS from a new
// session of the same authenticated identity (the device handshook again,
// for example after the server restarted and lost the session).
func (o *Observation) accepts(p Peer) bool {
	if o.peer.Key() == p.Key() {
		return true
	}
	if o.peer.Secure() || p.Secure() {
		return o.peer.Secure() && p.Secure() && o.peer.Identity != "" && o.peer.Identity == p.Identity
	}
	return true
}

// newer reports whether notification v2 received at t2 is newer than v1
// received at t1 (RFC 7641 §3.4).
func newer(v1 uint32, t1 time.Time, v2 uint32, t2 time.Time) bool {
	return (v1 < v2 && v2-v1 < 1<<23) || (v1 > v2 && v1-v2 > 1<<23) || t2.After(t1.Add(128*time.Second))
}

// deliverNotification runs on the peer's worker.
func (e *Endpoint) deliverNotification(j job) {
	m, o := j.msg, j.obs
	con := m.Type == Confirmable
	ack := &Message{Type: Acknowledgement, MessageID: m.MessageID}
	if b2, ok := m.Block(Block2); ok && b2.More && b2.Num == 0 {
		// RFC 7959 §2.6: acknowledge, then fetch the rest without Observe.
		if con {
			e.replyOnce(j.entry, ack, j.peer)
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
		full, err := e.fetchRest(ctx, j.peer, o.req, m)
		cancel()
		if err != nil {
			e.log.Debug("notification blocks", "peer", j.peer.Addr, "err", err)
			return
		}
		if o.Active() {
			_ = o.fn(&Notification{Peer: j.peer, Message: full, Observation: o, Stale: j.stale})
		}
		return
	}
	n := &Notification{Peer: j.peer, Message: m, Observation: o, Stale: j.stale}
	n.settle = func(err error) { e.settleNotification(j, err) }
	var err error
	if o.Active() {
		err = o.fn(n)
	}
	if !m.Code.IsSuccess() {
		// An error notification ends the observation (RFC 7641 §3.2).
		o.Forget()
	}
	if err != nil || !n.deferred {
		n.finish(err)
	}
}

// settleNotification acknowledges a delivered notification, or refuses it.
func (e *Endpoint) settleNotification(j job, err error) {
	if j.msg.Type != Confirmable {
		e.mu.Lock()
		if d := e.dedup.at(j.entry); d != nil {
			d.done = true
		}
		e.mu.Unlock()
		return
	}
	if err != nil {
		e.stats.overloaded.Add(1)
		e.refuseNotification(j.entry)
		return
	}
	e.replyOnce(j.entry, &Message{Type: Acknowledgement, MessageID: j.msg.MessageID}, j.peer)
}

// refuseNotification leaves a confirmable notification the consumer could
// not take (a full queue, a failing disk) unacknowledged, and lets its
// retransmission be delivered again. A notification is a response (RFC
// 7641 §1.2), so there is no error response to it: an ACK, even one
// carrying 5.03, tells the device it was received — Zephyr's LwM2M engine
// (notify_message_reply_cb) looks only for RST and counts any ACK as
// delivered, and the values would be lost. RST would make the device drop
// the observation (RFC 7641 §3.6, §4.2) and the values with it. Sending
// nothing makes the device retransmit with exponential back-off (RFC
// 7252 §4.2), the same message id, which the deduplication cache (§4.5)
// now lets through once more; only after MAX_RETRANSMIT unanswered tries
// (about 45 s with the defaults) does the device give up on the
// observation (RFC 7641 §4.5).
func (e *Endpoint) refuseNotification(r dedupRef) {
	e.mu.Lock()
	if d := e.dedup.at(r); d != nil {
		d.retry = true
		d.done = true
	}
	e.mu.Unlock()
}
