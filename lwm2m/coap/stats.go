package coap

import "sync/atomic"

type counters struct {
	received, sent, requests, notifications, duplicates, retransmissions,
	timeouts, resets, rejected, rateLimited, malformed, overloaded,
	staleNotifications, writeErrors, peerBusy, trimmed atomic.Uint64
}

// Stats are an endpoint's counters since it was created, for /metrics.
type Stats struct {
	Received           uint64 // datagrams read
	Sent               uint64 // datagrams written
	Requests           uint64 // requests handled (duplicates excluded)
	Notifications      uint64 // notifications accepted for delivery
	Duplicates         uint64 // deduplicated retransmissions (§4.5)
	Retransmissions    uint64 // CON messages this endpoint resent
	Timeouts           uint64 // CON messages never acknowledged
	Resets             uint64 // RST received
	Rejected           uint64 // responses nobody waited for, answered with RST
	RateLimited        uint64 // datagrams dropped by the per-peer rate limit
	Malformed          uint64 // undecodable or oversized datagrams
	Overloaded         uint64 // work refused because a queue was full, or consumer errors
	StaleNotifications uint64 // notifications older than the last one, delivered out of order marked Stale (RFC 7641 §3.4)
	WriteErrors        uint64
	PeerBusy           uint64 // outgoing requests refused: MaxWaiting already waited for the peer
	Trimmed            uint64 // responses cut to AmplificationFactor for an unverified peer
	DedupEvicted       uint64 // message ids forgotten early, MaxDedup being reached
	// Gauges.
	Queued       int // jobs waiting for a worker
	Waiting      int // outgoing requests waiting for an NSTART slot
	Peers        int // peers with state
	Exchanges    int // messages awaiting ACK/RST
	Pending      int // requests awaiting a response
	Observations int // observations held on peers
	Dedup        int // remembered message ids
}

// Stats returns a snapshot of the counters.
func (e *Endpoint) Stats() Stats {
	s := Stats{
		Received: e.stats.received.Load(), Sent: e.stats.sent.Load(), Requests: e.stats.requests.Load(),
		Notifications: e.stats.notifications.Load(), Duplicates: e.stats.duplicates.Load(),
		Retransmissions: e.stats.retransmissions.Load(), Timeouts: e.stats.timeouts.Load(),
		Resets: e.stats.resets.Load(), Rejected: e.stats.rejected.Load(), RateLimited: e.stats.rateLimited.Load(),
		Malformed: e.stats.malformed.Load(), Overloaded: e.stats.overloaded.Load(),
		StaleNotifications: e.stats.staleNotifications.Load(), WriteErrors: e.stats.writeErrors.Load(),
		PeerBusy: e.stats.peerBusy.Load(), Trimmed: e.stats.trimmed.Load(),
	}
	e.mu.Lock()
	s.DedupEvicted = e.dedup.evicted
	s.Peers, s.Exchanges, s.Pending, s.Observations, s.Dedup = len(e.peers), len(e.out), len(e.tokens), len(e.obs), e.dedup.len()
	s.Waiting = e.waiting
	e.mu.Unlock()
	s.Queued = e.queue.len()
	return s
}
