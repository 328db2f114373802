package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/store"
)

// BenchmarkApplianceInProcess runs the whole appliance in this process
// (its SQLite store, real UDP on loopback) under the raw load generator's
// closed loops, so that `go test -cpuprofile` shows where a request's time
// goes (make bench-profile). The figures of record come from TestBench,
// which measures the real binary from outside.
func BenchmarkApplianceInProcess(b *testing.B) {
	cfg := DefaultConfig()
	cfg.DataDir = b.TempDir()
	cfg.Listen = ListenConfig{HTTP: "127.0.0.1:0", CoAP: "127.0.0.1:0", CoAPS: "127.0.0.1:0"}
	cfg.Log.Level = "error"
	cfg.Systemd.Watchdog = false
	cfg.LwM2M.PeerRate = 0 // as TestBench: each peer stands for many devices
	if v := os.Getenv("FN_SYNC"); v != "" {
		cfg.Store.Synchronous = v
	}
	logger := slog.New(slog.DiscardHandler)
	if f := os.Getenv("FN_LOG_FILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		cfg.Log.Level = "info"
		if v := os.Getenv("FN_LOG_RATE"); v != "" {
			fmt.Sscan(v, &cfg.Log.DeviceLinesPerSecond)
		}
		logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	a, err := New(cfg, WithLogger(logger))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-a.Ready():
	case err := <-done:
		b.Fatalf("appliance stopped: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("appliance not ready in 30 s")
	}
	ps, err := newPeers(16, a.Addrs().CoAP, loopbackSources(4), "inproc-", linksObserve)
	if err != nil {
		b.Fatal(err)
	}
	defer closePeers(ps)
	if n, err := registerAll(ctx, ps, 3600, true); err != nil || n < len(ps) {
		b.Fatalf("register: %d observed, %v", n, err)
	}
	for _, bc := range []struct {
		name   string
		notify bool
		mk     func(p *lgPeer) *coap.Message
	}{
		{"update", false, func(p *lgPeer) *coap.Message { return p.updateMsg() }},
		{"send", false, func(p *lgPeer) *coap.Message { return p.sendMsg(21.5) }},
		{"notification", true, func(p *lgPeer) *coap.Message { return p.notifyMsg(22.5) }},
		{"register", false, func(p *lgPeer) *coap.Message { return p.registerMsg(3600) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			loopPerOp(b, a, len(ps), func(w int) error {
				p := ps[w]
				_, _, err := p.do(bc.mk(p), bc.notify, 2*time.Second)
				return err
			})
		})
	}
	b.Run("psk", func(b *testing.B) { benchInProcessPSK(b, a) })
}

// benchInProcessPSK is the PSK handshake and Register of the bench's dtls
// phase: four provisioned devices, each in a loop of a full handshake, a
// Register that announces nothing to read, and a close.
func benchInProcessPSK(b *testing.B, a *Appliance) {
	ctx := context.Background()
	key := []byte(benchPSK)
	eps := make([]string, 4)
	for i := range eps {
		eps[i] = "inproc-psk-" + string(rune('a'+i))
		_, err := a.db.ProvisionEndpoint(ctx, store.Credential{Endpoint: eps[i], Mode: store.ModePSK, PSKIdentity: eps[i], PSKKey: key})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			b.Fatal(err)
		}
	}
	loopPerOp(b, a, len(eps), func(w int) error {
		cfg := dtls.ClientConfig{PSKIdentity: eps[w], PSK: key, HandshakeTimeout: 5 * time.Second}
		return dtlsRegister(ctx, a.Addrs().CoAPS, cfg, (&lgPeer{ep: eps[w], links: "</1/0>"}).registerMsg(3600), false)
	})
}

// loopPerOp runs b.N operations over workers closed loops, op(w) being
// one operation of loop w, and reports per operation the ones lost, the
// process's CPU (appliance and generator), the store's write
// transactions and the synchronous writes callers waited for.
func loopPerOp(b *testing.B, a *Appliance, workers int, op func(w int) error) {
	var next, lost atomic.Int64
	before, cpu0 := a.db.Stats(), ackCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if op(w) != nil {
					lost.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	after := a.db.Stats()
	b.ReportMetric(float64(lost.Load()), "lost")
	b.ReportMetric(float64((ackCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(after.Transactions-before.Transactions)/float64(b.N), "tx/op")
	b.ReportMetric(float64(after.Writes-before.Writes)/float64(b.N), "writes/op")
	b.ReportMetric(float64(after.LazyCommits-before.LazyCommits)/float64(b.N), "lazy/op")
}
