package coap

// dedupInline is the longest reply an entry keeps in itself: an empty ACK
// (4 bytes), a piggybacked 2.04 with its token (at most 12), a 2.01 to a
// Register with its Location-Path (about 24). Longer replies (error
// diagnostics) are kept beside the entries.
const dedupInline = 32

// dedupRef names one entry of the cache: its sequence number, from 1. A
// job keeps the ref of its message's entry rather than a pointer, since the
// slot is reused once the entry is gone; the zero ref names none.
type dedupRef uint64

// dedupEntry remembers one received CON or NON message (RFC 7252 §4.5): the
// reply sent for it, so that a retransmission gets the same reply without
// the handler running twice. It holds no pointer, so the garbage collector
// never scans the cache (issue 15: half a million entries with a pointer
// each were most of the heap it marked on every cycle).
type dedupEntry struct {
	key      dedupKey
	expires  int64
	seq      uint64 // its dedupRef; 0 in a free slot
	emptyAck bool   // an empty ACK was sent; the response goes separately
	done     bool   // handling finished
	retry    bool   // a notification refused unacknowledged: deliver its retransmission
	stale    bool   // a notification older than the last one delivered (RFC 7641 §3.4)
	// rerun: the reply was not kept; a retransmission runs the handler
	// again. Only for a GET answered from a Body (one block of a large
	// resource such as a firmware image): GET is idempotent, and RFC 7252
	// §4.5 lets a server answer its retransmissions anew instead of
	// holding every block sent for EXCHANGE_LIFETIME (a 1,000-device
	// firmware rollout held hundreds of MiB of blocks that way).
	rerun bool
	kept  bool  // a reply is kept (inline, or in dedupCache.long)
	n     uint8 // length of the inline reply
	reply [dedupInline]byte
}

func (d *dedupEntry) ref() dedupRef { return dedupRef(d.seq) }

// dedupKey is a midKey without pointers: the address as 16 bytes, its zone
// as a small number the cache hands out.
type dedupKey struct {
	session uint64
	addr    [16]byte
	port    uint16
	zone    uint16
	mid     uint16
	bits    uint8 // the address's BitLen: 0 (none), 32 or 128
}

// dedupCache maps (peer, message id) to entries for EXCHANGE_LIFETIME. All
// entries live equally long, so insertion order is expiry order: the
// entries sit in a ring in that order, and expiry drops them from its head
// without ever scanning the cache (go-coap's UDP server scans its whole
// response cache on every packet). The ring grows with the traffic and
// shrinks back when it is mostly empty.
//
// It holds at most max entries: under a flood from many (spoofed) source
// addresses the oldest are forgotten early (evicted counts them), so a
// retransmission older than that could run its handler twice — better
// than memory growing with the flood for EXCHANGE_LIFETIME.
type dedupCache struct {
	ring    []dedupEntry        // entry seq sits at seq % len(ring)
	index   map[dedupKey]uint64 // key → seq of its live entry
	long    map[uint64][]byte   // replies longer than dedupInline, by seq
	zones   map[string]uint16
	head    uint64 // seq of the oldest live entry
	next    uint64 // seq of the next entry
	max     int
	evicted uint64
}

// dedupMinRing is the smallest ring; it doubles as traffic needs.
const dedupMinRing = 1024

func newDedupCache(max int) dedupCache {
	return dedupCache{index: make(map[dedupKey]uint64), long: make(map[uint64][]byte), head: 1, next: 1, max: max}
}

// keyOf converts k; every zone gets a number of its own (the last one is
// shared once 65,535 zones were seen).
func (c *dedupCache) keyOf(k midKey) dedupKey {
	a := k.peer.Addr.Addr()
	dk := dedupKey{session: k.peer.Session, addr: a.As16(), port: k.peer.Addr.Port(), mid: k.mid, bits: uint8(a.BitLen())}
	if z := a.Zone(); z != "" {
		n, ok := c.zones[z]
		if !ok {
			if c.zones == nil {
				c.zones = map[string]uint16{}
			}
			n = uint16(min(len(c.zones)+1, 1<<16-1))
			c.zones[z] = n
		}
		dk.zone = n
	}
	return dk
}

// at returns r's entry, nil once it is gone. The pointer is the cache's:
// use it under the endpoint's lock only, and not past the next add or
// expire.
func (c *dedupCache) at(r dedupRef) *dedupEntry {
	seq := uint64(r)
	if seq < c.head || seq >= c.next {
		return nil
	}
	d := &c.ring[seq%uint64(len(c.ring))]
	if d.seq != seq {
		return nil
	}
	return d
}

func (c *dedupCache) get(k midKey) *dedupEntry {
	seq, ok := c.index[c.keyOf(k)]
	if !ok {
		return nil
	}
	return c.at(dedupRef(seq))
}

// add stores a new entry for k, which has none.
func (c *dedupCache) add(k midKey, expires int64) *dedupEntry {
	for c.len() >= c.max && c.len() > 0 {
		c.drop()
		c.evicted++
	}
	if c.len() >= len(c.ring) {
		c.resize(max(dedupMinRing, 2*len(c.ring)))
	}
	seq := c.next
	c.next++
	key := c.keyOf(k)
	d := &c.ring[seq%uint64(len(c.ring))]
	*d = dedupEntry{key: key, expires: expires, seq: seq}
	c.index[key] = seq
	return d
}

// drop forgets the oldest entry.
func (c *dedupCache) drop() {
	d := &c.ring[c.head%uint64(len(c.ring))]
	if c.index[d.key] == d.seq {
		delete(c.index, d.key)
	}
	if d.kept && int(d.n) > dedupInline {
		delete(c.long, d.seq)
	}
	*d = dedupEntry{}
	c.head++
}

// expire drops entries whose time has passed, from the head of the ring.
func (c *dedupCache) expire(now int64) {
	for c.len() > 0 && c.ring[c.head%uint64(len(c.ring))].expires <= now {
		c.drop()
	}
	if n := len(c.ring); n > dedupMinRing && c.len()*8 < n {
		c.resize(n / 4)
	}
}

// resize moves the live entries into a ring of n slots (n > len()).
func (c *dedupCache) resize(n int) {
	ring := make([]dedupEntry, n)
	for seq := c.head; seq < c.next; seq++ {
		ring[seq%uint64(n)] = c.ring[seq%uint64(len(c.ring))]
	}
	c.ring = ring
}

// setReply keeps b as d's reply.
func (c *dedupCache) setReply(d *dedupEntry, b []byte) {
	if d.kept && int(d.n) > dedupInline {
		delete(c.long, d.seq)
	}
	d.kept = true
	if len(b) <= dedupInline {
		d.n = uint8(copy(d.reply[:], b))
		return
	}
	d.n = dedupInline + 1
	c.long[d.seq] = b
}

// replyOf returns d's reply (a copy the caller may keep), nil when none.
func (c *dedupCache) replyOf(d *dedupEntry) []byte {
	switch {
	case !d.kept:
		return nil
	case int(d.n) > dedupInline:
		return c.long[d.seq]
	default:
		return append([]byte(nil), d.reply[:d.n]...)
	}
}

func (c *dedupCache) len() int { return int(c.next - c.head) }
