package webui

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// StoreData implements Data over store's queries. The appliance hands it
// to New as Deps.Data.
type StoreData struct {
	db  *store.DB
	now func() time.Time

	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	t        time.Time
	accepted uint64
}

// NewStoreData returns Data backed by db. Its rate counts from now.
func NewStoreData(db *store.DB) *StoreData { return newStoreData(db, time.Now) }

// newStoreData is NewStoreData on the clock now, with its first sample.
func newStoreData(db *store.DB, now func() time.Time) *StoreData {
	d := &StoreData{db: db, now: now}
	d.sample()
	return d
}

// Latest implements Data.
func (d *StoreData) Latest(ctx context.Context, endpoint string) ([]Reading, error) {
	rs, err := d.db.Latest(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	out := make([]Reading, len(rs))
	for i, r := range rs {
		out[i] = Reading{Path: r.Path, Value: r.Value, Time: r.Time}
	}
	return out, nil
}

// Series implements Data: a chart (bucket means) when max > 0 and the
// resource is numeric, raw readings otherwise. A resource without readings
// is an empty series, not an error.
func (d *StoreData) Series(ctx context.Context, endpoint string, path lwm2m.Path, from, to time.Time, max int) ([]Point, error) {
	if max > 0 {
		ch, err := d.db.Chart(ctx, store.ChartQuery{Endpoint: endpoint, Path: path, From: from, To: to, MaxPoints: max})
		switch {
		case err == nil:
			out := make([]Point, len(ch.Points))
			for i, p := range ch.Points {
				out[i] = Point{Time: p.T, Value: lwm2m.Float(p.Mean)}
			}
			return out, nil
		case errors.Is(err, store.ErrNotFound):
			return []Point{}, nil
		case !errors.Is(err, store.ErrInvalid):
			return nil, err
		}
		// Not numeric: fall through to the raw values.
	}
	limit := max
	if limit <= 0 {
		limit = 1 << 30
	}
	pts, err := d.db.Readings(ctx, endpoint, path, from, to, limit)
	if errors.Is(err, store.ErrNotFound) {
		return []Point{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point{Time: p.T, Value: p.V}
	}
	return out, nil
}

// Events implements Data.
func (d *StoreData) Events(ctx context.Context, endpoint string, limit int) ([]DeviceEvent, error) {
	evs, err := d.db.Events(ctx, store.EventQuery{Endpoint: endpoint, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]DeviceEvent, len(evs))
	for i, e := range evs {
		de := DeviceEvent{ID: e.ID, Endpoint: e.Endpoint, Time: e.Time, Kind: e.Kind, Detail: e.Detail}
		for _, r := range e.Resources {
			p, err := lwm2m.ParsePath(r.Path)
			if err != nil || p.ObjectID() == store.RegistrationObject {
				continue // the registration reading only repeats the event
			}
			de.Readings = append(de.Readings, Reading{Path: p, Value: lwm2m.String(r.Value), Time: r.Time})
		}
		out[i] = de
	}
	return out, nil
}

// Logs implements Data.
func (d *StoreData) Logs(ctx context.Context, endpoint string, limit int) ([]LogLine, error) {
	ls, err := d.db.DeviceLogs(ctx, endpoint, 0, limit)
	if err != nil {
		return nil, err
	}
	out := make([]LogLine, len(ls))
	for i, l := range ls {
		out[i] = LogLine{Time: l.Time, Line: l.Line}
	}
	return out, nil
}

// rateEvery is how often Run samples the ingestion counter, so that the
// rate covers the last minute however long ago a page last asked.
const rateEvery = 5 * time.Second

// Run samples the ingestion counter every rateEvery until ctx ends. The
// appliance runs it; without it the rate is measured between page views
// and from the StoreData's creation.
func (d *StoreData) Run(ctx context.Context) error {
	t := time.NewTicker(rateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.sample()
		}
	}
}

// sample records the ingestion counter now and returns the oldest sample
// still needed: the latest one at least a minute old, or the first.
func (d *StoreData) sample() (now time.Time, accepted uint64, first rateSample) {
	d.mu.Lock() // read under the lock too, so that samples stay in order
	defer d.mu.Unlock()
	st := d.db.Stats()
	now, accepted = d.now(), st.Accepted-st.AcceptedSeen
	d.samples = append(d.samples, rateSample{now, accepted})
	for len(d.samples) > 2 && now.Sub(d.samples[1].t) >= time.Minute {
		d.samples = d.samples[1:]
	}
	if len(d.samples) > 256 {
		d.samples = d.samples[len(d.samples)-256:]
	}
	return now, accepted, d.samples[0]
}

// NotificationsPerMinute implements Data from the ingestion counters: the
// batches accepted since the oldest sample of the last minute, but for
// the Updates that only said a device was heard from. The first
// sample is taken when the StoreData is made, so the first page after a
// start already shows the rate since then.
func (d *StoreData) NotificationsPerMinute(ctx context.Context) (float64, error) {
	now, accepted, first := d.sample()
	dt := now.Sub(first.t)
	if dt < time.Second {
		return 0, nil
	}
	return float64(accepted-first.accepted) / dt.Minutes(), nil
}

// FollowStore publishes what store commits — registration events and new
// values — into the broker until ctx ends, so that the pages update live
// from the same path every reading takes. The appliance adds operation
// state changes itself. It subscribes to the store only while a page is
// subscribed to the broker.
func (b *Broker) FollowStore(ctx context.Context, db *store.DB) {
	b.follow(func() func() {
		ch, cancel := db.Subscribe(1024)
		fctx, stop := context.WithCancel(ctx)
		go b.forward(fctx, ch)
		return func() { stop(); cancel() }
	})
	<-ctx.Done()
	b.follow(nil)
}

// forward publishes each commit on ch until ctx ends or ch closes.
func (b *Broker) forward(ctx context.Context, ch <-chan store.Committed) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			b.publishCommitted(c)
		}
	}
}

func (b *Broker) publishCommitted(c store.Committed) {
	switch c.Event {
	case store.EventRegistered, store.EventUnregistered, store.EventUpdated:
		b.Publish(LiveEvent{Kind: c.Event, Endpoint: c.Endpoint, Time: c.Received})
		return
	}
	for _, r := range c.Records {
		t := r.Time
		if t.IsZero() {
			t = c.Received
		}
		b.Publish(LiveEvent{Kind: "value", Endpoint: c.Endpoint, Time: t, Path: r.Path.Relative(), Value: r.Value})
	}
}

// StoreSettings keeps Settings in store's settings table under one key;
// the appliance may use it as Deps.Settings and read the same key.
type StoreSettings struct {
	db       *store.DB
	defaults Settings
}

// SettingsKey is the store settings key StoreSettings uses.
const SettingsKey = "webui.settings"

// NewStoreSettings returns settings over db with defaults for a fresh
// database.
func NewStoreSettings(db *store.DB, defaults Settings) *StoreSettings {
	return &StoreSettings{db: db, defaults: defaults}
}

// LoadSettings implements SettingsStore.
func (s *StoreSettings) LoadSettings(ctx context.Context) (Settings, error) {
	st := s.defaults
	err := s.db.Setting(ctx, SettingsKey, &st)
	if errors.Is(err, store.ErrNotFound) {
		return s.defaults, nil
	}
	return st, err
}

// SaveSettings implements SettingsStore.
func (s *StoreSettings) SaveSettings(ctx context.Context, st Settings) error {
	return s.db.SetSetting(ctx, SettingsKey, st)
}
