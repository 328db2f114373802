package coap

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFairness64 overloads an endpoint (a handler costing about
// 200 µs of CPU, the default 8 workers) from 64 peers in closed loops and
// reports how evenly it served them: busiest/least-served is the ratio of
// the most to the fewest completed requests of one peer (issue 15's
// target: at most 1.2). With peers hashed onto per-worker queues it was
// about 2.
func BenchmarkFairness64(b *testing.B) {
	cfg := DefaultConfig()
	cfg.PeerRate = 0
	st, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	e := NewEndpoint(st, HandlerFunc(func(ctx context.Context, r *Request) *Response {
		spin(200 * time.Microsecond)
		return NewResponse(Changed)
	}), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	peers := make([]*closedLoopPeer, 64)
	for i := range peers {
		peers[i] = newPeer(b, st.LocalAddr().String(), i)
		defer peers[i].c.Close()
	}
	counts := make([]int64, len(peers))
	var next atomic.Int64
	n := int64(b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				if err := p.roundTrip(); err != nil {
					b.Error(err)
					return
				}
				counts[i]++
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if lo := slices.Min(counts); lo > 0 {
		b.ReportMetric(float64(slices.Max(counts))/float64(lo), "busiest/least-served")
	}
	b.ReportMetric(float64(e.Stats().Overloaded), "refused")
}

// spin burns CPU for about d, like a handler doing real work.
func spin(d time.Duration) {
	for t0 := time.Now(); time.Since(t0) < d; {
	}
}
