package coap

import "testing"

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
	c.expire(2000)
	if c.len() != 0 {
		t.Fatalf("after expiry: %d", c.len())
	}
}
