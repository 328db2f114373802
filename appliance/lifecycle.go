package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/firmware"
	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

func nowUTC() time.Time { return time.Now().UTC() }

// firmwareVersionPath is Device /3/0/3, Firmware Version (Core Appendix E.4).
// eventSend groups the values of one Send (/dp) payload, like a composite
// notification (Core §6.4.2).
const eventSend = "send"

var firmwareVersionPath = lwm2m.NewPath(3, 0, 3)

// modelPath is Device /3/0/1, Model Number (Core Appendix E.4).
var modelPath = lwm2m.NewPath(3, 0, 1)

// lifecycle is the appliance's side of the LwM2M server: who may register,
// what a registration changes in the store, which observations start, and
// where notifications go. It implements server.Handler.
type lifecycle struct {
	db     *store.DB
	log    *slog.Logger
	policy func() policy
	disp   *Dispatcher
	srv    *server.Server
	logs   *logCollector
	// fw moves firmware deployments on when devices speak; nil in tests
	// of the lifecycle alone.
	fw *firmware.Service
	// regs keeps registrations across restarts; nil in those tests too.
	regs *regStore

	// ctx and wg bound the work started after registrations to Run.
	ctx context.Context
	wg  sync.WaitGroup

	mu     sync.Mutex
	uplink map[string]uplinkState
	// now is the clock of updateNote (nil: time.Now).
	now func() time.Time

	refusals chan refusal // to recordRefusals
}

// policy is the part of the configuration the web UI can change at run time.
type policy struct {
	AllowUnknown     bool
	AwakeWindow      time.Duration
	ObserveSingle    []lwm2m.Path
	CompositeObjects []uint16
	// LogAutoStart starts log collection (Event Log, object 20) at every
	// registration; LogClass (1–255) is written to LogClass first.
	LogAutoStart bool
	LogClass     int
}

type uplinkState struct {
	at    time.Time
	queue bool
	// event is when the device's last registration event was recorded,
	// seen when its last Seen was sent (see Updated), registered when its
	// last "registered" event was (see registerEventDue).
	event, seen, registered time.Time
}

// updateEventEvery is how often an Update of a device is kept as an
// "updated" event. Zephyr's default lifetime of 30 s (../shared/ZEPHYR.md)
// means an Update every 20-odd seconds: kept each, 10,000 such devices
// would add 1.5 million events an hour and cost every Update three rows
// (issue 15). Between two, an Update moves last_seen only (store.Seen).
const updateEventEvery = 10 * time.Minute

// registerEventEvery is how often a Register of a device that is
// registered already is kept as a "registered" event. A device that
// registers again and again (a boot loop, a client that re-registers at
// every message) would otherwise add an event, a reading and a link at
// each: about 55 MiB a minute in the benchmark's Register loop, and a
// tenth or more of each Register's CPU (issue 15). A Register after a
// de-registration, an expiry or a restart is always kept, and
// flownexus_registrations_total counts every one.
const registerEventEvery = time.Minute

var _ server.Handler = (*lifecycle)(nil)

// reachable reports whether a request sent now would reach the device: it
// is registered, and not asleep in queue mode (Core §6.5).
func (l *lifecycle) reachable(ep string) bool {
	if !l.srv.IsRegistered(ep) {
		return false
	}
	l.mu.Lock()
	u, ok := l.uplink[ep]
	l.mu.Unlock()
	if !ok || !u.queue {
		return true
	}
	return time.Since(u.at) < l.policy().AwakeWindow
}

// restored takes the registrations given back after a restart: a
// queue-mode device is asleep until its next uplink, as the server takes
// it to be.
func (l *lifecycle) restored(regs []*server.Registration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range regs {
		if r.QueueMode {
			l.uplink[r.Endpoint] = uplinkState{queue: true}
		}
	}
}

func (l *lifecycle) sawUplink(r *server.Registration) {
	l.change(r.Endpoint, func(u uplinkState) uplinkState {
		u.at, u.queue = time.Now(), r.QueueMode
		return u
	})
}

// change replaces ep's uplink state with f's change of it, under l.mu.
// (By value: a pointer would move the state to the heap on every uplink.)
func (l *lifecycle) change(ep string, f func(uplinkState) uplinkState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.uplink[ep] = f(l.uplink[ep])
}

// clock is the time updateNote and registeredNow compare: time.Now's,
// monotonic, unless a test set now.
func (l *lifecycle) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// registeredNow notes a Register of ep recorded at t (by l.clock, as
// updateNote's t): it moved last_seen, so an Update right after it needs
// no Seen, and with its "registered" event (event) the next Update needs
// no event either.
func (l *lifecycle) registeredNow(ep string, t time.Time, event bool) {
	l.change(ep, func(u uplinkState) uplinkState {
		u.seen = t
		if event {
			u.event, u.registered = t, t
		}
		return u
	})
}

// registerEventDue reports whether the Register r, at t, is kept as a
// "registered" event: unless it replaces a live registration of the
// device and the device's last "registered" event is younger than
// registerEventEvery. (The server stores r only once Registered returns,
// so a registration it has now is the one r replaces.)
func (l *lifecycle) registerEventDue(r *server.Registration, t time.Time) bool {
	if !l.srv.IsRegistered(r.Endpoint) {
		return true
	}
	l.mu.Lock()
	last := l.uplink[r.Endpoint].registered
	l.mu.Unlock()
	return last.IsZero() || t.Sub(last) >= registerEventEvery
}

// updateNote says what an Update of ep at t records: an "updated" event
// when the last registration event is updateEventEvery old (or unknown,
// after a restart), else a Seen when the last one is store.SeenEvery
// old, else nothing (last_seen is fresh enough).
func (l *lifecycle) updateNote(ep string, t time.Time) (event, seen bool) {
	l.change(ep, func(u uplinkState) uplinkState {
		switch {
		case u.event.IsZero() || t.Sub(u.event) >= updateEventEvery:
			u.event, u.seen, event = t, t, true
		case u.seen.IsZero() || t.Sub(u.seen) >= store.SeenEvery:
			u.seen, seen = t, true
		}
		return u
	})
	return event, seen
}

func (l *lifecycle) endpointRow(r *server.Registration) store.Endpoint {
	return store.Endpoint{
		Name:           r.Endpoint,
		RegistrationID: r.ID,
		Online:         true,
		LastSeen:       r.LastUpdate,
		Lifetime:       int64(r.Lifetime / time.Second),
		Binding:        r.Binding,
		LwM2MVersion:   r.LwM2MVersion,
		QueueMode:      r.QueueMode,
		ObjectLinks:    r.Links,
		Address:        r.Peer.Addr.String(),
		RegisteredAt:   r.RegisteredAt,
	}
}

// Registered applies the identity rules, records the registration, and
// starts the auto-observations once the device has its answer.
func (l *lifecycle) Registered(ctx context.Context, r *server.Registration) error {
	if err := l.checkName(r); err != nil {
		return err
	}
	// One credential lookup serves the identity rules and the security
	// mode recorded below.
	var cred *store.Credential
	c, err := l.db.Credential(ctx, r.Endpoint)
	switch {
	case err == nil:
		cred = &c
	case !errors.Is(err, store.ErrNotFound):
		// The store failed, not the device: the server answers 5.00 and
		// the device retries, instead of being told it is banned.
		return fmt.Errorf("registration of %q: %w", r.Endpoint, err)
	}
	err = CheckIdentity(r.Endpoint, r.Peer, cred, l.policy().AllowUnknown)
	if errors.Is(err, ErrNotProvisioned) && l.accepted(ctx, r.Endpoint) {
		err = nil
	}
	if err != nil {
		if errors.Is(err, ErrNotProvisioned) {
			l.park(ctx, r)
		}
		l.log.Warn("registration refused", "endpoint", r.Endpoint, "addr", r.Peer.Addr, "identity", r.Peer.Identity, "err", err)
		l.refuse(r.Endpoint, refusalReason(err), r.Peer.Addr.String())
		return fmt.Errorf("%w: %v", server.ErrForbidden, err)
	}
	row := l.endpointRow(r)
	row.SecurityMode = store.ModeNoSec
	if cred != nil {
		row.SecurityMode = cred.Mode
	}
	known, err := l.record(ctx, row, r)
	if err != nil {
		return fmt.Errorf("record registration of %q: %w", r.Endpoint, err)
	}
	l.sawUplink(r)
	l.log.Info("registered", "endpoint", r.Endpoint, "addr", r.Peer.Addr, "lwm2m", r.LwM2MVersion, "binding", r.Binding, "lifetime", r.Lifetime, "secure", r.Peer.Secure())
	reg := *r
	l.wg.Go(func() { l.afterRegister(&reg, known) })
	return nil
}

// record writes the endpoint row of a Register and, when it is due
// (registerEventDue), its "registered" event, with the registration
// itself when the appliance keeps registrations: then all in one commit
// (store.SaveEndpointRegistration).
func (l *lifecycle) record(ctx context.Context, row store.Endpoint, r *server.Registration) (store.Endpoint, error) {
	t := l.clock()
	event := l.registerEventDue(r, t)
	if l.regs != nil {
		known, err := l.regs.register(ctx, row, r, event)
		if err == nil {
			l.registeredNow(r.Endpoint, t, event)
		}
		return known, err
	}
	known, err := l.db.UpsertEndpoint(ctx, row)
	if err != nil {
		return known, err
	}
	if event {
		if err := l.db.RecordRegistration(ctx, r.Endpoint, store.RegRegistered, r.RegisteredAt, r.Peer.Addr.String()); err != nil {
			l.log.Warn("registration event not recorded", "endpoint", r.Endpoint, "err", err)
			event = false
		}
	}
	l.registeredNow(r.Endpoint, t, event)
	return known, nil
}

// accepted reports whether an endpoint without credentials is known all
// the same: an admin accepted it from the pending list, or it registered
// while unknown endpoints were allowed.
func (l *lifecycle) accepted(ctx context.Context, ep string) bool {
	row, err := l.db.Endpoint(ctx, ep)
	// A row that never saw a registration (values still in flight for a
	// device just deleted) accepts nobody.
	return err == nil && !row.Pending && !row.RegisteredAt.IsZero()
}

// park records an unknown endpoint as pending so that an admin can accept
// it (../shared/API.md: with unknown endpoints refused they "wait as
// pending").
func (l *lifecycle) park(ctx context.Context, r *server.Registration) {
	row := l.endpointRow(r)
	row.Online = false
	// A row must never be registered and not pending at once, or a
	// second Register racing this one finds it accepted. A new row gets
	// pending in the statement that creates it; an existing one (values
	// still in flight for a device just deleted) is marked pending first,
	// since the upsert leaves pending alone on existing rows.
	row.Pending = true
	if err := l.db.SetEndpointPending(ctx, r.Endpoint, true); err != nil && !errors.Is(err, store.ErrNotFound) {
		l.log.Warn("pending endpoint not recorded", "endpoint", r.Endpoint, "err", err)
		return
	}
	if _, err := l.db.UpsertEndpoint(ctx, row); err != nil {
		l.log.Warn("pending endpoint not recorded", "endpoint", r.Endpoint, "err", err)
		return
	}
	if err := l.db.SetEndpointPending(ctx, r.Endpoint, true); err != nil {
		l.log.Warn("pending endpoint not recorded", "endpoint", r.Endpoint, "err", err)
	}
}

// afterRegister starts the configured observations, then sends what waited
// in the queue. It runs after the device has its 2.01: a request sent from
// inside Registered would reach a device that is not registered yet. known
// is the endpoint row as the registration left it: what it already holds
// (firmware version, model) is neither asked for nor written again.
func (l *lifecycle) afterRegister(r *server.Registration, known store.Endpoint) {
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
	defer cancel()
	// Bound to this registration: when the device registers again, what is
	// still queued here is cancelled instead of piling up (issue 15).
	ctx = server.ForRegistration(ctx, r.ID)
	// The server stores the registration once Registered returns; wait
	// for it so requests go to this registration, and give up at once if
	// it was refused, replaced or ended meanwhile.
	if err := l.srv.AwaitRegistration(ctx, r.Endpoint, r.ID); err != nil {
		return
	}
	p := l.policy()
	// The firmware version feeds the device list's filter and the OTA
	// view; one read per registration keeps it current after an update.
	if hasPath(r, firmwareVersionPath) {
		if recs, err := l.srv.Read(ctx, r.Endpoint, firmwareVersionPath, lwm2m.FormatNone); err != nil {
			if l.followUpFailed("firmware version read failed", err, "endpoint", r.Endpoint) {
				return
			}
		} else {
			l.keepKnown(ctx, r.Endpoint, recs, "", &known)
		}
	}
	if !l.readModel(ctx, r, known) {
		return
	}
	for _, path := range p.ObserveSingle {
		if !hasPath(r, path) {
			continue
		}
		if _, recs, err := l.srv.Observe(ctx, r.Endpoint, path, lwm2m.FormatNone); err != nil {
			if l.followUpFailed("auto-observe failed", err, "endpoint", r.Endpoint, "path", path) {
				return
			}
		} else {
			l.keepKnown(ctx, r.Endpoint, recs, "", &known)
		}
	}
	if paths := compositePaths(r, p.CompositeObjects); len(paths) > 0 && r.LwM2MVersion != "1.0" {
		f := lwm2m.FormatSenMLCBOR
		if len(r.ContentFormats) > 0 && !slices.Contains(r.ContentFormats, f) {
			f = lwm2m.FormatSenMLJSON
		}
		if _, recs, err := l.srv.ObserveComposite(ctx, r.Endpoint, paths, f); err != nil {
			if l.followUpFailed("auto composite observe failed", err, "endpoint", r.Endpoint, "paths", paths) {
				return
			}
		} else {
			l.keepKnown(ctx, r.Endpoint, recs, store.EventComposite, &known)
		}
	}
	l.armLogs(ctx, r)
	l.disp.Uplink(r.Endpoint)
	if l.fw != nil {
		l.fw.Uplink(r.Endpoint)
	}
}

// followUpFailed logs a request of a Register's follow-up that failed, and
// reports whether the registration has ended meanwhile (replaced by a
// newer one, de-registered, expired) or the appliance is stopping: the
// rest of the follow-up is then skipped, and the line is a debug one. A
// replaced registration's follow-up is made by the newer one, and in a
// re-registration flood a line at info for each replaced one doubled the
// appliance's log (issue 15). Any other failure, the follow-up's own
// time limit included, is logged at info and the follow-up goes on.
func (l *lifecycle) followUpFailed(msg string, err error, args ...any) bool {
	args = append(args, "err", err)
	if errors.Is(err, server.ErrNotRegistered) || l.ctx.Err() != nil {
		l.log.Debug(msg, args...)
		return true
	}
	l.log.Info(msg, args...)
	return false
}

// hasPath reports whether the device announced the object instance of p.
func hasPath(r *server.Registration, p lwm2m.Path) bool {
	for _, o := range r.Objects {
		if o.ID != p.ObjectID() {
			continue
		}
		if p.Len() < 2 {
			return true
		}
		return slices.Contains(o.Instances, p.InstanceID())
	}
	return false
}

// compositePaths lists the instances of the configured sensor objects that
// the device has.
func compositePaths(r *server.Registration, objects []uint16) []lwm2m.Path {
	var out []lwm2m.Path
	for _, o := range r.Objects {
		if !slices.Contains(objects, o.ID) {
			continue
		}
		for _, i := range o.Instances {
			out = append(out, lwm2m.NewPath(o.ID, i))
		}
	}
	return out
}

// Updated refreshes the endpoint and sends what waited for the device. An
// Update that changes nothing runs no statement here (issue 15): the store
// remembers the registration fields, its "updated" event (one every
// updateEventEvery) or Seen goes through the ingestion queue, and the
// dispatcher asks the database only when operations are queued for the
// device.
func (l *lifecycle) Updated(ctx context.Context, r *server.Registration) {
	// An admin may have deleted the device while it stayed registered; its
	// Update must not bring it back (and with it an accepted name).
	if err := l.db.RefreshEndpoint(ctx, l.endpointRow(r)); errors.Is(err, store.ErrNotFound) {
		l.log.Warn("update from a deleted endpoint ignored; it must register again", "endpoint", r.Endpoint)
		return
	} else if err != nil {
		l.log.Warn("update not recorded", "endpoint", r.Endpoint, "err", err)
	}
	l.recordUpdate(ctx, r)
	l.sawUplink(r)
	l.disp.Uplink(r.Endpoint)
	if l.fw != nil {
		l.fw.Uplink(r.Endpoint)
	}
}

// recordUpdate keeps an Update as updateNote says: an "updated" event, a
// Seen, or nothing. When the store refuses it, the next Update tries
// again.
func (l *lifecycle) recordUpdate(ctx context.Context, r *server.Registration) {
	event, seen := l.updateNote(r.Endpoint, l.clock())
	var err error
	switch {
	case event:
		err = l.db.RecordRegistration(ctx, r.Endpoint, store.RegUpdated, r.LastUpdate, "")
	case seen:
		err = l.db.Seen(ctx, r.Endpoint, r.LastUpdate)
	}
	if err != nil {
		l.unnote(r.Endpoint, event)
		l.log.Warn("update not recorded", "endpoint", r.Endpoint, "err", err)
	}
}

// unnote forgets what updateNote marked for an Update that was not
// recorded: the event (and with it the Seen), or the Seen.
func (l *lifecycle) unnote(ep string, event bool) {
	l.change(ep, func(u uplinkState) uplinkState {
		if event {
			u.event = time.Time{}
		}
		u.seen = time.Time{}
		return u
	})
}

// Deregistered marks the endpoint offline. A registration replaced by a new
// Register is not an unregistration: the new one is recorded already.
func (l *lifecycle) Deregistered(ctx context.Context, r *server.Registration, reason server.DeregisterReason) {
	if reason == server.ReasonReplaced {
		return
	}
	// The server reports an ended registration after the endpoint's next
	// one may have started; only the current registration's end counts.
	if cur, ok := l.srv.Registration(r.Endpoint); ok && cur.ID != r.ID {
		return
	}
	// A new Register may be recorded already but not yet held by the
	// server (it stores it after Registered returns).
	if row, err := l.db.Endpoint(ctx, r.Endpoint); err == nil && row.RegistrationID != r.ID {
		return
	}
	l.mu.Lock()
	delete(l.uplink, r.Endpoint)
	l.mu.Unlock()
	now := nowUTC()
	if err := l.db.SetEndpointOffline(ctx, r.Endpoint, now, reason == server.ReasonExplicit); err != nil && !errors.Is(err, store.ErrNotFound) {
		l.log.Warn("deregistration not recorded", "endpoint", r.Endpoint, "err", err)
	}
	if err := l.db.RecordRegistration(ctx, r.Endpoint, store.RegUnregistered, now, reason.String()); err != nil {
		l.log.Warn("deregistration event not recorded", "endpoint", r.Endpoint, "err", err)
	}
	l.log.Info("deregistered", "endpoint", r.Endpoint, "reason", reason)
}

// Notified queues a notification's values. The server calls
// NotifiedDeferred instead; Notified serves callers of the plain Handler.
func (l *lifecycle) Notified(ctx context.Context, r *server.Registration, o *server.Observation, recs []lwm2m.Record) error {
	l.sawUplink(r)
	event := ""
	if o.Composite {
		event = store.EventComposite
	}
	if r.QueueMode {
		l.disp.Uplink(r.Endpoint)
	}
	if l.fw != nil {
		l.fw.Values(r.Endpoint, recs)
	}
	return l.ingest(ctx, r.Endpoint, recs, event)
}

// Sent queues the values of a Send (/dp).
func (l *lifecycle) Sent(ctx context.Context, r *server.Registration, recs []lwm2m.Record) error {
	l.sawUplink(r)
	if r.QueueMode {
		l.disp.Uplink(r.Endpoint)
	}
	return l.ingest(ctx, r.Endpoint, recs, eventSend)
}

var _ server.DeferredHandler = (*lifecycle)(nil)

// NotifiedDeferred stores a notification's values and has the server
// acknowledge it only once they are committed (issue 13: acknowledged
// means stored). A full queue refuses it: the device is not acknowledged
// and retransmits. The number of notifications waiting for their commit
// is bounded by the store's queue.
func (l *lifecycle) NotifiedDeferred(ctx context.Context, r *server.Registration, o *server.Observation, recs []lwm2m.Record, stored func(error)) error {
	return l.notifiedThen(ctx, r, o, recs, false, stored)
}

var _ server.StaleHandler = (*lifecycle)(nil)

// NotifiedStale stores the values of a notification that arrived out of
// order — older than one already delivered (RFC 7641 §3.4) — and has it
// acknowledged once they are committed, like NotifiedDeferred: they are
// readings the device was (or will be) told are received. They are kept
// as history but are not the current state: the store does not make them
// the latest values (store.Batch.Stale), and a firmware version among
// them is not recorded.
func (l *lifecycle) NotifiedStale(ctx context.Context, r *server.Registration, o *server.Observation, recs []lwm2m.Record, stored func(error)) error {
	return l.notifiedThen(ctx, r, o, recs, true, stored)
}

func (l *lifecycle) notifiedThen(ctx context.Context, r *server.Registration, o *server.Observation, recs []lwm2m.Record, stale bool, stored func(error)) error {
	l.sawUplink(r)
	event := ""
	if o.Composite {
		event = store.EventComposite
	}
	if r.QueueMode {
		l.disp.Uplink(r.Endpoint)
	}
	return l.ingestThen(ctx, r.Endpoint, recs, event, stale, stored)
}

// SentDeferred stores the values of a Send (/dp); the server answers 2.04
// once they are committed.
func (l *lifecycle) SentDeferred(ctx context.Context, r *server.Registration, recs []lwm2m.Record, stored func(error)) error {
	l.sawUplink(r)
	if r.QueueMode {
		l.disp.Uplink(r.Endpoint)
	}
	return l.ingestThen(ctx, r.Endpoint, recs, eventSend, false, stored)
}

func (l *lifecycle) ingestThen(ctx context.Context, ep string, recs []lwm2m.Record, event string, stale bool, stored func(error)) error {
	if len(recs) == 0 {
		stored(nil)
		return nil
	}
	// Log lines (LogData) and readings go to their own queues; the device
	// is acknowledged once both are committed.
	j := newJoinStored(stored, 2)
	recs, logged, err := l.logs.takeThen(ep, recs, event == eventSend, j.done)
	if err != nil {
		return err
	}
	if !logged {
		j.done(nil)
	}
	if len(recs) == 0 {
		j.done(nil)
		return nil
	}
	if err := l.db.IngestThen(store.Batch{Endpoint: ep, Received: nowUTC(), Records: recs, Event: event, Stale: stale}, j.done); err != nil {
		j.cancel()
		return err
	}
	if !stale {
		l.noteFirmware(ctx, ep, recs, nil)
	}
	return nil
}

func (l *lifecycle) ingest(ctx context.Context, ep string, recs []lwm2m.Record, event string) error {
	if len(recs) == 0 {
		return nil
	}
	recs, err := l.logs.take(ep, recs, event == eventSend)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	if err := l.db.Ingest(store.Batch{Endpoint: ep, Received: l.db.Now(), Records: recs, Event: event}); err != nil {
		return err
	}
	l.noteFirmware(ctx, ep, recs, nil)
	return nil
}

// keep stores values the appliance asked for itself (after a
// registration): nobody retries them, so it waits for room in the queue.
func (l *lifecycle) keep(ctx context.Context, ep string, recs []lwm2m.Record, event string) {
	l.keepKnown(ctx, ep, recs, event, nil)
}

// keepKnown is keep for values of a device whose endpoint row is known
// (nil: not known): a firmware version or model it already holds is not
// written again.
func (l *lifecycle) keepKnown(ctx context.Context, ep string, recs []lwm2m.Record, event string, known *store.Endpoint) {
	recs, err := l.logs.take(ep, recs, false)
	if err != nil {
		l.log.Info("log lines not stored", "endpoint", ep, "err", err)
	}
	if len(recs) == 0 {
		return
	}
	l.noteFirmware(ctx, ep, recs, known)
	if err := l.db.IngestWait(ctx, store.Batch{Endpoint: ep, Received: l.db.Now(), Records: recs, Event: event}); err != nil {
		l.log.Info("values not stored", "endpoint", ep, "err", err)
	}
}

// readModel reads the Model Number (3/0/1), which deployments to a model
// select on, only while the store has none for the device: a model does not
// change with a firmware update, so once known it costs no request, and
// until then one per registration (a device that refused the read is asked
// again next time). Notifications and reads that carry 3/0/1 update it
// through noteFirmware. It reports false when the registration has ended.
func (l *lifecycle) readModel(ctx context.Context, r *server.Registration, known store.Endpoint) (goOn bool) {
	if !hasPath(r, modelPath) || known.Model != "" {
		return true
	}
	recs, err := l.srv.Read(ctx, r.Endpoint, modelPath, lwm2m.FormatNone)
	if err != nil {
		return !l.followUpFailed("model number read failed", err, "endpoint", r.Endpoint)
	}
	l.keepKnown(ctx, r.Endpoint, recs, "", &known)
	return true
}

// noteFirmware records the firmware version and the model when the
// values include them and known (the endpoint row, nil when not known)
// does not hold them already.
func (l *lifecycle) noteFirmware(ctx context.Context, ep string, recs []lwm2m.Record, known *store.Endpoint) {
	for _, rec := range recs {
		if rec.Value.Type() != lwm2m.TypeString {
			continue
		}
		switch rec.Path {
		case firmwareVersionPath:
			if known != nil && rec.Value.Str() == known.FirmwareVersion {
				continue
			}
			if err := l.db.SetEndpointFirmwareVersion(ctx, ep, rec.Value.Str()); err != nil {
				l.log.Debug("firmware version not recorded", "endpoint", ep, "err", err)
			}
		case modelPath:
			if known != nil && strings.TrimSpace(rec.Value.Str()) == known.Model {
				continue
			}
			if err := l.db.SetEndpointModel(ctx, ep, strings.TrimSpace(rec.Value.Str())); err != nil {
				l.log.Debug("model not recorded", "endpoint", ep, "err", err)
			}
		}
	}
}
