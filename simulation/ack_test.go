package simulation

import (
	"testing"
	"time"
)

// TestAckHistogram: quantiles come out within a bucket (9 %) of the true
// ones, never above the largest latency seen.
func TestAckHistogram(t *testing.T) {
	var h ackHistogram
	if s := h.stats(); s.Count != 0 || s.P50 != 0 || s.P99 != 0 {
		t.Fatalf("empty histogram: %+v", s)
	}
	// 1..1000 ms: p50 is 500 ms, p99 990 ms.
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	s := h.stats()
	if s.Count != 1000 || s.Max != time.Second {
		t.Fatalf("count %d max %v", s.Count, s.Max)
	}
	near := func(name string, got, want time.Duration) {
		if got < want || float64(got) > float64(want)*1.095 {
			t.Errorf("%s = %v, want %v to %v", name, got, want, time.Duration(float64(want)*1.095))
		}
	}
	near("p50", s.P50, 500*time.Millisecond)
	near("p99", s.P99, 990*time.Millisecond)
	// Out of range: below 1 µs and above the last bucket still count.
	h.add(0)
	h.add(time.Hour)
	if s := h.stats(); s.Count != 1002 || s.Max != time.Hour {
		t.Fatalf("extremes: %+v", s)
	}
}
