package coap

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// TestResumeDeliversNotifications: an observation resumed from saved state
// (token and request, after a restart) takes the peer's notifications
// without any request being sent, whatever their sequence number; other
// tokens are still refused with RST.
func TestResumeDeliversNotifications(t *testing.T) {
	srv, cli, p := pair(t, nil, testConfig())
	notes := make(chan string, 4)
	req := get("/3303/0/5700")
	req.Token = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	o, err := cli.Resume(p, req, func(n *Notification) error {
		notes <- string(n.Message.Payload)
		return nil
	})
	if err != nil || !o.Active() {
		t.Fatalf("resume: %v", err)
	}
	if _, err := cli.Resume(p, req, func(*Notification) error { return nil }); !errors.Is(err, ErrObservationExists) {
		t.Fatalf("second resume of one token: %v", err)
	}
	if _, err := cli.Resume(p, get("/1"), func(*Notification) error { return nil }); err == nil {
		t.Fatal("resume without a token accepted")
	}
	observer := Peer{Addr: netip.MustParseAddrPort(cli.LocalAddr().String())}
	n := NewResponse(Content)
	n.SetObserve(1<<24 + 7) // far from 0: only "first seen" makes it fresh
	n.Payload = []byte("21.5")
	if err := srv.Notify(context.Background(), observer, req.Token, n); err != nil {
		t.Fatalf("notification on a resumed observation: %v", err)
	}
	if got := <-notes; got != "21.5" {
		t.Fatalf("delivered %q", got)
	}
	if err := srv.Notify(context.Background(), observer, []byte{9, 9}, n); !errors.Is(err, ErrReset) {
		t.Fatalf("unknown token: %v", err)
	}
	o.Forget()
	n.SetObserve(1<<24 + 8)
	if err := srv.Notify(context.Background(), observer, req.Token, n); !errors.Is(err, ErrReset) {
		t.Fatalf("after Forget: %v", err)
	}
}

// TestObservationAcceptsNewSessionOfSameIdentity: a DTLS device that
// handshook again (new session) keeps its observations; another identity
// or a plain-CoAP peer does not get them.
func TestObservationAcceptsNewSessionOfSameIdentity(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:5000")
	o := &Observation{peer: Peer{Addr: a, Session: 1, Identity: "dev-1"}}
	for _, c := range []struct {
		p    Peer
		want bool
	}{
		{Peer{Addr: a, Session: 1, Identity: "dev-1"}, true},
		{Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5001"), Session: 2, Identity: "dev-1"}, true},
		{Peer{Addr: a, Session: 3, Identity: "dev-2"}, false},
		{Peer{Addr: a}, false},
	} {
		if got := o.accepts(c.p); got != c.want {
			t.Errorf("accepts(%+v) = %v", c.p, got)
		}
	}
	plain := &Observation{peer: Peer{Addr: a}}
	if !plain.accepts(Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5002")}) || plain.accepts(Peer{Addr: a, Session: 4, Identity: "x"}) {
		t.Error("plain observation: NAT rebinding accepted, DTLS refused expected")
	}
}
