package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// simDevice is a device made with the lwm2m/client engine.
type simDevice struct {
	c      *client.Client
	objs   map[uint16]*client.ValueObject
	cancel context.CancelFunc
	done   chan error
	execs  chan string
}

func startClient(t *testing.T, addr, ep string, tweak func(*client.Config)) *simDevice {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoint = ep
	cfg.Server = addr
	cfg.Lifetime = 300 * time.Second
	cfg.CoAP = fastCoAP()
	cfg.CoAP.Workers = 1
	cfg.CoAP.PeerRate = 0
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &simDevice{c: c, objs: map[uint16]*client.ValueObject{}, done: make(chan error, 1), execs: make(chan string, 4)}
	reg := c.Tree().Registry()
	for _, id := range []uint16{1, 3, 3303} {
		m, ok := reg.Object(id)
		if !ok {
			t.Fatalf("no model for %d", id)
		}
		d.objs[id] = client.NewValueObject(m)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.objs[1].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.Int(1), 1: lwm2m.Int(300), 6: lwm2m.Bool(true), 7: lwm2m.String("U")}))
	must(d.objs[3].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("FlowNexus"), 1: lwm2m.String("sim-1"), 9: lwm2m.Int(87)}))
	must(d.objs[3303].AddInstance(0, map[uint16]lwm2m.Value{5700: lwm2m.Float(21.5), 5701: lwm2m.String("Cel"), 5750: lwm2m.String("room")}))
	d.objs[3].OnExecute(4, func(inst uint16, args string) error {
		d.execs <- args
		return nil
	})
	for _, id := range []uint16{1, 3, 3303} {
		must(c.Tree().Add(d.objs[id]))
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- c.Run(ctx) }()
	t.Cleanup(d.stop)
	select {
	case <-c.Registered():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not register")
	}
	return d
}

func (d *simDevice) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

// TestClientEngineEndToEnd drives every operation against the lwm2m/client
// engine over loopback UDP.
func TestClientEngineEndToEnd(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d := startClient(t, addr, "sim-e2e", nil)
	r := rec.next(t, "registered").reg
	if r.Endpoint != "sim-e2e" || r.LwM2MVersion != "1.1" {
		t.Fatalf("%+v", r)
	}
	ctx := ctxT(t)
	p := lwm2m.MustParsePath
	for _, f := range []lwm2m.Format{lwm2m.FormatNone, lwm2m.FormatText, lwm2m.FormatTLV, lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR, lwm2m.FormatLwM2MCBOR} {
		recs, err := s.Read(ctx, "sim-e2e", p("/3/0/0"), f)
		if err != nil || len(recs) != 1 || recs[0].Value.Text() != "FlowNexus" {
			t.Fatalf("read in %s: %v %v", f, recs, err)
		}
	}
	recs, err := s.Read(ctx, "sim-e2e", p("/3/0"), lwm2m.FormatTLV)
	if err != nil || len(recs) < 3 {
		t.Fatalf("read instance: %v %v", recs, err)
	}
	links, err := s.Discover(ctx, "sim-e2e", p("/3303"))
	if err != nil || !strings.Contains(links, "</3303/0/5700>") {
		t.Fatalf("discover: %q %v", links, err)
	}
	if err := s.Write(ctx, "sim-e2e", p("/3303/0/5750"), lwm2m.FormatText, []lwm2m.Record{{Path: p("/3303/0/5750"), Value: lwm2m.String("K")}}, true); err != nil {
		t.Fatal(err)
	}
	if recs, err := s.Read(ctx, "sim-e2e", p("/3303/0/5750"), lwm2m.FormatText); err != nil || recs[0].Value.Text() != "K" {
		t.Fatalf("read back: %v %v", recs, err)
	}
	if err := s.Write(ctx, "sim-e2e", p("/3/0/0"), lwm2m.FormatText, []lwm2m.Record{{Path: p("/3/0/0"), Value: lwm2m.String("x")}}, true); !errors.Is(err, ErrMethodNotAllowed) {
		t.Fatalf("write read-only resource: %v", err)
	}
	if _, err := s.Read(ctx, "sim-e2e", p("/3/0/77"), lwm2m.FormatText); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read missing: %v", err)
	}
	if err := s.WriteAttributes(ctx, "sim-e2e", p("/3303/0/5700"), lwm2m.Attributes{PMin: lwm2m.AttrUint(0), PMax: lwm2m.AttrUint(600)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Execute(ctx, "sim-e2e", p("/3/0/4"), "0='now'"); err != nil {
		t.Fatal(err)
	}
	if args := <-d.execs; args != "0='now'" {
		t.Fatalf("execute args %q", args)
	}
	inst, err := s.Create(ctx, "sim-e2e", p("/3303"), lwm2m.FormatSenMLJSON, []lwm2m.Record{{Path: p("/3303/5/5700"), Value: lwm2m.Float(3)}})
	if err != nil || inst != p("/3303/5") {
		t.Fatalf("create: %v %v", inst, err)
	}
	if err := s.Delete(ctx, "sim-e2e", inst); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "sim-e2e", inst, lwm2m.FormatTLV); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read deleted: %v", err)
	}
	for _, f := range []lwm2m.Format{lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR} {
		got, err := s.ReadComposite(ctx, "sim-e2e", []lwm2m.Path{p("/3/0/0"), p("/3303/0/5700")}, f)
		if err != nil || len(got) != 2 {
			t.Fatalf("read-composite %s: %v %v", f, got, err)
		}
	}
	if err := s.WriteComposite(ctx, "sim-e2e", lwm2m.FormatSenMLCBOR, []lwm2m.Record{{Path: p("/3303/0/5750"), Value: lwm2m.String("F")}}); err != nil {
		t.Fatal(err)
	}
	// Observe, then change the value on the device.
	o, first, err := s.Observe(ctx, "sim-e2e", p("/3303/0/5700"), lwm2m.FormatSenMLCBOR)
	if err != nil || len(first) != 1 {
		t.Fatalf("observe: %v %v", first, err)
	}
	// The client starts its observation once its response is out.
	waitFor(t, "the client's observation", func() bool { return len(d.c.Observations()) == 1 })
	if err := d.objs[3303].Set(p("/3303/0/5700"), lwm2m.Float(30.25)); err != nil {
		t.Fatal(err)
	}
	e := rec.next(t, "notified")
	if e.obs != o || e.recs[0].Path != p("/3303/0/5700") {
		t.Fatalf("notification %+v", e)
	}
	if v, _ := e.recs[0].Value.Number(); v != 30.25 {
		t.Fatalf("notified %v", e.recs[0].Value)
	}
	oc, _, err := s.ObserveComposite(ctx, "sim-e2e", []lwm2m.Path{p("/3303/0/5700"), p("/3/0/9")}, lwm2m.FormatSenMLJSON)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's composite observation", func() bool { return len(d.c.Observations()) == 2 })
	if err := d.objs[3].Set(p("/3/0/9"), lwm2m.Int(50)); err != nil {
		t.Fatal(err)
	}
	for {
		e := rec.next(t, "notified")
		if e.obs == oc {
			break
		}
	}
	if err := s.CancelObservation(ctx, o, true); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelObservation(ctx, oc, false); err != nil {
		t.Fatal(err)
	}
	// Send (/dp) from the device.
	if err := d.c.Send(ctx, p("/3303/0/5700")); err != nil {
		t.Fatal(err)
	}
	if e := rec.next(t, "sent"); len(e.recs) != 1 || e.recs[0].Time.IsZero() {
		t.Fatalf("sent %+v", e)
	}
	// The device stops: it de-registers.
	d.stop()
	if e := rec.next(t, "deregistered"); e.reason != ReasonExplicit {
		t.Fatalf("%+v", e)
	}
}

// TestClientEngineQueueMode: a request for a sleeping queue-mode client goes
// out right after the client's next Update.
func TestClientEngineQueueMode(t *testing.T) {
	cfg := testConfig()
	cfg.AwakeWindow = time.Nanosecond
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	d := startClient(t, addr, "sleeper", func(c *client.Config) {
		c.QueueMode = true
		c.AwakeWindow = 2 * time.Second
	})
	if r := rec.next(t, "registered").reg; !r.QueueMode {
		t.Fatal("not queue mode")
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(context.Background(), "sleeper", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
		done <- err
	}()
	waitFor(t, "the read to queue or finish", func() bool { return s.Stats().Queued == 1 || len(done) == 1 })
	d.c.TriggerUpdate()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var _ = coap.Content
