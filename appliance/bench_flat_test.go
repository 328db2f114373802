package appliance

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

var (
	benchFlat        = flag.Duration("fnbench.flat", time.Minute, "length of each of the flat phase's two closed-loop runs on the appliance, Updates then Registers (the issue's figure: 10m)")
	benchFlatWindows = flag.Int("fnbench.flat-windows", 10, "windows each flat run is cut into, each measured on its own")
)

// flatWindow is one window of a long closed-loop run on the appliance:
// its cost, latency and the appliance's resources at its end.
type flatWindow struct {
	Op         string  `json:"op"`
	EndSeconds float64 `json:"end_s"` // since the op's run began
	Completed  int64   `json:"completed"`
	Lost       int64   `json:"lost"`
	CPUMicros  float64 `json:"cpu_us_per_request"`
	PerSec     float64 `json:"per_sec"`
	P50Micros  float64 `json:"p50_us"`
	P99Micros  float64 `json:"p99_us"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
	DB         int64   `json:"db_bytes"`
	WAL        int64   `json:"wal_bytes"`
}

// flatPhase answers "flat over a 10-minute run": the cost peers send
// Updates, then re-register, in closed loops for -fnbench.flat each, and
// every window is measured on its own, so a cost, a latency or a file
// that grows with time shows as a trend down the table.
func flatPhase(t *testing.T, ctx context.Context, app *benchTarget, sources []string) []flatWindow {
	ps, err := newPeers(*benchPeers, app.coap, sources, "flat-", linksPlain)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	if _, err := registerAll(ctx, ps, 3600, false); err != nil {
		t.Fatalf("registering the flat peers: %v", err)
	}
	n := max(*benchFlatWindows, 1)
	win := *benchFlat / time.Duration(n)
	ops := []struct {
		name string
		mk   func(p *lgPeer) (*coap.Message, bool)
	}{
		{"update", func(p *lgPeer) (*coap.Message, bool) { return p.updateMsg(), false }},
		{"register", func(p *lgPeer) (*coap.Message, bool) { return p.registerMsg(3600), false }},
	}
	var out []flatWindow
	for _, op := range ops {
		start := time.Now()
		for range n {
			pr := measure(ctx, app, op.name, len(ps), func() *loopResult { return closedLoop(ctx, ps, win, op.mk) })
			db, wal := app.files()
			fw := flatWindow{Op: op.name, EndSeconds: time.Since(start).Seconds(), Completed: pr.Completed, Lost: pr.Lost,
				CPUMicros: pr.CPUMicros, PerSec: pr.PerSec, P50Micros: pr.P50Micros, P99Micros: pr.P99Micros,
				RSS: app.proc.rss(), Goroutines: int64(app.metrics()["go_goroutines"]), DB: db, WAL: wal}
			t.Logf("flat %-8s %5.0f s %8.1f µs/req %7.0f req/s p50 %6.0f µs p99 %6.0f µs lost %d RSS %s WAL %s",
				op.name, fw.EndSeconds, fw.CPUMicros, fw.PerSec, fw.P50Micros, fw.P99Micros, fw.Lost, mib(fw.RSS), mib(fw.WAL))
			out = append(out, fw)
			if ctx.Err() != nil {
				return out
			}
		}
	}
	return out
}

// renderFlat writes the flat phase's windows.
func renderFlat(w func(string, ...any), ws []flatWindow) {
	w("\n## Flat over time (appliance; %d closed-loop peers, %s of Updates then %s of Registers, %d windows each)\n\n", *benchPeers, *benchFlat, *benchFlat, *benchFlatWindows)
	w("| op | window ends at | requests | lost | server CPU per request | req/s | p50 | p99 | RSS | goroutines | DB | WAL |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, x := range ws {
		w("| %s | %.0f s | %d | %d | %.1f µs | %.0f | %.0f µs | %.0f µs | %s | %d | %s | %s |\n", x.Op, x.EndSeconds, x.Completed, x.Lost,
			x.CPUMicros, x.PerSec, x.P50Micros, x.P99Micros, mib(x.RSS), x.Goroutines, mib(x.DB), mib(x.WAL))
	}
}
