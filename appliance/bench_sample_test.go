package appliance

import (
	"context"
	"sync"
	"time"
)

// sample is the appliance's state at one moment of the run.
type sample struct {
	T          float64 `json:"t_s"`
	Phase      string  `json:"phase"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
	DB         int64   `json:"db_bytes"`
	WAL        int64   `json:"wal_bytes"`
	CPU        float64 `json:"cpu_s"`
	Registered int64   `json:"registered"`
}

// sampler records RSS, goroutines, database and WAL size every second.
type sampler struct {
	mu      sync.Mutex
	phase   string
	samples []sample
	cancel  context.CancelFunc
	done    chan struct{}
	t0      time.Time
}

func startSampler(ctx context.Context, app *benchTarget) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	t0 := time.Now()
	s := &sampler{phase: "start", cancel: cancel, done: make(chan struct{}), t0: t0}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			m := app.metrics()
			db, wal := app.files()
			s.mu.Lock()
			s.samples = append(s.samples, sample{T: time.Since(t0).Seconds(), Phase: s.phase, RSS: app.proc.rss(),
				Goroutines: int64(m["go_goroutines"]), DB: db, WAL: wal, CPU: app.proc.cpu().Seconds(),
				Registered: int64(m["flownexus_registrations_current"])})
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// stop ends sampling and returns the samples and the peak of each column.
func (s *sampler) stop() ([]sample, sample) {
	s.cancel()
	<-s.done
	var peak sample
	peak.Phase = "peak"
	for _, x := range s.samples {
		peak.RSS = max(peak.RSS, x.RSS)
		peak.Goroutines = max(peak.Goroutines, x.Goroutines)
		peak.DB = max(peak.DB, x.DB)
		peak.WAL = max(peak.WAL, x.WAL)
		peak.Registered = max(peak.Registered, x.Registered)
	}
	return s.samples, peak
}

// peakSince is the highest RSS and goroutine count sampled since t.
func (s *sampler) peakSince(t time.Time) (rss, goroutines int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := t.Sub(s.t0).Seconds()
	for _, x := range s.samples {
		if x.T >= from {
			rss, goroutines = max(rss, x.RSS), max(goroutines, x.Goroutines)
		}
	}
	return rss, goroutines
}
