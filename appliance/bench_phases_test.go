package appliance

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// phaseResult is one measured load on one server.
type phaseResult struct {
	Target    string  `json:"target"`
	Phase     string  `json:"phase"`
	Peers     int     `json:"peers"`
	Seconds   float64 `json:"seconds"`
	Completed int64   `json:"completed"`
	OK        int64   `json:"ok"`   // 2.xx replies
	Lost      int64   `json:"lost"` // no reply in time
	PerSec    float64 `json:"per_sec"`
	CPUMicros float64 `json:"cpu_us_per_request"` // server CPU / completed
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	// First and last window of the run (latency drift) and the ratio of
	// the busiest to the least served peer (fairness).
	FirstP50Micros float64 `json:"first_window_p50_us"`
	LastP50Micros  float64 `json:"last_window_p50_us"`
	Fairness       float64 `json:"fairness_max_over_min"`
	// TxPerRequest is the appliance's write transactions (each one
	// commit, and under synchronous=full one fsync unless it held only
	// registration state) per completed request; 0 for the peers.
	TxPerRequest float64 `json:"tx_per_request,omitempty"`
	Note         string  `json:"note,omitempty"`
}

// loopResult is what a load run counted, before the server CPU is added.
type loopResult struct {
	completed, ok, lost atomic.Int64
	perPeer             []int64
	lat                 *latencies
	wall                time.Duration
}

// closedLoop runs every peer in a closed loop for dur: one request, wait
// for its reply (at most 2 s), the next. mk builds a peer's next request
// (nil skips the peer) and says whether it is a notification.
func closedLoop(ctx context.Context, peers []*lgPeer, dur time.Duration, mk func(p *lgPeer) (*coap.Message, bool)) *loopResult {
	r := &loopResult{perPeer: make([]int64, len(peers)), lat: newLatencies()}
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				m, notify := mk(p)
				if m == nil {
					return
				}
				resp, lat, err := p.do(m, notify, 2*time.Second)
				if err != nil {
					r.lost.Add(1)
					continue
				}
				r.completed.Add(1)
				r.perPeer[i]++
				r.lat.add(lat)
				if resp.Code.IsSuccess() || resp.Code == coap.Empty && resp.Type == coap.Acknowledgement {
					r.ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r.wall = time.Since(r.lat.t0)
	return r
}

// measure runs load against tg and divides the server's CPU time by the
// completed requests. The appliance's ingestion queue is drained first, so
// that deferred writes count.
func measure(ctx context.Context, tg *benchTarget, phase string, peers int, load func() *loopResult) phaseResult {
	m0 := tg.storeTx()
	c0 := tg.proc.cpu()
	r := load()
	tg.drain(ctx)
	c1 := tg.proc.cpu()
	m1 := tg.storeTx()
	pr := phaseResult{Target: tg.name, Phase: phase, Peers: peers, Seconds: r.wall.Seconds(),
		Completed: r.completed.Load(), OK: r.ok.Load(), Lost: r.lost.Load()}
	if pr.Completed > 0 {
		pr.PerSec = float64(pr.Completed) / r.wall.Seconds()
		pr.CPUMicros = float64(c1-c0) / float64(time.Microsecond) / float64(pr.Completed)
		pr.TxPerRequest = (m1 - m0) / float64(pr.Completed)
	}
	p50, p99, _ := r.lat.quantiles(0, math.MaxInt64)
	pr.P50Micros, pr.P99Micros = us(p50), us(p99)
	w := min(5*time.Second, r.wall/4)
	f50, _, _ := r.lat.quantiles(0, w)
	l50, _, _ := r.lat.quantiles(r.wall-w, r.wall+time.Second)
	pr.FirstP50Micros, pr.LastP50Micros = us(f50), us(l50)
	if len(r.perPeer) > 1 {
		lo, hi := slices.Min(r.perPeer), slices.Max(r.perPeer)
		if lo > 0 {
			pr.Fairness = float64(hi) / float64(lo)
		} else {
			pr.Fairness = -1 // a peer got nothing done
		}
	}
	return pr
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// registerAll registers every peer, 32 at a time, and waits for the
// server's observations when wantObserve.
func registerAll(ctx context.Context, peers []*lgPeer, lifetime int, wantObserve bool) (int, error) {
	sem := make(chan struct{}, 32)
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for _, p := range peers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var err error
			for range 3 {
				if err = p.register(lifetime, 5*time.Second); err == nil {
					return
				}
			}
			failed.Add(1)
			first.CompareAndSwap(nil, err)
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return 0, fmt.Errorf("%d of %d registrations failed, first: %v", n, len(peers), first.Load())
	}
	if !wantObserve {
		return len(peers), nil
	}
	observed := 0
	deadline := time.After(60 * time.Second)
	for _, p := range peers {
		select {
		case <-p.observed:
			observed++
		case <-deadline:
			return observed, nil
		case <-ctx.Done():
			return observed, ctx.Err()
		}
	}
	return observed, nil
}

// openLoop makes every peer send a confirmable notification each `every`,
// starts staggered over the first period, for dur; replies are matched by
// the reader goroutines, the unanswered counted lost after 5 s.
type openResult struct {
	Devices      int     `json:"devices"`
	EverySeconds float64 `json:"every_seconds"`
	Seconds      float64 `json:"seconds"`
	Sent         int64   `json:"sent"`
	Acked        int64   `json:"acked"`
	Refused      int64   `json:"refused"` // an error code or RST instead of the ACK
	Lost         int64   `json:"lost"`
	PerSec       float64 `json:"acked_per_sec"`
	CPUMicros    float64 `json:"cpu_us_per_notification"`
	P50Micros    float64 `json:"ack_p50_us"`
	P99Micros    float64 `json:"ack_p99_us"`
	FirstP50     float64 `json:"first_window_p50_us"`
	LastP50      float64 `json:"last_window_p50_us"`
	Dropped      float64 `json:"server_refused_notifications"` // the appliance's own counter
	IngestRefuse float64 `json:"ingest_batches_refused"`
	// Counters are the appliance's CoAP and ingestion counters that moved
	// during the phase: where the lost ones went.
	Counters map[string]float64 `json:"counters,omitempty"`
	// The appliance's CPU while idle (timers, checkpoints) is taken out:
	// at a fixed rate it would otherwise be charged to the notifications.
	IdleCPUPerSec float64 `json:"idle_cpu_ms_per_s"`
	NetCPUMicros  float64 `json:"net_cpu_us_per_notification"`
}

// idleCPU is the server's CPU time per second of wall time while no load
// runs, over span.
func idleCPU(tg *benchTarget, span time.Duration) float64 {
	c0, t0 := tg.proc.cpu(), time.Now()
	time.Sleep(span)
	return float64(tg.proc.cpu()-c0) / float64(time.Since(t0))
}

func openLoop(ctx context.Context, tg *benchTarget, peers []*lgPeer, every, dur time.Duration) openResult {
	res := openResult{Devices: len(peers), EverySeconds: every.Seconds()}
	idle := idleCPU(tg, 3*time.Second)
	res.IdleCPUPerSec = idle * 1000
	m0 := tg.metrics()
	c0 := tg.proc.cpu()
	lat := newLatencies()
	var sent, acked, refused atomic.Int64
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i, p := range peers {
		offset := every * time.Duration(i) / time.Duration(len(peers))
		wg.Go(func() {
			next := time.Now().Add(offset)
			for ctx.Err() == nil {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				if time.Now().After(end) {
					return
				}
				next = next.Add(every)
				m := p.notifyMsg(20 + float64(sent.Load()%100)/10)
				if m == nil {
					return
				}
				sent.Add(1)
				p.start(m, true, func(r *coap.Message, d time.Duration) {
					if r.Type == coap.Acknowledgement && r.Code == coap.Empty || r.Code.IsSuccess() {
						acked.Add(1)
						lat.add(d)
					} else {
						refused.Add(1)
					}
				})
			}
		})
	}
	wg.Wait()
	// What is unanswered 5 s after the last send is lost (the generator
	// does not retransmit).
	waitFor(ctx, 5*time.Second, func() bool { return acked.Load()+refused.Load() >= sent.Load() })
	res.Lost = sent.Load() - acked.Load() - refused.Load()
	res.Seconds = time.Since(lat.t0).Seconds()
	tg.drain(ctx)
	c1 := tg.proc.cpu()
	elapsed := time.Since(lat.t0)
	m1 := tg.metrics()
	res.Sent, res.Acked, res.Refused = sent.Load(), acked.Load(), refused.Load()
	if res.Acked > 0 {
		res.PerSec = float64(res.Acked) / dur.Seconds()
		res.CPUMicros = float64(c1-c0) / float64(time.Microsecond) / float64(res.Acked)
		res.NetCPUMicros = (float64(c1-c0) - idle*float64(elapsed)) / float64(time.Microsecond) / float64(res.Acked)
	}
	p50, p99, _ := lat.quantiles(0, math.MaxInt64)
	res.P50Micros, res.P99Micros = us(p50), us(p99)
	w := min(5*time.Second, dur/4)
	f, _, _ := lat.quantiles(0, w)
	l, _, _ := lat.quantiles(dur-w, dur+10*time.Second)
	res.FirstP50, res.LastP50 = us(f), us(l)
	res.Counters = movedCounters(m0, m1)
	res.Dropped = res.Counters["flownexus_notifications_refused_total"]
	res.IngestRefuse = res.Counters["flownexus_ingest_batches_refused_total"]
	return res
}

// movedCounters lists the counters (…_total) of the CoAP layer and the
// store that differ between two readings of /metrics.
func movedCounters(m0, m1 map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m1 {
		if strings.HasSuffix(k, "_total") && (strings.Contains(k, "coap") || strings.Contains(k, "ingest") || strings.Contains(k, "refused")) && v != m0[k] {
			out[k] = v - m0[k]
		}
	}
	return out
}
