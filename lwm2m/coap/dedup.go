package coap

// dedupEntry remembers one received CON or NON message (RFC 7252 §4.5): the
// reply sent for it, so that a retransmission gets the same reply without
// the handler running twice.
type dedupEntry struct {
	reply    []byte // the ACK/response sent, nil while the handler runs
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
	rerun   bool
	expires int64
}

type dedupItem struct {
	key     midKey
	expires int64
}

// dedupCache maps (peer, message id) to entries for EXCHANGE_LIFETIME. All
// entries live equally long, so insertion order is expiry order: a FIFO
// gives expiry without ever scanning the cache (go-coap's UDP server scans
// its whole response cache on every packet).
//
// It holds at most max entries: under a flood from many (spoofed) source
// addresses the oldest are forgotten early (evicted counts them), so a
// retransmission older than that could run its handler twice — better
// than memory growing with the flood for EXCHANGE_LIFETIME.
type dedupCache struct {
	m       map[midKey]*dedupEntry
	fifo    []dedupItem
	head    int
	max     int
	evicted uint64
}

func newDedupCache(max int) dedupCache {
	return dedupCache{m: make(map[midKey]*dedupEntry), max: max}
}

func (c *dedupCache) get(k midKey) *dedupEntry { return c.m[k] }

func (c *dedupCache) add(k midKey, expires int64) *dedupEntry {
	for len(c.m) >= c.max && c.head < len(c.fifo) {
		it := c.fifo[c.head]
		c.fifo[c.head] = dedupItem{}
		c.head++
		if d := c.m[it.key]; d != nil && d.expires == it.expires {
			delete(c.m, it.key)
			c.evicted++
		}
	}
	d := &dedupEntry{expires: expires}
	c.m[k] = d
	c.fifo = append(c.fifo, dedupItem{key: k, expires: expires})
	return d
}

// expire drops entries whose time has passed, from the head of the FIFO.
func (c *dedupCache) expire(now int64) {
	for c.head < len(c.fifo) && c.fifo[c.head].expires <= now {
		it := c.fifo[c.head]
		c.fifo[c.head] = dedupItem{}
		c.head++
		// A newer entry under the same key has its own, later item.
		if d := c.m[it.key]; d != nil && d.expires == it.expires {
			delete(c.m, it.key)
		}
	}
	c.compact()
}

// compact drops the consumed head of the FIFO once it is most of it.
func (c *dedupCache) compact() {
	if c.head > 1024 && c.head*2 > len(c.fifo) {
		n := copy(c.fifo, c.fifo[c.head:])
		clear(c.fifo[n:])
		c.fifo = c.fifo[:n]
		c.head = 0
	}
}

func (c *dedupCache) len() int { return len(c.m) }
