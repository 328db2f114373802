package appliance

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// A restart must be invisible to devices (issue 13 §2): the LwM2M server
// reports every registration and observation to regStore, which keeps them
// in the store, and the next start gives them back (restoreRegistrations)
// before the listeners open. A device that was registered stays
// registered: same location, same observation tokens, no Register.
//
// What is written when:
//   - Register, De-register, expiry, an Update that changes a parameter,
//     the object list or the address, and observations: written at once
//     (one small transaction; these are rare).
//   - An Update that changes nothing but the time (the steady state of a
//     fleet): coalesced in memory per endpoint and written every
//     touchInterval in one transaction, and at shutdown. After a kill -9
//     a restored registration's last update can be up to touchInterval
//     old; it then expires that much earlier. touchInterval is below the
//     server's expiry grace (30 s), so a device that updates before its
//     lifetime ends is never expired by it.
const touchInterval = 10 * time.Second

// regStore is the server.Persister of the appliance.
type regStore struct {
	db  *store.DB
	log *slog.Logger

	mu      sync.Mutex
	touched map[string]store.RegistrationTouch // by endpoint
	// saved holds the registrations written with their endpoint row by
	// register, for SaveRegistration to skip (by registration id).
	saved map[string]struct{}
}

var _ server.Persister = (*regStore)(nil)

func newRegStore(db *store.DB, log *slog.Logger) *regStore {
	return &regStore{db: db, log: log.With("component", "registrations"), touched: map[string]store.RegistrationTouch{},
		saved: map[string]struct{}{}}
}

// writeCtx bounds one write: a stuck store must not hold a CoAP worker.
func writeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func storeRegistration(r *server.Registration) store.Registration {
	return store.Registration{
		Endpoint: r.Endpoint, ID: r.ID, Lifetime: r.Lifetime, LwM2MVersion: r.LwM2MVersion, Binding: r.Binding,
		QueueMode: r.QueueMode, SMSNumber: r.SMSNumber, ObjectLinks: r.Links, Address: r.Peer.Addr.String(),
		DTLSSession: r.Peer.Session, Identity: r.Peer.Identity, Listener: r.Listener,
		RegisteredAt: r.RegisteredAt, LastUpdate: r.LastUpdate,
	}
}

// register records a Register, the endpoint row e, the registration r
// and, when event, its "registered" event, in one transaction (the
// handler's write): the server's SaveRegistration of r that follows then
// has nothing left to write.
func (p *regStore) register(ctx context.Context, e store.Endpoint, r *server.Registration, event bool) (store.Endpoint, error) {
	save := p.db.SaveEndpointRegistration
	if !event {
		save = p.db.SaveEndpointReRegistration
	}
	row, err := save(ctx, e, storeRegistration(r))
	if err == nil {
		p.mu.Lock()
		p.saved[r.ID] = struct{}{}
		p.mu.Unlock()
	}
	return row, err
}

// SaveRegistration writes the registration at once, unless register
// wrote it already.
func (p *regStore) SaveRegistration(r *server.Registration) {
	p.mu.Lock()
	_, done := p.saved[r.ID]
	delete(p.saved, r.ID)
	p.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := writeCtx()
	defer cancel()
	if err := p.db.SaveRegistration(ctx, storeRegistration(r)); err != nil {
		p.log.Warn("registration not saved; the device must register again after a restart", "endpoint", r.Endpoint, "err", err)
	}
}

// TouchRegistration remembers the time for the next batch.
func (p *regStore) TouchRegistration(r *server.Registration) {
	p.mu.Lock()
	p.touched[r.Endpoint] = store.RegistrationTouch{Endpoint: r.Endpoint, ID: r.ID, LastUpdate: r.LastUpdate}
	p.mu.Unlock()
}

// DeleteRegistration deletes it at once.
func (p *regStore) DeleteRegistration(r *server.Registration) {
	ctx, cancel := writeCtx()
	defer cancel()
	if err := p.db.DeleteRegistration(ctx, r.Endpoint, r.ID); err != nil {
		p.log.Warn("ended registration not deleted", "endpoint", r.Endpoint, "err", err)
	}
}

// SaveObservation writes it at once.
func (p *regStore) SaveObservation(o *server.Observation) {
	ctx, cancel := writeCtx()
	defer cancel()
	err := p.db.SaveObservation(ctx, store.Observation{Token: o.ID, Endpoint: o.Endpoint, RegistrationID: o.RegistrationID,
		Paths: o.Paths, Composite: o.Composite, Format: o.Format, Started: o.Started})
	if err != nil && !errors.Is(err, store.ErrNotFound) { // NotFound: the registration ended meanwhile
		p.log.Warn("observation not saved; its notifications are refused after a restart", "endpoint", o.Endpoint, "err", err)
	}
}

// DeleteObservation deletes it at once.
func (p *regStore) DeleteObservation(o *server.Observation) {
	ctx, cancel := writeCtx()
	defer cancel()
	if err := p.db.DeleteObservation(ctx, o.ID); err != nil {
		p.log.Warn("ended observation not deleted", "endpoint", o.Endpoint, "err", err)
	}
}

// flushTouches writes the coalesced Update times in one transaction. It
// uses its own bounded context, not Run's: a flush that a shutdown catches
// half-way must still land, since the batch has left p.touched. A batch
// that fails goes back for the next flush, unless a newer Update of the
// same registration came meanwhile.
func (p *regStore) flushTouches() {
	p.mu.Lock()
	if len(p.touched) == 0 {
		p.mu.Unlock()
		return
	}
	batch := make([]store.RegistrationTouch, 0, len(p.touched))
	for _, t := range p.touched {
		batch = append(batch, t)
	}
	clear(p.touched)
	p.mu.Unlock()
	ctx, cancel := writeCtx()
	defer cancel()
	if err := p.db.TouchRegistrations(ctx, batch); err != nil {
		p.log.Warn("registration update times not saved", "registrations", len(batch), "err", err)
		p.mu.Lock()
		for _, t := range batch {
			if _, newer := p.touched[t.Endpoint]; !newer {
				p.touched[t.Endpoint] = t
			}
		}
		p.mu.Unlock()
	}
}

// Run writes the Update times every touchInterval, and once more when ctx
// ends.
func (p *regStore) Run(ctx context.Context) error {
	t := time.NewTicker(touchInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		p.flushTouches()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// restoreRegistrations gives the server the registrations and
// observations saved by the previous run, dropping those whose lifetime
// ran out meanwhile, and makes the store's online flags agree. It returns
// the restored registrations. Call it before the listeners run.
func restoreRegistrations(ctx context.Context, db *store.DB, srv *server.Server, grace time.Duration, log *slog.Logger) ([]*server.Registration, error) {
	if expired, err := db.PruneRegistrations(ctx, time.Now(), grace); err != nil {
		return nil, err
	} else if len(expired) > 0 {
		log.Info("registrations expired while the appliance was stopped", "count", len(expired))
	}
	saved, savedObs, err := db.Registrations(ctx)
	if err != nil {
		return nil, err
	}
	regs := make([]*server.Registration, 0, len(saved))
	for _, r := range saved {
		regs = append(regs, &server.Registration{
			ID: r.ID, Endpoint: r.Endpoint, Lifetime: r.Lifetime, LwM2MVersion: r.LwM2MVersion, Binding: r.Binding,
			QueueMode: r.QueueMode, SMSNumber: r.SMSNumber, Links: r.ObjectLinks, Listener: r.Listener,
			Peer:         coap.Peer{Addr: parseAddrPort(r.Address), Session: r.DTLSSession, Identity: r.Identity},
			RegisteredAt: r.RegisteredAt, LastUpdate: r.LastUpdate,
		})
	}
	obs := make([]*server.Observation, 0, len(savedObs))
	for _, o := range savedObs {
		obs = append(obs, &server.Observation{ID: o.Token, Endpoint: o.Endpoint, RegistrationID: o.RegistrationID,
			Paths: o.Paths, Composite: o.Composite, Format: o.Format, Started: o.Started})
	}
	n, err := srv.Restore(regs, obs)
	if err != nil {
		log.Warn("some saved registrations could not be restored", "err", err)
	}
	var restored []*server.Registration
	for _, r := range regs {
		if cur, ok := srv.Registration(r.Endpoint); ok && cur.ID == r.ID {
			restored = append(restored, cur)
		} else if err := db.DeleteRegistration(ctx, r.Endpoint, r.ID); err != nil {
			return nil, err
		}
	}
	if _, err := db.SyncOnline(ctx); err != nil {
		return nil, err
	}
	log.Info("registrations restored", "registrations", n, "observations", len(obs))
	return restored, nil
}

func parseAddrPort(s string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s)
	return ap
}
