package coap

import (
	"context"
	"fmt"
	"time"
)

// peerState is what the endpoint remembers per peer: a token bucket for the
// rate limit, the message id counter (message ids are per endpoint pair,
// RFC 7252 §4.4) and the NSTART slots (§4.7). No goroutine, no timer.
type peerState struct {
	tokens   float64
	last     int64 // unix nanos of the last bucket refill
	seen     int64 // unix nanos of the last datagram in either direction
	mid      uint16
	active   int             // outstanding interactions (NSTART)
	waiters  []chan struct{} // requests waiting for a slot, FIFO
	verified bool            // it answered a message sent to it (RFC 7252 §11.3)
}

// peerLocked returns (creating) the state of a peer; e.mu is held.
func (e *Endpoint) peerLocked(k PeerKey, now int64) *peerState {
	p := e.peers[k]
	if p == nil {
		p = &peerState{tokens: float64(e.cfg.PeerBurst), last: now, seen: now, mid: uint16(e.rng.Uint64())}
		e.peers[k] = p
	}
	return p
}

// admit charges one datagram to the peer's token bucket.
func (e *Endpoint) admit(from Peer, now time.Time) bool {
	ns := now.UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	k := from.Key()
	if _, known := e.peers[k]; !known && len(e.peers) >= e.cfg.MaxPeers {
		return false
	}
	p := e.peerLocked(k, ns)
	p.seen = ns
	if e.cfg.PeerRate <= 0 {
		return true
	}
	p.tokens += float64(ns-p.last) / 1e9 * e.cfg.PeerRate
	p.last = ns
	if max := float64(e.cfg.PeerBurst); p.tokens > max {
		p.tokens = max
	}
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// nextMIDLocked returns a fresh message id for a peer; e.mu is held.
func (e *Endpoint) nextMIDLocked(k PeerKey) uint16 {
	p := e.peerLocked(k, time.Now().UnixNano())
	p.mid++
	return p.mid
}

// acquire waits for one of the peer's NSTART slots.
func (e *Endpoint) acquire(ctx context.Context, k PeerKey) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	p := e.peerLocked(k, time.Now().UnixNano())
	if p.active < e.cfg.NStart {
		p.active++
		e.mu.Unlock()
		return nil
	}
	if len(p.waiters) >= e.cfg.MaxWaiting {
		e.mu.Unlock()
		e.stats.peerBusy.Add(1)
		return fmt.Errorf("%w: %d waiting", ErrPeerBusy, e.cfg.MaxWaiting)
	}
	w := make(chan struct{})
	p.waiters = append(p.waiters, w)
	e.waiting++
	e.mu.Unlock()
	select {
	case <-w:
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return nil // the slot was handed over by release
	case <-ctx.Done():
		e.mu.Lock()
		for i, x := range p.waiters {
			if x == w {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				e.waiting--
				e.mu.Unlock()
				return ctx.Err()
			}
		}
		e.mu.Unlock()
		// Handed over just as ctx ended: pass it on.
		e.release(k)
		return ctx.Err()
	}
}

// release frees a slot, handing it to the oldest waiter.
func (e *Endpoint) release(k PeerKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.peers[k]
	if p == nil {
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		e.waiting--
		close(w)
		return
	}
	if p.active > 0 {
		p.active--
	}
}

// sweep forgets idle peers, expired dedup entries and stale Block1
// transfers. It runs once a second from Run; dedup expiry is also done on
// every received datagram, from the head of its ring, without scanning.
func (e *Endpoint) sweep(now time.Time) {
	ns := now.UnixNano()
	idle := e.cfg.PeerIdle.Nanoseconds()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dedup.expire(ns)
	// Idle peers and stale transfers are few and change slowly; looking at
	// them every few seconds keeps an idle fleet's CPU cost near zero.
	if ns-e.lastSweep < 10*time.Second.Nanoseconds() {
		return
	}
	e.lastSweep = ns
	for k, p := range e.peers {
		if ns-p.seen > idle && p.active == 0 && len(p.waiters) == 0 {
			delete(e.peers, k)
		}
	}
	for k, b := range e.block1 {
		if ns > b.expires {
			delete(e.block1, k)
		}
	}
}

// Verify marks a peer's address as verified (RFC 7252 §11.3): responses to
// it are no longer held to AmplificationFactor. The endpoint verifies a
// peer by itself once the peer answers a message sent to it; an
// application calls Verify when the peer proved it receives at its
// address otherwise — an LwM2M Update naming the registration id the
// server sent there, for example.
func (e *Endpoint) Verify(p Peer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peerLocked(p.Key(), time.Now().UnixNano()).verified = true
}

// verified reports whether responses to p may be larger than its requests.
func (e *Endpoint) verified(p Peer) bool {
	if p.Secure() || e.cfg.AmplificationFactor < 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.peers[p.Key()]
	return st != nil && st.verified
}

// verifiedLocked records that a peer answered what was sent to it; e.mu is
// held.
func (e *Endpoint) verifiedLocked(k PeerKey) {
	if st := e.peers[k]; st != nil {
		st.verified = true
	}
}
