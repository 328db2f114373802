package simulation

import (
	"math"
	"sync/atomic"
	"time"
)

// AckStats summarise the acknowledgement latency of a fleet's confirmable
// notifications: from sending to the ACK (RFC 7252 §4.2), retransmissions
// included.
type AckStats struct {
	Count    uint64
	P50, P99 time.Duration
	Max      time.Duration
}

// ackHistogram counts latencies in buckets growing by 2^(1/8) from 1 µs,
// so that a quantile is known to within 9 % in constant memory, whatever
// the fleet's size or the run's length; safe for concurrent use.
type ackHistogram struct {
	buckets [ackBuckets]atomic.Uint64
	max     atomic.Int64
}

// ackBuckets cover 1 µs to 2^(ackBuckets/8) µs, about 18 minutes.
const ackBuckets = 8 * 30

func ackBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(int(math.Ceil(8*math.Log2(us))), ackBuckets-1)
}

// ackBucketUpper is the largest latency bucket i holds.
func ackBucketUpper(i int) time.Duration {
	return time.Duration(math.Exp2(float64(i)/8) * float64(time.Microsecond))
}

func (h *ackHistogram) add(d time.Duration) {
	h.buckets[ackBucket(d)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *ackHistogram) stats() AckStats {
	var counts [ackBuckets]uint64
	var s AckStats
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		s.Count += counts[i]
	}
	s.Max = time.Duration(h.max.Load())
	q := func(p float64) time.Duration {
		rank := uint64(math.Ceil(p * float64(s.Count)))
		var seen uint64
		for i, c := range counts {
			if seen += c; c > 0 && seen >= rank {
				return min(ackBucketUpper(i), s.Max)
			}
		}
		return s.Max
	}
	if s.Count > 0 {
		s.P50, s.P99 = q(0.50), q(0.99)
	}
	return s
}
