package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// exchange is one message this endpoint sent and still cares about: a
// request awaiting its ACK and response, a CON notification or separate
// response awaiting its ACK, or a NON notification kept briefly so that a
// RST can be matched to its token.
type exchange struct {
	peer     Peer
	key      PeerKey
	mid      uint16
	token    string
	data     []byte
	con      bool
	timer    *time.Timer
	timeout  time.Duration
	tries    int
	acked    bool
	slot     bool        // holds an NSTART slot
	done     chan result // nil: nobody waits
	finished bool
	obs      *Observation // an observe registration
	oneWay   bool         // a notification or separate response: no response follows
}

type result struct {
	m   *Message
	err error
}

// ErrRejected: a peer acknowledged a notification with an error code (an
// LwM2M server answers 5.03 when it cannot take more, for example).
var ErrRejected = errors.New("coap: notification rejected")

// Do sends a request to a peer and returns its response (RFC 7252 §5). The
// request is confirmable unless req.Type is NonConfirmable; a token is
// generated when req has none. It waits for an NSTART slot of the peer,
// retransmits with exponential back-off (§4.2), accepts a piggybacked or a
// separate response, sends a large payload in Block1 blocks and fetches a
// large response's remaining Block2 blocks (RFC 7959), returning the whole
// body. It ends with ctx, or after Config.RequestTimeout when ctx has no
// deadline; timeouts wrap ErrTimeout. req is not modified.
func (e *Endpoint) Do(ctx context.Context, to Peer, req *Message) (*Message, error) {
	return e.do(ctx, to, req, nil)
}

func (e *Endpoint) do(ctx context.Context, to Peer, req *Message, obs *Observation) (*Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.RequestTimeout)
		defer cancel()
	}
	m := cloneShallow(req)
	if m.Type != NonConfirmable {
		m.Type = Confirmable
	}
	if len(m.Token) == 0 {
		m.Token = e.newToken()
	}
	var resp *Message
	var err error
	if len(m.Payload) > e.cfg.BlockSize {
		resp, err = e.sendBlock1(ctx, to, m, obs)
	} else {
		resp, err = e.roundTrip(ctx, to, m, obs)
	}
	if err != nil {
		return nil, err
	}
	if b2, ok := resp.Block(Block2); ok && b2.More && b2.Num == 0 {
		return e.fetchRest(ctx, to, m, resp)
	}
	return resp, nil
}

// cloneShallow copies the message header and option list (values shared).
func cloneShallow(m *Message) *Message {
	c := *m
	c.Options = slices.Clone(m.Options)
	return &c
}

// sendBlock1 sends m's payload in Block1 blocks (RFC 7959 §2.5), following
// the peer's smaller block size when its 2.31 asks for one.
func (e *Endpoint) sendBlock1(ctx context.Context, to Peer, m *Message, obs *Observation) (*Message, error) {
	body := m.Payload
	szx := SZXFor(e.cfg.BlockSize)
	off := 0
	for num := uint32(0); ; {
		size := 1 << (szx + 4)
		end := min(off+size, len(body))
		part := cloneShallow(m)
		part.Payload = body[off:end]
		more := end < len(body)
		// The last block carries the request's own token, which is the one
		// an observation registered this way is known by.
		if more {
			part.Token = e.newToken()
		}
		part.SetBlock(Block1, Block{Num: num, More: more, SZX: szx})
		if num == 0 {
			part.SetUint(Size1, uint32(len(body)))
		}
		resp, err := e.roundTrip(ctx, to, part, obs)
		if err != nil {
			return nil, err
		}
		if !more || resp.Code != Continue {
			return resp, nil
		}
		off = end
		if b, ok := resp.Block(Block1); ok && b.SZX < szx {
			szx = b.SZX
		}
		num = uint32(off >> (szx + 4))
		if off%(1<<(szx+4)) != 0 {
			return nil, blockErr("peer changed the block size to one that does not divide offset %d", off)
		}
	}
}

// fetchRest asks for the remaining Block2 blocks of a response (RFC 7959
// §2.4) and returns the response with the whole body. The ETag must stay
// the same across blocks (§2.4: a changed representation restarts).
func (e *Endpoint) fetchRest(ctx context.Context, to Peer, req, first *Message) (*Message, error) {
	b2, _ := first.Block(Block2)
	etag, _ := first.ETag()
	body := append([]byte(nil), first.Payload...)
	for num, szx := b2.Num+1, b2.SZX; ; num++ {
		if len(body) > e.cfg.MaxBodySize {
			return nil, blockErr("body exceeds %d bytes", e.cfg.MaxBodySize)
		}
		next := cloneShallow(req)
		next.Token = e.newToken()
		next.RemoveOption(Observe)
		next.RemoveOption(Block1)
		next.RemoveOption(Size1)
		if next.Code != FETCH {
			next.Payload = nil
		}
		next.SetBlock(Block2, Block{Num: num, SZX: szx})
		r, err := e.roundTrip(ctx, to, next, nil)
		if err != nil {
			return nil, err
		}
		if !r.Code.IsSuccess() {
			return r, nil
		}
		rb, ok := r.Block(Block2)
		if !ok || rb.Offset() != len(body) {
			return nil, blockErr("block %d answered with %+v at offset %d", num, rb, len(body))
		}
		if t, _ := r.ETag(); !bytes.Equal(t, etag) {
			return nil, blockErr("ETag changed from %x to %x during the transfer", etag, t)
		}
		body = append(body, r.Payload...)
		if !rb.More {
			out := first.Clone()
			out.Payload = body
			out.RemoveOption(Block2)
			return out, nil
		}
		szx = rb.SZX
		num = rb.Num
	}
}

// roundTrip runs one request/response exchange.
func (e *Endpoint) roundTrip(ctx context.Context, to Peer, m *Message, obs *Observation) (*Message, error) {
	k := to.Key()
	if err := e.acquire(ctx, k); err != nil {
		return nil, e.ctxErr(err)
	}
	x := &exchange{peer: to, key: k, token: string(m.Token), con: m.Type == Confirmable, slot: true, done: make(chan result, 1), obs: obs}
	if err := e.start(x, m, true); err != nil {
		e.release(k)
		return nil, err
	}
	select {
	case r := <-x.done:
		return r.m, r.err
	case <-ctx.Done():
		e.finish(x, nil, e.ctxErr(ctx.Err()))
		r := <-x.done
		return r.m, r.err
	}
}

func (e *Endpoint) ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// start assigns a message id, registers the exchange and sends it.
func (e *Endpoint) start(x *exchange, m *Message, awaitResponse bool) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	m.MessageID = e.nextMIDLocked(x.key)
	x.mid = m.MessageID
	data, err := m.Marshal()
	if err != nil {
		e.mu.Unlock()
		return err
	}
	if len(data) > e.cfg.MaxMessageSize {
		e.mu.Unlock()
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	x.data = data
	mk := midKey{x.key, x.mid}
	e.out[mk] = x
	if awaitResponse {
		e.tokens[x.token] = x
	}
	if x.con {
		f := 1 + e.rng.Float64()*(e.cfg.ACKRandomFactor-1)
		x.timeout = time.Duration(float64(e.cfg.ACKTimeout) * f)
		x.timer = time.AfterFunc(x.timeout, func() { e.retransmit(x) })
	} else {
		// A NON is kept only long enough to match a RST, which comes
		// within a round trip (a NON request waits for its response by
		// token until its deadline).
		keep := 4 * e.cfg.ACKTimeout
		x.timer = time.AfterFunc(keep, func() { e.forgetNon(x) })
	}
	e.mu.Unlock()
	e.write(data, x.peer)
	return nil
}

// forgetNon stops matching RSTs to a NON message after a while; a NON
// request keeps waiting for its response by token.
func (e *Endpoint) forgetNon(x *exchange) {
	e.mu.Lock()
	mk := midKey{x.key, x.mid}
	if e.out[mk] == x {
		delete(e.out, mk)
	}
	oneWay := x.oneWay
	e.mu.Unlock()
	if oneWay {
		e.finish(x, nil, nil)
	}
}

// retransmit is the CON timer (RFC 7252 §4.2): resend with a doubled
// timeout, or give up after MAX_RETRANSMIT.
func (e *Endpoint) retransmit(x *exchange) {
	e.mu.Lock()
	if x.finished || x.acked {
		e.mu.Unlock()
		return
	}
	if x.tries >= e.cfg.MaxRetransmit {
		e.mu.Unlock()
		e.stats.timeouts.Add(1)
		e.finish(x, nil, fmt.Errorf("%w: no acknowledgement after %d retransmissions", ErrTimeout, x.tries))
		return
	}
	x.tries++
	x.timeout *= 2
	x.timer.Reset(x.timeout)
	data := x.data
	e.mu.Unlock()
	e.stats.retransmissions.Add(1)
	e.write(data, x.peer)
}

// finish completes an exchange once: it unregisters it, frees its NSTART
// slot and hands the result to the waiter.
func (e *Endpoint) finish(x *exchange, m *Message, err error) {
	e.mu.Lock()
	slot, ok := e.endLocked(x)
	e.mu.Unlock()
	if ok {
		e.handOver(x, slot, m, err)
	}
}

// endLocked unregisters x; ok is false when it had ended already. slot
// reports an NSTART slot that handOver must free.
func (e *Endpoint) endLocked(x *exchange) (slot, ok bool) {
	if x.finished {
		return false, false
	}
	x.finished = true
	if x.timer != nil {
		x.timer.Stop()
	}
	mk := midKey{x.key, x.mid}
	if e.out[mk] == x {
		delete(e.out, mk)
	}
	if e.tokens[x.token] == x {
		delete(e.tokens, x.token)
	}
	slot = x.slot
	x.slot = false
	return slot, true
}

// handOver frees an ended exchange's slot and gives its waiter the result.
func (e *Endpoint) handOver(x *exchange, slot bool, m *Message, err error) {
	if slot {
		e.release(x.key)
	}
	if x.done != nil {
		x.done <- result{m, err}
	}
}

// receiveAckRst matches an ACK or RST to what we sent by message id
// (RFC 7252 §4.2, §4.3).
func (e *Endpoint) receiveAckRst(m *Message, from Peer) {
	mk := midKey{from.Key(), m.MessageID}
	e.mu.Lock()
	x := e.out[mk]
	if x == nil || x.finished {
		e.mu.Unlock()
		return
	}
	delete(e.out, mk)
	x.acked = true
	e.verifiedLocked(mk.peer)
	if x.timer != nil {
		x.timer.Stop()
	}
	slot := x.slot
	x.slot = false
	e.mu.Unlock()
	// An acknowledged request is no longer outstanding (§4.7), even if its
	// response comes separately.
	if slot {
		e.release(x.key)
	}
	switch {
	case m.Type == Reset:
		e.stats.resets.Add(1)
		if x.done == nil && e.onReset != nil {
			e.onReset(x.peer, []byte(x.token))
		}
		e.finish(x, nil, ErrReset)
	case x.oneWay:
		if m.Code != Empty {
			e.finish(x, nil, fmt.Errorf("%w: %s", ErrRejected, m.Code))
			return
		}
		e.finish(x, nil, nil)
	case m.Code == Empty:
		// The response will come separately (§5.2.2); keep waiting by token.
	case string(m.Token) == x.token:
		e.complete(x, m, from)
	}
}

// complete delivers a response to its request; for an observe request a
// successful response with an Observe option establishes the observation
// before anyone can see the response, so no notification is missed.
func (e *Endpoint) complete(x *exchange, m *Message, from Peer) {
	if o := x.obs; o != nil {
		if seq, ok := m.Observe(); ok && m.Code.IsSuccess() {
			e.mu.Lock()
			if !e.closed {
				e.activateLocked(o, seq, from, time.Now())
			}
			e.mu.Unlock()
		}
	}
	e.finish(x, m, nil)
}

// activateLocked establishes an observation on the response that carried
// Observe number seq: notifications with its token are delivered from now.
func (e *Endpoint) activateLocked(o *Observation, seq uint32, from Peer, now time.Time) {
	o.active = true
	o.seq = seq
	o.when = now
	o.peer = from
	e.obs[string(o.token)] = o
}

// firstNotificationLocked establishes x's observation on m and returns it
// when m is to be delivered as the observation's first notification
// instead of being acknowledged at once as a separate response: m is a
// confirmable success carrying Observe and the whole body, in answer to
// x's observe request. RFC 7641 §3.2 makes every response to that
// request a notification, and this is how one reaches the observer when
// the device answered the request with an empty ACK and sends the
// response separately (RFC 7252 §5.2.2), or when its piggybacked response
// was lost and its first notification arrives while the request is still
// unacknowledged. Delivered like a notification, its ACK waits for the
// observation's function (Notification.Defer), so values acknowledged
// are values kept. A response in blocks keeps the separate-response path:
// a block-wise notification is acknowledged before its remaining blocks
// are fetched anyway (RFC 7959 §2.6). Error responses and NON ones keep
// it too: the former establish nothing, the latter are not acknowledged.
func (e *Endpoint) firstNotificationLocked(x *exchange, m *Message, from Peer, now time.Time) *Observation {
	o := x.obs
	if o == nil || e.closed || m.Type != Confirmable || !m.Code.IsSuccess() || x.token != string(o.token) {
		return nil
	}
	seq, ok := m.Observe()
	if !ok {
		return nil
	}
	if b2, ok := m.Block(Block2); ok && b2.More {
		return nil
	}
	e.activateLocked(o, seq, from, now)
	o.first = true
	return o
}

// receiveResponse handles a response in its own CON or NON message: a
// separate response or a notification (RFC 7252 §5.2.2, RFC 7641 §3.2).
func (e *Endpoint) receiveResponse(m *Message, from Peer, now time.Time) {
	k := from.Key()
	mk := midKey{k, m.MessageID}
	ns := now.UnixNano()
	e.mu.Lock()
	e.dedup.expire(ns)
	if d := e.dedup.get(mk); d != nil {
		if o := e.obs[string(m.Token)]; d.retry && o != nil && o.active && o.accepts(from) {
			// The retransmission of a refused notification: deliver it
			// again, whatever its sequence number — stale (§3.4) when it
			// was, or when a newer one was delivered since (the
			// observation's number moved on from its own).
			d.retry, d.done = false, false
			if seq, ok := m.Observe(); ok && seq != o.seq && !d.stale {
				d.stale = true
				e.stats.staleNotifications.Add(1)
			}
			if !d.stale {
				o.peer = from
			}
			j := job{peer: from, msg: m, entry: d.ref(), obs: o, stale: d.stale} // d is the cache's: read under e.mu
			e.mu.Unlock()
			e.dispatchNotification(j)
			return
		}
		reply := e.dedup.replyOf(d)
		e.mu.Unlock()
		e.stats.duplicates.Add(1)
		if reply != nil && m.Type == Confirmable {
			e.write(reply, from)
		}
		return
	}
	if x := e.tokens[string(m.Token)]; x != nil && x.key == k {
		e.verifiedLocked(k)
		d := e.dedup.add(mk, ns+e.cfg.exchangeLifetime().Nanoseconds())
		if o := e.firstNotificationLocked(x, m, from, now); o != nil {
			// The observe request is answered (its caller gets m, marked
			// by Observation.FirstNotified), but m's ACK is the
			// notification path's to send: not before the function took
			// it, and never when it refused it (its retransmission is
			// delivered again, d.retry).
			slot, _ := e.endLocked(x)
			ref := d.ref()
			e.mu.Unlock()
			e.handOver(x, slot, m, nil)
			e.dispatchNotification(job{peer: from, msg: m, entry: ref, obs: o})
			return
		}
		d.done = true
		var ack []byte
		if m.Type == Confirmable {
			ack, _ = (&Message{Type: Acknowledgement, MessageID: m.MessageID}).Marshal()
			e.dedup.setReply(d, ack)
		}
		e.mu.Unlock()
		if ack != nil {
			e.write(ack, from)
		}
		e.complete(x, m, from)
		return
	}
	if o := e.obs[string(m.Token)]; o != nil && o.active && o.accepts(from) {
		d := e.dedup.add(mk, ns+e.cfg.exchangeLifetime().Nanoseconds())
		seq, hasSeq := m.Observe()
		// RFC 7641 §3.4: a notification older than the last one
		// delivered is stale — it must not be taken as the resource's
		// current state. It is no duplicate, though (those were caught
		// above by message id, RFC 7252 §4.5): reordered on the way, it
		// carries a reading of its own, which the device was or will be
		// told is received. So it is delivered like a fresh one, marked
		// Notification.Stale, and acknowledged the same way (after its
		// consumer took it); the observation's freshness state (seq,
		// when) and the peer's address stay those of the newest.
		d.stale = hasSeq && !newer(o.seq, o.when, seq, now)
		if d.stale {
			e.stats.staleNotifications.Add(1)
		} else {
			if hasSeq {
				o.seq, o.when = seq, now
			}
			o.peer = from
		}
		j := job{peer: from, msg: m, entry: d.ref(), obs: o, stale: d.stale}
		e.mu.Unlock()
		e.dispatchNotification(j)
		return
	}
	e.mu.Unlock()
	// Nobody wants it: reject, which also cancels an unwanted observation
	// (RFC 7641 §3.6, RFC 7252 §4.2, §4.3).
	e.stats.rejected.Add(1)
	e.send(&Message{Type: Reset, MessageID: m.MessageID}, from)
}

// dispatchNotification queues a notification for its peer's worker; when
// the queue is full a confirmable one is refused (refuseNotification).
func (e *Endpoint) dispatchNotification(j job) {
	e.stats.notifications.Add(1)
	if !e.dispatch(j) && j.msg.Type == Confirmable {
		e.refuseNotification(j.entry)
	}
}

// replyRerun sends the reply to a GET answered from a Body without
// keeping it: a retransmission runs the handler again (dedupEntry.rerun).
func (e *Endpoint) replyRerun(r dedupRef, m *Message, to Peer) {
	b, err := m.Marshal()
	if err != nil {
		return
	}
	e.mu.Lock()
	if d := e.dedup.at(r); d != nil {
		d.done, d.rerun = true, true
	}
	e.mu.Unlock()
	e.write(b, to)
}

// replyOnce records and sends the reply to a deduplicated message (sent
// all the same when the cache forgot the message meanwhile).
func (e *Endpoint) replyOnce(r dedupRef, m *Message, to Peer) {
	b, err := m.Marshal()
	if err != nil {
		return
	}
	e.mu.Lock()
	if d := e.dedup.at(r); d != nil {
		e.dedup.setReply(d, b)
		d.done = true
	}
	e.mu.Unlock()
	e.write(b, to)
}

// Notify sends a notification of an observation this endpoint serves
// (RFC 7641 §4.2) to an observer: n carries the response code, options
// (set the Observe sequence number with SetObserve) and payload; token is
// the observation's token. n.Type NonConfirmable sends a NON notification
// and returns at once (a RST to it is reported to the WithResetHandler
// function); otherwise it is confirmable and Notify waits for the ACK: it
// returns ErrReset when the observer rejects it (cancel the observation),
// ErrTimeout when it stays unacknowledged, ErrRejected when the ACK carries
// an error code. A payload larger than the block size is sent as its first
// Block2 block; the observer fetches the rest with GET (RFC 7959 §2.6).
func (e *Endpoint) Notify(ctx context.Context, to Peer, token []byte, n *Response) error {
	m := cloneShallow(&n.Message)
	m.Token = append([]byte(nil), token...)
	m, err := e.block2(m, n, 0, SZXFor(e.cfg.BlockSize), false)
	if err != nil {
		return err
	}
	x := &exchange{peer: to, key: to.Key(), token: string(m.Token), oneWay: true}
	if n.Type == NonConfirmable {
		m.Type = NonConfirmable
		return e.start(x, m, false)
	}
	m.Type = Confirmable
	x.con = true
	x.done = make(chan result, 1)
	if err := e.start(x, m, false); err != nil {
		return err
	}
	select {
	case r := <-x.done:
		return r.err
	case <-ctx.Done():
		e.finish(x, nil, e.ctxErr(ctx.Err()))
		return (<-x.done).err
	}
}
