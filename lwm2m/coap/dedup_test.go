package coap

import (
	"bytes"
	"net/netip"
	"runtime"
	"testing"
)

// TestDedupBounded: past MaxDedup the oldest message ids are forgotten,
// counted; the newest are still answered from the cache.
func TestDedupBounded(t *testing.T) {
	c := newDedupCache(3)
	for i := range 10 {
		c.add(midKey{peerKey(i), uint16(i)}, int64(1000+i))
	}
	if c.len() != 3 || c.evicted != 7 {
		t.Fatalf("len %d, evicted %d", c.len(), c.evicted)
	}
	for i := 7; i < 10; i++ {
		if c.get(midKey{peerKey(i), uint16(i)}) == nil {
			t.Fatalf("newest entry %d forgotten", i)
		}
	}
	for i := range 7 {
		if c.get(midKey{peerKey(i), uint16(i)}) != nil {
			t.Fatalf("evicted entry %d still found", i)
		}
	}
	c.expire(2000)
	if c.len() != 0 || len(c.index) != 0 {
		t.Fatalf("after expiry: %d entries, %d keys", c.len(), len(c.index))
	}
}

// TestDedupRefGone: a job's ref to an entry the cache forgot resolves to
// nothing, also once its slot holds another entry; a live one resolves.
func TestDedupRefGone(t *testing.T) {
	c := newDedupCache(2)
	first := c.add(midKey{peerKey(1), 1}, 100).ref()
	second := c.add(midKey{peerKey(2), 2}, 100).ref()
	c.add(midKey{peerKey(3), 3}, 100) // evicts first
	if c.at(first) != nil {
		t.Fatal("an evicted entry still resolves")
	}
	if d := c.at(second); d == nil || d.key.mid != 2 {
		t.Fatalf("a live entry resolves to %+v", d)
	}
	if c.at(0) != nil {
		t.Fatal("the zero ref resolves")
	}
	for i := range 3000 { // the ring grows and reuses slots
		c.add(midKey{peerKey(10 + i), uint16(i)}, 100)
	}
	if c.at(first) != nil || c.at(second) != nil {
		t.Fatal("a ref resolves to the entry now in its slot")
	}
}

// TestDedupReplies: short replies are kept in the entry, long ones beside
// it; both come back whole, and the long ones are let go with the entry.
func TestDedupReplies(t *testing.T) {
	c := newDedupCache(4)
	short := c.add(midKey{peerKey(1), 1}, 100)
	if c.replyOf(short) != nil {
		t.Fatal("an entry without a reply returns one")
	}
	ack := []byte{0x60, 0, 0, 1}
	c.setReply(short, ack)
	long := c.add(midKey{peerKey(2), 2}, 100)
	diag := bytes.Repeat([]byte{'x'}, dedupInline+40)
	c.setReply(long, diag)
	if got := c.replyOf(c.get(midKey{peerKey(1), 1})); !bytes.Equal(got, ack) {
		t.Fatalf("short reply %x", got)
	}
	if got := c.replyOf(c.get(midKey{peerKey(2), 2})); !bytes.Equal(got, diag) {
		t.Fatalf("long reply of %d bytes", len(got))
	}
	c.setReply(long, ack) // replaced by a short one
	if len(c.long) != 0 || !bytes.Equal(c.replyOf(long), ack) {
		t.Fatalf("long replies %d, reply %x", len(c.long), c.replyOf(long))
	}
	c.setReply(long, diag)
	c.expire(100)
	if c.len() != 0 || len(c.long) != 0 {
		t.Fatalf("after expiry: %d entries, %d long replies", c.len(), len(c.long))
	}
}

// TestDedupKeys: the same address and message id from another port,
// zone, session or address family are other messages.
func TestDedupKeys(t *testing.T) {
	c := newDedupCache(100)
	a := netip.MustParseAddrPort("[fe80::1%eth0]:5683")
	keys := []PeerKey{
		{Addr: a},
		{Addr: netip.MustParseAddrPort("[fe80::1%eth1]:5683")},
		{Addr: netip.MustParseAddrPort("[fe80::1]:5683")},
		{Addr: netip.MustParseAddrPort("[fe80::1%eth0]:5684")},
		{Addr: netip.MustParseAddrPort("127.0.0.1:5683")},
		{Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5683")},
		{Session: 7},
		{Session: 8},
	}
	for i, k := range keys {
		if c.get(midKey{k, 9}) != nil {
			t.Fatalf("key %d (%v) found before it was added", i, k)
		}
		c.add(midKey{k, 9}, 100)
	}
	for i, k := range keys {
		if d := c.get(midKey{k, 9}); d == nil || d.seq != uint64(i+1) {
			t.Fatalf("key %d (%v): %+v", i, k, d)
		}
	}
}

// TestDedupRingShrinks: after a burst the ring gives its memory back,
// keeping what is still live.
func TestDedupRingShrinks(t *testing.T) {
	c := newDedupCache(1 << 16)
	for i := range 20000 {
		c.add(midKey{peerKey(i), uint16(i)}, int64(i))
	}
	big := len(c.ring)
	c.expire(19900) // 99 left
	if len(c.ring) >= big || len(c.ring) < dedupMinRing {
		t.Fatalf("ring of %d slots after expiry, %d before", len(c.ring), big)
	}
	for i := 19901; i < 20000; i++ {
		if c.get(midKey{peerKey(i), uint16(i)}) == nil {
			t.Fatalf("live entry %d lost when the ring shrank", i)
		}
	}
}

// TestDedupHoldsNoPointers: an entry is pointer-free, so the garbage
// collector does not scan the cache (issue 15). The heap objects a full
// cache adds are counted, not timed: its ring and its maps' tables, not
// one or two per entry.
func TestDedupHoldsNoPointers(t *testing.T) {
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	c := newDedupCache(1 << 16)
	for i := range 1 << 16 {
		d := c.add(midKey{peerKey(i), uint16(i)}, int64(i))
		c.setReply(d, []byte{0x60, 0, byte(i >> 8), byte(i)})
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if objs := int64(ms1.HeapObjects) - int64(ms0.HeapObjects); objs > 1<<12 {
		t.Fatalf("%d live heap objects for %d entries", objs, c.len())
	}
	runtime.KeepAlive(&c)
}
