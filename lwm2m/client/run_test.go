package client

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// countingTransport is a client transport that reaches no server: it counts
// the datagrams the client sends and drops them; ReadFrom blocks until
// Close.
type countingTransport struct {
	writes    atomic.Int64
	closeOnce sync.Once
	closed    chan struct{}
}

func newCountingTransport() *countingTransport {
	return &countingTransport{closed: make(chan struct{})}
}

func (t *countingTransport) ReadFrom([]byte) (int, coap.Peer, error) {
	<-t.closed
	return 0, coap.Peer{}, net.ErrClosed
}

func (t *countingTransport) WriteTo([]byte, coap.Peer) error {
	t.writes.Add(1)
	return nil
}

func (t *countingTransport) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (t *countingTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}

// TestRunCancelledSendsNothing: a client whose ctx has ended sends nothing,
// even when a trigger and its first-Register timer are ready too: Go's
// select picks at random among ready cases, so the loop must look at ctx
// again after it. Every round is a fresh chance for the race; without the
// check about two rounds in three send a Register.
func TestRunCancelledSendsNothing(t *testing.T) {
	server := coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5683")}
	for round := range 150 {
		c, _ := newTestClient(t, Version11)
		tr := newCountingTransport()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.TriggerUpdate()
		if err := c.RunOn(ctx, tr, server); err != nil {
			t.Fatalf("round %d: run: %v", round, err)
		}
		if n := tr.writes.Load(); n != 0 {
			t.Fatalf("round %d: %d datagrams sent after ctx ended", round, n)
		}
	}
}
