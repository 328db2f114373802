package appliance

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// Registrations are saved and restored across restarts (registrations.go),
// so a restart is invisible to devices and none needs to register again.
// Some online devices may still have no saved registration: the first
// start after an upgrade from a version that did not save them, or a
// registration whose save failed or was cut by a crash. Left alone, such a
// device stays offline, its notifications unheard, for up to its whole
// lifetime. The appliance asks those that are plain CoAP, online and
// listening (not in queue mode) to Update now (Registration Update
// Trigger, Core Appendix E.2); the Update finds no registration and the
// device registers again at once. Queue-mode and DTLS devices come back
// at their next uplink.

// reconnectCandidate is a device that was online before this start.
type reconnectCandidate struct {
	endpoint string
	addr     netip.AddrPort
}

// reconnectCandidates lists the devices to trigger unless their
// registration is restored: online before this start, plain CoAP, not in
// queue mode, with a known address.
func reconnectCandidates(ctx context.Context, db *store.DB) ([]reconnectCandidate, error) {
	online := true
	var out []reconnectCandidate
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
				out = append(out, reconnectCandidate{endpoint: e.Name, addr: ap})
			}
		}
		if len(eps) < 1000 {
			return out, nil
		}
	}
}

// notRestored keeps the candidates whose registration was not restored.
func notRestored(cands []reconnectCandidate, restored []*server.Registration) []netip.AddrPort {
	have := make(map[string]bool, len(restored))
	for _, r := range restored {
		have[r.Endpoint] = true
	}
	var out []netip.AddrPort
	for _, c := range cands {
		if !have[c.endpoint] {
			out = append(out, c.addr)
		}
	}
	return out
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

// awaitServing waits until the LwM2M server has taken its transports
// (dtlsSrv may be nil).
func awaitServing(ctx context.Context, srv *server.Server, udp coap.Transport, dtlsSrv *dtls.Server) error {
	if err := srv.Serving(ctx, udp); err != nil {
		return err
	}
	if dtlsSrv == nil {
		return nil
	}
	return srv.Serving(ctx, dtlsSrv)
}
