package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

func fastCoAP() coap.Config {
	c := coap.DefaultConfig()
	c.ACKTimeout = 200 * time.Millisecond
	c.RequestTimeout = 5 * time.Second
	return c
}

// deviceTree is a device fresh from the factory: a Bootstrap-Server account
// in /0/0, plus a stale account (/0/2, /1/0) from an earlier life.
func deviceTree(t *testing.T) (*client.Tree, map[uint16]*client.ValueObject) {
	t.Helper()
	reg := lwm2m.NewRegistry()
	tree := client.NewTree(reg)
	objs := map[uint16]*client.ValueObject{}
	for _, id := range []uint16{0, 1, 3} {
		m, ok := reg.Object(id)
		if !ok {
			t.Fatalf("no model for %d", id)
		}
		objs[id] = client.NewValueObject(m)
	}
	must(t, objs[0].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("coaps://127.0.0.1:5784"), 1: lwm2m.Bool(true), 2: lwm2m.Int(0),
		3: lwm2m.Opaque([]byte("factory")), 5: lwm2m.Opaque([]byte("factory-key"))}))
	must(t, objs[0].AddInstance(2, map[uint16]lwm2m.Value{0: lwm2m.String("coap://old:5683"), 1: lwm2m.Bool(false), 2: lwm2m.Int(3), 10: lwm2m.Int(7)}))
	must(t, objs[1].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.Int(7), 1: lwm2m.Int(60), 6: lwm2m.Bool(false), 7: lwm2m.String("U")}))
	must(t, objs[3].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("FlowNexus")}))
	for _, id := range []uint16{0, 1, 3} {
		must(t, tree.Add(objs[id]))
	}
	return tree, objs
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var testAccount = Account{
	ServerURI: "coaps://127.0.0.1:5684", Mode: ModePSK,
	Identity: []byte("dev-1"), SecretKey: []byte("0123456789abcdef"),
	Lifetime: 600 * time.Second, Binding: "UQ", NotificationStoring: true,
}

// harness runs a bootstrap server and a device endpoint on transports.
type harness struct {
	results chan Result
	server  coap.Peer
	devEP   *coap.Endpoint
	bc      *Client
}

func run(t *testing.T, srvT coap.Transport, devT coap.Transport, server coap.Peer, provision func(context.Context, Request) (Account, error), cc ClientConfig, tree *client.Tree) *harness {
	t.Helper()
	results := make(chan Result, 4)
	bs, err := New(Config{Provision: provision, OnResult: func(r Result) { results <- r }})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	srvEP := coap.NewEndpoint(srvT, bs, fastCoAP())
	bc := NewClient(tree, cc)
	devEP := coap.NewEndpoint(devT, bc, fastCoAP())
	done := make(chan struct{}, 2)
	go func() { _ = srvEP.Run(ctx); done <- struct{}{} }()
	go func() { _ = devEP.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &harness{results: results, server: server, devEP: devEP, bc: bc}
}

func TestBootstrapOverUDP(t *testing.T) {
	for _, pct := range []lwm2m.Format{lwm2m.FormatNone, lwm2m.FormatTLV, lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON} {
		t.Run(fmt.Sprint(int(pct)), func(t *testing.T) {
			srvT, err := coap.ListenUDP("127.0.0.1:0")
			must(t, err)
			devT, server, err := coap.DialUDP("127.0.0.1:0", srvT.LocalAddr().String())
			must(t, err)
			tree, objs := deviceTree(t)
			var got Request
			h := run(t, srvT, devT, server, func(_ context.Context, r Request) (Account, error) {
				got = r
				return testAccount, nil
			}, ClientConfig{Endpoint: "dev-1", PreferredFormat: pct}, tree)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			acct, err := h.bc.Bootstrap(ctx, h.devEP, h.server)
			must(t, err)
			if res := <-h.results; res.Err != nil || res.Endpoint != "dev-1" {
				t.Fatalf("result %+v", res)
			}
			if got.Endpoint != "dev-1" || got.PreferredFormat != pct {
				t.Fatalf("request %+v", got)
			}
			want := testAccount
			want.ShortServerID = DefaultShortServerID
			if acct.ServerURI != want.ServerURI || acct.Mode != want.Mode || string(acct.Identity) != "dev-1" ||
				string(acct.SecretKey) != string(want.SecretKey) || acct.ShortServerID != 101 ||
				acct.Lifetime != want.Lifetime || acct.Binding != "UQ" || !acct.NotificationStoring {
				t.Fatalf("account %+v", acct)
			}
			// The factory account stays, the stale one is gone, the new
			// one went to the first free instance.
			if ids := objs[0].Instances(); len(ids) != 2 || ids[0] != 0 || ids[1] != 1 {
				t.Fatalf("security instances %v", ids)
			}
			if v, _ := objs[0].Get(lwm2m.MustParsePath("/0/0/3")); string(v.Bytes()) != "factory" {
				t.Fatal("bootstrap account changed")
			}
			if ids := objs[1].Instances(); len(ids) != 1 {
				t.Fatalf("server instances %v", ids)
			}
			if ids := objs[3].Instances(); len(ids) != 1 {
				t.Fatal("device object deleted")
			}
		})
	}
}

func TestBootstrapRefusals(t *testing.T) {
	srvT, err := coap.ListenUDP("127.0.0.1:0")
	must(t, err)
	devT, server, err := coap.DialUDP("127.0.0.1:0", srvT.LocalAddr().String())
	must(t, err)
	tree, objs := deviceTree(t)
	h := run(t, srvT, devT, server, func(_ context.Context, r Request) (Account, error) {
		if r.Endpoint == "unknown" {
			return Account{}, fmt.Errorf("endpoint %q: %w", r.Endpoint, ErrRefused)
		}
		return Account{}, errors.New("database down")
	}, ClientConfig{Endpoint: "unknown"}, tree)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.bc.Bootstrap(ctx, h.devEP, h.server); !errors.Is(err, ErrRefused) {
		t.Fatalf("refused device: %v", err)
	}
	if res := <-h.results; !errors.Is(res.Err, ErrRefused) {
		t.Fatalf("result %+v", res)
	}
	if len(objs[0].Instances()) != 2 {
		t.Fatal("a refused bootstrap touched the device")
	}
	cases := []struct {
		name  string
		path  string
		query []string
		code  coap.Code
	}{
		{"no ep", "bs", nil, coap.BadRequest},
		{"bad pct", "bs", []string{"ep=x", "pct=abc"}, coap.BadRequest},
		{"server error", "bs", []string{"ep=x"}, coap.InternalServerError},
		{"wrong path", "rd", []string{"ep=x"}, coap.NotFound},
	}
	for _, tc := range cases {
		m := newRequest(coap.POST, tc.path)
		for _, q := range tc.query {
			m.AddQuery(q)
		}
		resp, err := h.devEP.Do(ctx, h.server, m)
		must(t, err)
		if resp.Code != tc.code {
			t.Errorf("%s: %s, want %s", tc.name, resp.Code, tc.code)
		}
	}
}

// The bootstrap server on CoAPS, a device with factory PSK credentials.
func TestBootstrapOverDTLS(t *testing.T) {
	factory := []byte("factory-key-0001")
	cfg := dtls.DefaultConfig()
	cfg.PSK = func(id string) ([]byte, error) {
		if id == "factory-1" {
			return factory, nil
		}
		return nil, dtls.ErrUnknownIdentity
	}
	srvT, err := dtls.Listen("127.0.0.1:0", cfg)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- srvT.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	devT, err := dtls.Dial(ctx, srvT.LocalAddr().String(), dtls.ClientConfig{PSKIdentity: "factory-1", PSK: factory, HandshakeTimeout: 10 * time.Second})
	must(t, err)
	tree, _ := deviceTree(t)
	h := run(t, srvT, devT, devT.Peer(), func(_ context.Context, r Request) (Account, error) {
		if r.Peer.Identity != "factory-1" || r.Endpoint != "dev-1" {
			return Account{}, ErrRefused
		}
		return testAccount, nil
	}, ClientConfig{Endpoint: "dev-1", PreferredFormat: lwm2m.FormatSenMLCBOR}, tree)
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	defer bcancel()
	acct, err := h.bc.Bootstrap(bctx, h.devEP, h.server)
	must(t, err)
	if acct.ServerURI != testAccount.ServerURI {
		t.Fatalf("account %+v", acct)
	}
}

func TestSecurityInstances(t *testing.T) {
	got := securityInstances(`</>;lwm2m=1.1,</0/0>;ssid=1,</0/12>,</1>,</3/0>`)
	if len(got) != 2 || got[0] != 0 || got[1] != 12 {
		t.Fatalf("%v", got)
	}
}
