package webui

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// rateEnv is a StoreData over the env's store with a clock the test moves.
type rateEnv struct {
	e  *env
	d  *StoreData
	at time.Time
}

func newRateEnv(t *testing.T) *rateEnv {
	e := newEnv(t)
	e.addDevice("dev", true)
	r := &rateEnv{e: e, at: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	r.d = newStoreData(e.db, func() time.Time { return r.at })
	return r
}

// ingest stores n notifications of the device.
func (r *rateEnv) ingest(n int) {
	r.e.t.Helper()
	for i := 0; i < n; i++ {
		rec := lwm2m.Record{Path: lwm2m.MustParsePath("3303/0/5700"), Value: lwm2m.Float(float64(i))}
		if err := r.e.db.IngestWait(context.Background(), store.Batch{Endpoint: "dev", Received: time.Now(), Records: []lwm2m.Record{rec}}); err != nil {
			r.e.t.Fatal(err)
		}
	}
}

func (r *rateEnv) rate() float64 {
	r.e.t.Helper()
	v, err := r.d.NotificationsPerMinute(context.Background())
	if err != nil {
		r.e.t.Fatal(err)
	}
	return v
}

// The first page after a start shows what arrived since the start, not 0
// (it took a second page view to show anything before), and Updates that
// carry nothing are not notifications.
func TestRateFirstViewCountsFromStart(t *testing.T) {
	r := newRateEnv(t)
	r.ingest(10)
	for i := 0; i < 5; i++ {
		if err := r.e.db.Seen(context.Background(), "dev", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r.at = r.at.Add(30 * time.Second)
	if got := r.rate(); got != 20 {
		t.Fatalf("first view, 10 notifications and 5 Updates in 30 s: %v per minute, want 20", got)
	}
}

// After a quiet spell the rate covers the last minute of Run's samples,
// not the whole time since the previous page view.
func TestRateCoversTheLastMinute(t *testing.T) {
	r := newRateEnv(t)
	r.ingest(40)
	for i := 0; i < 60; i++ { // five minutes of Run's ticks
		r.at = r.at.Add(rateEvery)
		r.d.sample()
	}
	r.ingest(6)
	r.at = r.at.Add(rateEvery)
	// The oldest sample kept is the last one at least a minute old: a
	// minute ago, before the 6 arrived and after the 40.
	if got, want := r.rate(), 6.0; got != want {
		t.Fatalf("6 notifications in the last minute after 5 quiet ones: %v per minute, want %v", got, want)
	}
}

// A page asked twice within a second shows 0, not a rate over nothing.
func TestRateWithinASecondIsZero(t *testing.T) {
	r := newRateEnv(t)
	r.ingest(3)
	if got := r.rate(); got != 0 {
		t.Fatalf("rate over 0 s: %v, want 0", got)
	}
}
