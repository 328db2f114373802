package client

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// fakeClock is a settable clock for the observe engine; timers still run on
// real time, so tests use periods long enough never to fire on their own.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

type emitted struct {
	mu   sync.Mutex
	recs [][]lwm2m.Record
}

func (e *emitted) emit(o *Observation, recs []lwm2m.Record, con bool) {
	e.mu.Lock()
	e.recs = append(e.recs, recs)
	e.mu.Unlock()
}

func (e *emitted) count() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.recs) }

// waitCount waits for a notification sent from a timer.
func (e *emitted) waitCount(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a bound against hangs
	for e.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications, want %d", e.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *emitted) last() []lwm2m.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.recs[len(e.recs)-1]
}

// observeSetup makes an engine over a test client's tree with a fake clock.
func observeSetup(t *testing.T) (*observeEngine, map[uint16]*ValueObject, *fakeClock, *emitted) {
	c, objs := newTestClient(t, Version11)
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	em := &emitted{}
	e := newObserveEngine(c.Tree(), em.emit)
	e.now = clk.Now
	t.Cleanup(e.cancelAll)
	return e, objs, clk, em
}

func writeAttrs(t *testing.T, e *observeEngine, p string, qs ...string) {
	t.Helper()
	path := lwm2m.MustParsePath(p)
	var rm *lwm2m.ResourceModel
	if path.Len() >= 3 {
		rm, _ = e.tree.Registry().Resource(path.ObjectID(), path.ResourceID())
	}
	u, err := parseWriteAttributes(path, qs, rm)
	must(t, err)
	must(t, e.writeAttributes(path, u, rm))
}

func startObs(t *testing.T, e *observeEngine, token string, paths ...string) *Observation {
	t.Helper()
	o := &Observation{Token: token, Format: lwm2m.FormatSenMLJSON}
	for _, p := range paths {
		o.Paths = append(o.Paths, lwm2m.MustParsePath(p))
	}
	o.Composite = len(paths) > 1
	recs, err := e.read(o)
	must(t, err)
	e.start(o, recs)
	e.activate(o)
	return o
}

var temp = lwm2m.MustParsePath("/3303/0/5700")

// TestObservePmin: a change inside pmin waits until pmin has passed, and
// then the latest value goes out once.
func TestObservePmin(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	writeAttrs(t, e, "/3303/0/5700", "pmin=10", "pmax=3600")
	o := startObs(t, e, "a", "/3303/0/5700")
	clk.Advance(2 * time.Second)
	must(t, objs[3303].Set(temp, lwm2m.Float(22)))
	must(t, objs[3303].Set(temp, lwm2m.Float(23)))
	if em.count() != 0 {
		t.Fatalf("notified inside pmin: %d", em.count())
	}
	if !o.isPending() {
		t.Fatal("change inside pmin not pending")
	}
	clk.Advance(8 * time.Second)
	e.fire(o)
	if em.count() != 1 || em.last()[0].Value.Float() != 23 {
		t.Fatalf("after pmin: %d notifications, last %v", em.count(), em.recs)
	}
	// No change: nothing until pmax.
	clk.Advance(20 * time.Second)
	e.fire(o)
	if em.count() != 1 {
		t.Fatalf("notified without change before pmax: %d", em.count())
	}
}

// TestObservePmax: with no change the value is sent again when pmax passes.
func TestObservePmax(t *testing.T) {
	e, _, clk, em := observeSetup(t)
	writeAttrs(t, e, "/3303/0/5700", "pmax=60")
	o := startObs(t, e, "a", "/3303/0/5700")
	clk.Advance(59 * time.Second)
	e.fire(o)
	if em.count() != 0 {
		t.Fatalf("notified before pmax")
	}
	clk.Advance(time.Second)
	e.fire(o)
	if em.count() != 1 {
		t.Fatalf("no notification at pmax")
	}
}

// TestObserveThresholds: gt, lt and st decide which changes notify.
func TestObserveThresholds(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	// Starts at 21.5.
	writeAttrs(t, e, "/3303/0/5700", "gt=25", "lt=10", "st=3")
	startObs(t, e, "a", "/3303/0/5700")
	steps := []struct {
		v      float64
		notify bool
	}{
		{22.0, false}, // +0.5: no threshold crossed, step below st
		{24.9, true},  // +3.4 from 21.5: step reached
		{25.5, true},  // crosses gt
		{26.0, false}, // stays above gt, small step
		{9.0, true},   // crosses lt (and gt, and st)
		{9.5, false},
	}
	n := 0
	for _, s := range steps {
		clk.Advance(time.Second)
		must(t, objs[3303].Set(temp, lwm2m.Float(s.v)))
		if s.notify {
			n++
		}
		if em.count() != n {
			t.Fatalf("value %v: %d notifications, want %d", s.v, em.count(), n)
		}
	}
}

// TestObserveEdge: edge=1 notifies rising edges of a boolean only.
func TestObserveEdge(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	p := lwm2m.MustParsePath("/1/0/6")
	writeAttrs(t, e, "/1/0/6", "edge=1")
	startObs(t, e, "a", "/1/0/6") // true
	for i, s := range []struct {
		v    bool
		want int
	}{{false, 0}, {true, 1}, {false, 1}, {true, 2}} {
		clk.Advance(time.Second)
		must(t, objs[1].Set(p, lwm2m.Bool(s.v)))
		if em.count() != s.want {
			t.Fatalf("step %d (%v): %d notifications, want %d", i, s.v, em.count(), s.want)
		}
	}
}

// TestObserveInheritance: object-level pmin applies to a resource
// observation until the resource overrides it.
func TestObserveInheritance(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	writeAttrs(t, e, "/3303", "pmin=30")
	o := startObs(t, e, "a", "/3303/0/5700")
	clk.Advance(5 * time.Second)
	must(t, objs[3303].Set(temp, lwm2m.Float(30)))
	if em.count() != 0 || !o.isPending() {
		t.Fatal("object-level pmin not applied")
	}
	// The resource's own pmin=1 has already passed: the held change goes
	// out at once (on the timer the attribute write re-arms).
	writeAttrs(t, e, "/3303/0/5700", "pmin=1")
	em.waitCount(t, 1)
	clk.Advance(time.Second)
	must(t, objs[3303].Set(temp, lwm2m.Float(31)))
	if em.count() != 2 {
		t.Fatalf("resource-level pmin did not override: %d", em.count())
	}
	// Unsetting pmin at the resource brings the object's back.
	writeAttrs(t, e, "/3303/0/5700", "pmin")
	if a := e.attrsAt(temp); a.PMin.IsSet() {
		t.Fatalf("pmin not unset: %v", a)
	}
}

// TestObserveComposite: a change of any observed path notifies all paths.
func TestObserveComposite(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	startObs(t, e, "c", "/3303/0/5700", "/3303/1/5700")
	clk.Advance(time.Second)
	must(t, objs[3303].Set(lwm2m.MustParsePath("/3303/1/5700"), lwm2m.Float(5)))
	if em.count() != 1 || len(em.last()) != 2 {
		t.Fatalf("composite notification: %v", em.recs)
	}
	// An unrelated change does not notify.
	must(t, objs[3].Set(lwm2m.MustParsePath("/3/0/9"), lwm2m.Int(10)))
	if em.count() != 1 {
		t.Fatal("unrelated change notified")
	}
}

// TestObserveDeletedInstance: deleting an observed instance ends the
// observation with an error notification.
func TestObserveDeletedInstance(t *testing.T) {
	e, objs, _, em := observeSetup(t)
	startObs(t, e, "d", "/3303/1")
	must(t, objs[3303].Delete(1))
	if em.count() != 1 || em.last() != nil {
		t.Fatalf("delete of observed instance: %v", em.recs)
	}
	if len(e.observations()) != 0 {
		t.Fatal("observation survived its instance")
	}
}

// TestObserveThroughHandler: GET Observe=0 starts an observation with an
// Observe option in the answer; Observe=1 ends it (RFC 7641 §3.6).
func TestObserveThroughHandler(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	m := req(coap.GET, "/3303/0/5700")
	m.SetObserve(0)
	m.Token = []byte("tok1")
	r := serve(t, c, m)
	if _, ok := r.Observe(); !ok || r.Code != coap.Content {
		t.Fatalf("observe answer %s without Observe option", r.Code)
	}
	if got := c.Observations(); len(got) != 1 || got[0][0] != temp {
		t.Fatalf("observations %v", got)
	}
	// The same token again re-registers (RFC 7641 §4.1): still one.
	m = req(coap.GET, "/3303/0/5700")
	m.SetObserve(0)
	m.Token = []byte("tok1")
	serve(t, c, m)
	if got := c.Observations(); len(got) != 1 {
		t.Fatalf("re-registration made %d observations", len(got))
	}
	m = req(coap.GET, "/3303/0/5700")
	m.SetObserve(1)
	m.Token = []byte("tok1")
	if r := serve(t, c, m); r.Code != coap.Content {
		t.Fatalf("cancel: %s", r.Code)
	}
	if got := c.Observations(); len(got) != 0 {
		t.Fatalf("observation not cancelled: %v", got)
	}
	// Observing an unknown path starts nothing.
	m = req(coap.GET, "/3303/9/5700")
	m.SetObserve(0)
	if r := serve(t, c, m); r.Code != coap.NotFound || len(c.Observations()) != 0 {
		t.Fatalf("observe unknown: %s %v", r.Code, c.Observations())
	}
}

// TestAttrParse covers the Write-Attributes refusals (all 4.00).
func TestAttrParse(t *testing.T) {
	res, _ := lwm2m.NewRegistry().Resource(3303, 5700)
	bad := [][]string{
		{}, {"pmin=x"}, {"pmin=-2"}, {"gt=NaN"}, {"st=-1"}, {"edge=2"}, {"con=yes"}, {"zz=1"}, {"zz"}, {"pmin=9", "pmax=1"}, {"epmin=9", "epmax=1"},
	}
	for _, qs := range bad {
		if _, err := parseWriteAttributes(temp, qs, res); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%q: %v", qs, err)
		}
	}
	if _, err := parseWriteAttributes(temp, []string{"pmin=1", "pmax=5", "gt=2.5", "lt=-1", "st=0.1", "epmin=1", "epmax=9", "con=1", "hqmax=3"}, res); err != nil {
		t.Fatal(err)
	}
}

// TestObserveEvaluationPeriods: epmax makes the client sample a value that
// changes without telling (a computed one); epmin holds back evaluation.
func TestObserveEvaluationPeriods(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	var n int64
	objs[3].OnRead(10, func(uint16) lwm2m.Value { n++; return lwm2m.Int(n) })
	writeAttrs(t, e, "/3/0/10", "epmax=5")
	o := startObs(t, e, "m", "/3/0/10")
	if em.count() != 0 {
		t.Fatal("notified at start")
	}
	clk.Advance(5 * time.Second)
	e.fire(o)
	if em.count() != 1 {
		t.Fatalf("epmax sample did not notify the changed value: %d", em.count())
	}

	writeAttrs(t, e, "/3303/0/5700", "epmin=10")
	o2 := startObs(t, e, "n", "/3303/0/5700")
	clk.Advance(time.Second)
	must(t, objs[3303].Set(temp, lwm2m.Float(40)))
	if em.count() != 1 || !o2.isPending() {
		t.Fatalf("evaluated inside epmin: %d notifications", em.count())
	}
	clk.Advance(9 * time.Second)
	e.fire(o2)
	if em.count() != 2 || em.last()[0].Value.Float() != 40 {
		t.Fatalf("after epmin: %d notifications", em.count())
	}
}

func (o *Observation) isPending() bool {
	o.eng.mu.Lock()
	defer o.eng.mu.Unlock()
	return o.pending
}

// TestObservePendingSettles: a change held by pmin that is undone before
// pmin passes sends nothing and leaves nothing pending.
func TestObservePendingSettles(t *testing.T) {
	e, objs, clk, em := observeSetup(t)
	writeAttrs(t, e, "/3303/0/5700", "pmin=10")
	o := startObs(t, e, "s", "/3303/0/5700")
	clk.Advance(time.Second)
	must(t, objs[3303].Set(temp, lwm2m.Float(50)))
	must(t, objs[3303].Set(temp, lwm2m.Float(21.5)))
	clk.Advance(10 * time.Second)
	e.fire(o)
	if em.count() != 0 || o.isPending() {
		t.Fatalf("undone change: %d notifications, pending %v", em.count(), o.isPending())
	}
}
