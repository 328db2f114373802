package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// TestRunOverDTLS runs devices over lwm2m/dtls with PSK identities made of
// the prefix and the endpoint name; the server sees the identity on the
// registration's peer.
func TestRunOverDTLS(t *testing.T) {
	key := []byte("0123456789abcdef")
	cfg := dtls.DefaultConfig()
	cfg.PSK = func(identity string) ([]byte, error) {
		if len(identity) > 4 && identity[:4] == "psk-" {
			return key, nil
		}
		return nil, fmt.Errorf("identity %q: %w", identity, dtls.ErrUnknownIdentity)
	}
	ds, err := dtls.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ds.Run(ctx) }()
	h := &countingHandler{regs: make(chan string, 64), deregs: make(chan string, 64), peers: make(chan coap.Peer, 64)}
	s := server.New(server.DefaultConfig(), server.WithHandler(h))
	go func() { _ = s.Serve(ctx, ds) }()

	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{
			"--server", "coaps://" + ds.LocalAddr().String(), "--devices", "2", "--endpoint-prefix", "tls-",
			"--psk-identity-prefix", "psk-", "--psk-key", hex.EncodeToString(key),
			"--start-spread", "0s", "--rate", "0s", "--duration", "4s",
		}, &out)
	}()
	for i := 0; i < 2; i++ {
		select {
		case ep := <-h.regs:
			if p := <-h.peers; p.Identity != "psk-"+ep || !p.Secure() {
				t.Fatalf("registration peer %+v for %s", p, ep)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no DTLS registration; log:\n%s", out.String())
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
}
