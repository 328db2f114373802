package simulation

import (
	"context"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// BenchmarkFleet1000 measures what one simulated device costs: 1,000
// devices registered with an in-process lwm2m/server and each observed on
// its temperature (values moving once a second), then idle for 5 s.
// Reported: heap bytes and goroutines per device (the in-process server's
// registrations and observations included), and process CPU per second
// while the fleet runs with notifications flowing.
//
//	go test -run '^$' -bench Fleet1000 -benchtime 1x ./simulation
func BenchmarkFleet1000(b *testing.B) {
	for range b.N {
		benchFleet(b, 1000, time.Second)
	}
}

// BenchmarkFleet1000Idle is the same fleet with values that never change:
// what 1,000 registered, observed, silent devices cost.
func BenchmarkFleet1000Idle(b *testing.B) {
	for range b.N {
		benchFleet(b, 1000, 0)
	}
}

func benchFleet(b *testing.B, n int, rate time.Duration) {
	rec := newRecorder()
	srv, addr := startServer(b, rec, 2*time.Second)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	cfg := DefaultConfig()
	cfg.Server = addr
	cfg.Devices = n
	cfg.StartSpread = 2 * time.Second
	cfg.Rate = rate
	cfg.Lifetime = 300 * time.Second
	cfg.CoAP = fastCoAP()
	for i := 1; i <= 4; i++ {
		cfg.SourceAddrs = append(cfg.SourceAddrs, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	f, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-f.AllRegistered():
	case <-time.After(60 * time.Second):
		b.Fatalf("only %d of %d devices registered", f.Stats().Registered, n)
	}
	bg := context.Background()
	for _, d := range f.Devices() {
		if _, _, err := srv.Observe(bg, d.Endpoint(), PathTemperature, lwm2m.FormatNone); err != nil {
			b.Fatalf("observe %s: %v", d.Endpoint(), err)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	goroutines := runtime.NumGoroutine() - g0

	cpu0 := cpuTime()
	notes0 := f.Stats().Notifications
	idle := 5 * time.Second
	time.Sleep(idle) // a measurement window, not a synchronisation
	cpu := cpuTime() - cpu0
	notes := f.Stats().Notifications - notes0

	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n), "heap-B/device")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/device")
	b.ReportMetric(float64(cpu.Milliseconds())/idle.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(notes)/idle.Seconds(), "notifications/s")
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
