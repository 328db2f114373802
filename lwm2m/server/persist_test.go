package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

// memPersister keeps what a Persister is told, as the store would.
type memPersister struct {
	mu                   sync.Mutex
	regs                 map[string]Registration // by endpoint
	obs                  map[string]Observation  // by token
	saves, touches, dels int
	obsSaves, obsDeletes int
}

func newMemPersister() *memPersister {
	return &memPersister{regs: map[string]Registration{}, obs: map[string]Observation{}}
}

func (p *memPersister) SaveRegistration(r *Registration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.saves++
	if old, ok := p.regs[r.Endpoint]; ok && old.ID != r.ID {
		p.dropObsLocked(old.ID)
	}
	p.regs[r.Endpoint] = *r
}

func (p *memPersister) TouchRegistration(r *Registration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.touches++
	if old, ok := p.regs[r.Endpoint]; ok && old.ID == r.ID {
		old.LastUpdate = r.LastUpdate
		p.regs[r.Endpoint] = old
	}
}

func (p *memPersister) DeleteRegistration(r *Registration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dels++
	if old, ok := p.regs[r.Endpoint]; ok && old.ID == r.ID {
		delete(p.regs, r.Endpoint)
	}
	p.dropObsLocked(r.ID)
}

func (p *memPersister) dropObsLocked(regID string) {
	for k, o := range p.obs {
		if o.RegistrationID == regID {
			delete(p.obs, k)
		}
	}
}

func (p *memPersister) SaveObservation(o *Observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.obsSaves++
	p.obs[o.ID] = *o
}

func (p *memPersister) DeleteObservation(o *Observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.obsDeletes++
	delete(p.obs, o.ID)
}

// state returns what a restart would read back.
func (p *memPersister) state() ([]*Registration, []*Observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var regs []*Registration
	for _, r := range p.regs {
		r := r
		r.Objects, r.ContentFormats, r.RootPath = nil, nil, "" // as stored: links only
		regs = append(regs, &r)
	}
	var obs []*Observation
	for _, o := range p.obs {
		o := o
		obs = append(obs, &o)
	}
	return regs, obs
}

func (p *memPersister) counts() (saves, touches, dels int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.saves, p.touches, p.dels
}

// serveAt runs s on addr until the returned stop is called.
func serveAt(t *testing.T, s *Server, addr string) (stop func()) {
	t.Helper()
	tr, err := coap.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, tr) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			s.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// servingAddr waits until s serves on an endpoint and returns its
// address (serveAt on port 0 picks it).
func servingAddr(t *testing.T, s *Server) string {
	t.Helper()
	var addr string
	waitFor(t, "listener", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for ep := range s.eps {
			addr = ep.LocalAddr().String()
		}
		return addr != ""
	})
	return addr
}

// TestRestoreAcrossRestart: a registration and an observation reported to
// the Persister by one server are given to a new one on the same address;
// the device notices nothing: its notification on the old token is
// delivered, its Update is answered 2.04 on the same location, requests
// reach it — and it never registers again.
func TestRestoreAcrossRestart(t *testing.T) {
	p := newMemPersister()
	rec1 := newRecorder()
	s1 := New(testConfig(), WithHandler(rec1), WithPersister(p))
	stop1 := serveAt(t, s1, "127.0.0.1:0")
	addr := servingAddr(t, s1)
	d := newDevice(t, addr)
	d.register("dev-1")
	reg := rec1.next(t, "registered").reg
	obs, _, err := s1.Observe(ctxT(t), "dev-1", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone)
	if err != nil {
		t.Fatal(err)
	}
	if resp := d.req(coap.POST, d.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatalf("update: %s", resp.Code)
	}
	if saves, touches, _ := p.counts(); saves != 1 || touches != 1 {
		t.Fatalf("an Update that changes nothing must only touch: saves %d touches %d", saves, touches)
	}
	if resp := d.req(coap.POST, d.loc, []string{"lt=600"}, nil); resp.Code != coap.Changed {
		t.Fatalf("update: %s", resp.Code)
	}
	if saves, _, _ := p.counts(); saves != 2 {
		t.Fatalf("a new lifetime must be saved: saves %d", saves)
	}
	stop1()

	rec2 := newRecorder()
	s2 := New(testConfig(), WithHandler(rec2), WithPersister(p))
	regs, obsl := p.state()
	if n, err := s2.Restore(regs, obsl); n != 1 || err != nil || len(obsl) != 1 {
		t.Fatalf("restore: %d %v (%d observations)", n, err, len(obsl))
	}
	serveAt(t, s2, addr)
	got, ok := s2.Registration("dev-1")
	if !ok || got.ID != reg.ID || got.Lifetime != 600*time.Second || len(got.Objects) == 0 || got.RootPath != "/" {
		t.Fatalf("restored registration: %+v", got)
	}
	if err := d.notify(coap.Confirmable, 7, "22.5", lwm2m.FormatText); err != nil {
		t.Fatalf("notification after restart: %v", err)
	}
	ev := rec2.next(t, "notified")
	if ev.obs.ID != obs.ID || ev.reg.ID != reg.ID || len(ev.recs) != 1 || ev.recs[0].Value.Text() != "22.5" {
		t.Fatalf("notification delivered as %+v %+v", ev.obs, ev.recs)
	}
	if resp := d.req(coap.POST, d.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatalf("update after restart: %s %s", resp.Code, resp.Payload)
	}
	rec2.next(t, "updated")
	recs, err := s2.Read(ctxT(t), "dev-1", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if err != nil || len(recs) != 1 || recs[0].Value.Text() != "FlowNexus" {
		t.Fatalf("read after restart: %v %v", recs, err)
	}
	if st := s2.Stats(); st.Registrations != 0 || st.Registered != 1 || st.Observations != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	// Cancelling a restored observation is persisted and sent to the device.
	if err := s2.CancelObservation(ctxT(t), s2.Observations("dev-1")[0], true); err != nil {
		t.Fatal(err)
	}
	if _, o := p.state(); len(o) != 0 {
		t.Fatalf("cancelled observation still saved: %+v", o)
	}
	if resp := d.req(coap.DELETE, d.loc, nil, nil); resp.Code != coap.Deleted {
		t.Fatalf("de-register: %s", resp.Code)
	}
	if r, _ := p.state(); len(r) != 0 {
		t.Fatalf("ended registration still saved: %+v", r)
	}
}

// TestRestoreExpiresByLifetime: a restored registration keeps the lifetime
// it had, counted from its last Update; one already past expires at once.
// TestReRegisterSavesOnce: a new Register of a registered endpoint is one
// SaveRegistration, which replaces the saved registration and ends its
// observations; no DeleteRegistration of the old one goes before it.
func TestReRegisterSavesOnce(t *testing.T) {
	p := newMemPersister()
	rec := newRecorder()
	s := New(testConfig(), WithHandler(rec), WithPersister(p))
	defer serveAt(t, s, "127.0.0.1:0")()
	d := newDevice(t, servingAddr(t, s))
	d.register("dev-1")
	first := rec.next(t, "registered").reg
	if _, _, err := s.Observe(ctxT(t), "dev-1", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone); err != nil {
		t.Fatal(err)
	}
	d.register("dev-1")
	second := rec.next(t, "registered").reg
	if ev := rec.next(t, "deregistered"); ev.reg.ID != first.ID || ev.reason != ReasonReplaced {
		t.Fatalf("replaced registration reported as %+v %v", ev.reg, ev.reason)
	}
	if saves, _, dels := p.counts(); saves != 2 || dels != 0 {
		t.Fatalf("re-registration: %d saves and %d deletions, want 2 and 0", saves, dels)
	}
	regs, obs := p.state()
	if len(regs) != 1 || regs[0].ID != second.ID || second.ID == first.ID {
		t.Fatalf("saved registrations %+v, want only %s", regs, second.ID)
	}
	if len(obs) != 0 {
		t.Fatalf("observations of the replaced registration still saved: %+v", obs)
	}
}

func TestRestoreExpiresByLifetime(t *testing.T) {
	cfg := testConfig()
	cfg.ExpiryGrace = 0
	rec := newRecorder()
	p := newMemPersister()
	s := New(cfg, WithHandler(rec), WithPersister(p))
	now := time.Now()
	old := &Registration{ID: "old", Endpoint: "gone", Lifetime: time.Minute, LastUpdate: now.Add(-2 * time.Minute), Links: "</3/0>"}
	live := &Registration{ID: "live", Endpoint: "here", Lifetime: time.Hour, LastUpdate: now.Add(-time.Minute), Links: "</3/0>", QueueMode: true}
	p.SaveRegistration(old)
	if n, err := s.Restore([]*Registration{old, live}, nil); n != 2 || err != nil {
		t.Fatalf("restore: %d %v", n, err)
	}
	ev := rec.next(t, "deregistered")
	if ev.reg.Endpoint != "gone" || ev.reason != ReasonExpired {
		t.Fatalf("expected gone to expire: %+v %v", ev.reg, ev.reason)
	}
	if r, ok := s.Registration("here"); !ok || !r.ExpiresAt.Equal(live.LastUpdate.Add(time.Hour)) {
		t.Fatalf("live registration: %+v", r)
	}
	if _, _, dels := p.counts(); dels != 1 {
		t.Fatalf("expiry not persisted: %d deletions", dels)
	}
	// A queue-mode device is asleep until its next uplink: a request waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Read(ctx, "here", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatNone); !errors.Is(err, ErrTimeout) {
		t.Fatalf("request to a restored sleeping device: %v", err)
	}
	s.Close()
}

// TestRestoreRefusesBadEntries: unusable entries are skipped and reported;
// the rest is restored.
func TestRestoreRefusesBadEntries(t *testing.T) {
	s := New(testConfig())
	defer s.Close()
	good := &Registration{ID: "a", Endpoint: "ep-a", Lifetime: time.Hour, LastUpdate: time.Now(), Links: "</3/0>"}
	regs := []*Registration{
		good,
		{ID: "", Endpoint: "ep-b", Lifetime: time.Hour},                      // no id
		{ID: "c", Endpoint: "ep-a", Lifetime: time.Hour},                     // endpoint held
		{ID: "d", Endpoint: "ep-d", Lifetime: 0},                             // no lifetime
		{ID: "e", Endpoint: "ep-e", Lifetime: time.Hour, Links: "not links"}, // bad links
	}
	p := lwm2m.MustParsePath("/3/0/0")
	obs := []*Observation{
		{ID: "0102030405060708", Endpoint: "ep-a", RegistrationID: "a", Paths: []lwm2m.Path{p}},
		{ID: "zz", Endpoint: "ep-a", RegistrationID: "a", Paths: []lwm2m.Path{p}},               // bad token
		{ID: "0102", Endpoint: "ep-a", RegistrationID: "old", Paths: []lwm2m.Path{p}},           // other registration
		{ID: "0103", Endpoint: "ep-a", RegistrationID: "a"},                                     // no path
		{ID: "0102030405060708", Endpoint: "ep-a", RegistrationID: "a", Paths: []lwm2m.Path{p}}, // twice
	}
	n, err := s.Restore(regs, obs)
	if n != 1 || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("restore: %d %v", n, err)
	}
	if st := s.Stats(); st.Registered != 1 || st.Observations != 1 {
		t.Fatalf("restored: %+v", st)
	}
}

// TestRestoredDTLSRegistrationAfterNewHandshake: after a crash the DTLS
// sessions are gone; a device that handshakes again with the same
// identity finds its restored registration (Update 2.04, same location)
// and its notifications on the old observation are delivered.
func TestRestoredDTLSRegistrationAfterNewHandshake(t *testing.T) {
	key := []byte("0123456789abcdef")
	dcfg := dtls.DefaultConfig()
	dcfg.PSK = func(id string) ([]byte, error) {
		if id == "dev-a" {
			return key, nil
		}
		return nil, fmt.Errorf("%q: %w", id, dtls.ErrUnknownIdentity)
	}
	p := newMemPersister()
	run := func(addr string, rec *recorder, restore bool) (*Server, string, func()) {
		ds, err := dtls.Listen(addr, dcfg)
		if err != nil {
			t.Fatal(err)
		}
		s := New(testConfig(), WithHandler(rec), WithPersister(p))
		if restore {
			regs, obs := p.state()
			if n, err := s.Restore(regs, obs); n != 1 || err != nil {
				t.Fatalf("restore: %d %v", n, err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		d1, d2 := make(chan error, 1), make(chan error, 1)
		go func() { d1 <- ds.Run(ctx) }()
		go func() { d2 <- s.Serve(ctx, ds) }()
		return s, ds.LocalAddr().String(), func() { cancel(); <-d1; <-d2; s.Close() }
	}
	dial := func(addr string) *device {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		c, err := dtls.Dial(dctx, addr, dtls.ClientConfig{PSKIdentity: "dev-a", PSK: key})
		if err != nil {
			t.Fatal(err)
		}
		d := &device{t: t, server: c.Peer(), values: map[string]string{"/3303/0/5700": "20.5"}, done: make(chan error, 1)}
		d.ep = coap.NewEndpoint(c, coap.HandlerFunc(d.serve), fastCoAP())
		ectx, ecancel := context.WithCancel(context.Background())
		d.cancel = ecancel
		go func() { d.done <- d.ep.Run(ectx) }()
		t.Cleanup(d.stop)
		return d
	}

	rec1 := newRecorder()
	s1, addr, stop1 := run("127.0.0.1:0", rec1, false)
	d1 := dial(addr)
	d1.register("dev-a")
	reg := rec1.next(t, "registered").reg
	obs, _, err := s1.Observe(ctxT(t), "dev-a", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone)
	if err != nil {
		t.Fatal(err)
	}
	stop1() // no session file: the sessions are lost, as in a crash
	d1.stop()

	rec2 := newRecorder()
	_, _, stop2 := run(addr, rec2, true)
	defer stop2()
	d2 := dial(addr)
	d2.loc = d1.loc
	d1.mu.Lock()
	d2.obsTok = d1.obsTok
	d1.mu.Unlock()
	d2.obsPeer = d2.server
	if resp := d2.req(coap.POST, d2.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatalf("update over a new session: %s %s", resp.Code, resp.Payload)
	}
	if ev := rec2.next(t, "updated"); ev.reg.ID != reg.ID || ev.reg.Peer.Session == reg.Peer.Session {
		t.Fatalf("update: %+v (registered with session %d)", ev.reg, reg.Peer.Session)
	}
	if err := d2.notify(coap.Confirmable, 9, "23.5", lwm2m.FormatText); err != nil {
		t.Fatalf("notification over a new session: %v", err)
	}
	if ev := rec2.next(t, "notified"); ev.obs.ID != obs.ID || ev.recs[0].Value.Text() != "23.5" {
		t.Fatalf("notification delivered as %+v %+v", ev.obs, ev.recs)
	}
	if r, _ := p.state(); len(r) != 1 || r[0].Peer.Session == reg.Peer.Session {
		t.Fatalf("new session not saved: %+v", r)
	}
}

// FuzzRestore: whatever a damaged database hands back, Restore neither
// panics nor keeps an entry it cannot use, and what it keeps is served.
func FuzzRestore(f *testing.F) {
	f.Add("r1", "dev", int64(300), `</>;rt="oma.lwm2m",</3/0>`, "127.0.0.1:5683", "0102030405060708", "/3303/0/5700", false, uint16(lwm2m.FormatNone))
	f.Add("r2", "dev", int64(1), `</a>;rt="oma.lwm2m",</a/3/0>`, "[::1]:1", "ab", "/3303/0 /3/0/9", true, uint16(lwm2m.FormatSenMLCBOR))
	f.Add("", "", int64(0), "<", "x", "zz", "", false, uint16(0))
	f.Add("r3", "d", int64(-5), "</3/0>", "", "0102030405060708090a", "/65536", true, uint16(lwm2m.FormatText))
	f.Fuzz(func(t *testing.T, id, ep string, lt int64, links, addr, tok, paths string, composite bool, format uint16) {
		s := New(testConfig())
		defer s.Close()
		ap, _ := netip.ParseAddrPort(addr)
		reg := &Registration{ID: id, Endpoint: ep, Lifetime: time.Duration(lt) * time.Second, Links: links,
			Peer: coap.Peer{Addr: ap}, LastUpdate: time.Now()}
		var ps []lwm2m.Path
		for _, x := range strings.Fields(paths) {
			if p, err := lwm2m.ParsePath(x); err == nil {
				ps = append(ps, p)
			}
		}
		o := &Observation{ID: tok, Endpoint: ep, RegistrationID: id, Paths: ps, Composite: composite, Format: lwm2m.Format(format)}
		n, err := s.Restore([]*Registration{reg}, []*Observation{o})
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("error %v is not ErrBadRequest", err)
		}
		st := s.Stats()
		if st.Registered != n || n > 1 || st.Observations > n {
			t.Fatalf("restored %d, held %+v", n, st)
		}
		if n == 1 {
			if r, ok := s.Registration(ep); !ok || r.ID != id || r.RootPath == "" {
				t.Fatalf("restored registration not served: %+v", r)
			}
		}
	})
}

// holdingPersister holds SaveRegistration until released, so a test can
// look at the server while a Register is being saved.
type holdingPersister struct {
	*memPersister
	saving  chan *Registration
	release chan struct{}
	once    sync.Once
}

func (p *holdingPersister) let() { p.once.Do(func() { close(p.release) }) }

func (p *holdingPersister) SaveRegistration(r *Registration) {
	p.saving <- r
	<-p.release
	p.memPersister.SaveRegistration(r)
}

// TestRequestsWaitForSavedRegister: a registration is in memory before the
// Persister has it. Work started for the device (an auto-observation) must
// wait until the Register is saved, or the observation it creates cannot
// be saved with it and is lost at the next restart: the device's
// notifications on it were then answered RST (seen in the appliance's
// restart test).
func TestRequestsWaitForSavedRegister(t *testing.T) {
	p := &holdingPersister{memPersister: newMemPersister(), saving: make(chan *Registration, 1), release: make(chan struct{})}
	s := New(testConfig(), WithHandler(newRecorder()), WithPersister(p))
	serveAt(t, s, "127.0.0.1:0")
	t.Cleanup(p.let) // runs first: a failing test must not hold the server
	addr := servingAddr(t, s)
	d := newDevice(t, addr)
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		d.register("dev-1")
	}()
	var r *Registration
	select {
	case r = <-p.saving:
	case <-ctxT(t).Done():
		t.Fatal("the Register never reached the Persister")
	}
	// The Register is being saved: nothing may go to the registration yet.
	// An already-ended context shows whether a call would wait.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.AwaitRegistration(ended, "dev-1", r.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("AwaitRegistration while the Register is saved: %v, want it to wait", err)
	}
	if _, err := s.Read(ended, "dev-1", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read while the Register is saved: %v, want it to wait", err)
	}
	p.let()
	<-registered
	if err := s.AwaitRegistration(ctxT(t), "dev-1", r.ID); err != nil {
		t.Fatalf("AwaitRegistration after the save: %v", err)
	}
	o, _, err := s.Observe(ctxT(t), "dev-1", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone)
	if err != nil {
		t.Fatal(err)
	}
	regs, obs := p.state()
	if len(regs) != 1 || len(obs) != 1 || obs[0].ID != o.ID || obs[0].RegistrationID != regs[0].ID {
		t.Fatalf("saved: %d registrations, observations %+v", len(regs), obs)
	}
}
