package dtls

import (
	"context"
	"sync"
	"testing"
)

// TestCloseWhileRunStarts: an appliance whose start fails elsewhere
// cancels everything at once, so Close (from the CoAP endpoint on top)
// can run while Run is only starting. Run must then not join a wait group
// Close is already waiting on (a sync.WaitGroup misuse that the race
// detector reported in cmd/flownexus TestServePortInUse); both return, and
// Run after Close returns at once. Under -race (as make test runs it) the
// concurrent starts below fail on the old code.
func TestCloseWhileRunStarts(t *testing.T) {
	for range 50 {
		cfg := DefaultConfig()
		cfg.PSK = pskTable{"dev-1": devKey}.lookup
		srv, err := Listen("127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Close() })
		wg.Go(func() {
			if err := srv.Run(context.Background()); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		wg.Wait()
	}
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := srv.Run(context.Background()); err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
}
