package appliance

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// Registrations live in the LwM2M server's memory, so a restart (an
// upgrade, a crash) loses them. Waiting for each device's next Update
// leaves it offline, and its notifications unheard, for up to its whole
// lifetime. Instead the appliance asks every plain-CoAP device that was
// online and listening (not in queue mode) to Update now (Registration
// Update Trigger, Core Appendix E.2); the Update finds no registration and
// the device registers again at once. Queue-mode and DTLS devices come
// back at their next uplink.

// reconnectCandidates lists the devices to trigger: online before this
// start, plain CoAP, not in queue mode, with a known address.
func reconnectCandidates(ctx context.Context, db *store.DB) ([]netip.AddrPort, error) {
	online := true
	var out []netip.AddrPort
	for offset := 0; ; offset += 1000 {
		eps, _, err := db.ListEndpoints(ctx, store.EndpointQuery{Online: &online, SecurityMode: store.ModeNoSec, Limit: 1000, Offset: offset})
		if err != nil {
			return nil, err
		}
		for _, e := range eps {
			if e.QueueMode {
				continue
			}
			if ap, err := netip.ParseAddrPort(e.Address); err == nil {
				out = append(out, ap)
			}
		}
		if len(eps) < 1000 {
			return out, nil
		}
	}
}

// reconnect triggers the candidates, a few at a time so a large fleet does
// not answer all at once.
func reconnect(ctx context.Context, srv *server.Server, addrs []netip.AddrPort, log *slog.Logger) {
	if len(addrs) == 0 {
		return
	}
	const parallel = 16
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := srv.TriggerUpdate(tctx, a); err != nil {
				log.Debug("registration update trigger failed", "addr", a, "err", err)
				return
			}
			mu.Lock()
			ok++
			mu.Unlock()
		})
	}
	wg.Wait()
	log.Info("asked the devices registered before the restart to register again", "asked", len(addrs), "answered", ok)
}
