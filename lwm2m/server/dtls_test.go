package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

// TestOverDTLS runs the same server on a plain and a DTLS transport at
// once: a PSK device registers over DTLS with its identity in the
// registration, another identity may not update it, and requests reach the
// device through its session.
func TestOverDTLS(t *testing.T) {
	keys := map[string][]byte{"dev-a": []byte("0123456789abcdef"), "dev-b": []byte("fedcba9876543210")}
	dcfg := dtls.DefaultConfig()
	dcfg.PSK = func(id string) ([]byte, error) {
		if k, ok := keys[id]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("%q: %w", id, dtls.ErrUnknownIdentity)
	}
	ds, err := dtls.Listen("127.0.0.1:0", dcfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	s := New(testConfig(), WithHandler(rec))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dtlsDone := make(chan error, 1)
	go func() { dtlsDone <- ds.Run(ctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- s.Serve(ctx, ds) }()
	plain, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainDone := make(chan error, 1)
	go func() { plainDone <- s.Serve(ctx, plain) }()
	defer func() {
		cancel()
		<-serveDone
		<-plainDone
		<-dtlsDone
	}()

	dial := func(id string) (*device, *dtls.Client) {
		t.Helper()
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		c, err := dtls.Dial(dctx, ds.LocalAddr().String(), dtls.ClientConfig{PSKIdentity: id, PSK: keys[id]})
		if err != nil {
			t.Fatal(err)
		}
		d := &device{t: t, server: c.Peer(), values: map[string]string{"/3/0/0": "secure"}, done: make(chan error, 1)}
		d.ep = coap.NewEndpoint(c, coap.HandlerFunc(d.serve), fastCoAP())
		ectx, ecancel := context.WithCancel(context.Background())
		d.cancel = ecancel
		go func() { d.done <- d.ep.Run(ectx) }()
		t.Cleanup(d.stop)
		return d, c
	}
	a, _ := dial("dev-a")
	a.register("dev-a")
	r := rec.next(t, "registered").reg
	if !r.Peer.Secure() || r.Peer.Identity != "dev-a" {
		t.Fatalf("peer %+v", r.Peer)
	}
	recs, err := s.Read(ctxT(t), "dev-a", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if err != nil || recs[0].Value.Text() != "secure" {
		t.Fatalf("read over DTLS: %v %v", recs, err)
	}
	// Another identity cannot update or de-register dev-a's registration,
	// nor can a plain CoAP peer.
	b, _ := dial("dev-b")
	if resp := b.req(coap.POST, a.loc, nil, nil); resp.Code != coap.Forbidden {
		t.Fatalf("update by another identity: %s", resp.Code)
	}
	p := newDevice(t, plain.LocalAddr().String())
	if resp := p.req(coap.DELETE, a.loc, nil, nil); resp.Code != coap.Forbidden {
		t.Fatalf("de-register over plain CoAP: %s", resp.Code)
	}
	// The identity is what the appliance checks: refuse a name mismatch.
	rec.mu.Lock()
	rec.refuse = fmt.Errorf("endpoint does not match identity: %w", ErrForbidden)
	rec.refuseFor = "dev-c"
	rec.mu.Unlock()
	if resp := b.req(coap.POST, "/rd", []string{"ep=dev-c"}, []byte(links), cfLinks); resp.Code != coap.Forbidden {
		t.Fatalf("refusal over DTLS: %s", resp.Code)
	}
	if resp := a.req(coap.DELETE, a.loc, nil, nil); resp.Code != coap.Deleted {
		t.Fatalf("own de-register: %s", resp.Code)
	}
	if _, err := s.Read(ctxT(t), "dev-a", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); !errors.Is(err, ErrNotRegistered) {
		t.Fatal(err)
	}
}
