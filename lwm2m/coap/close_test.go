package coap

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// slowCloseTransport is a transport whose Close unblocks ReadFrom at once
// but finishes only when the test releases it, as a DTLS server's does
// while it saves its sessions. A second Close waits for the first.
type slowCloseTransport struct {
	closing  chan struct{} // closed when the first Close begins
	release  chan struct{} // the test lets the first Close finish
	second   chan struct{} // closed when a second Close is called
	once     sync.Once
	calls    atomic.Int32
	finished atomic.Bool
}

func (t *slowCloseTransport) ReadFrom([]byte) (int, Peer, error) {
	<-t.closing
	return 0, Peer{}, net.ErrClosed
}

func (t *slowCloseTransport) WriteTo([]byte, Peer) error { return net.ErrClosed }
func (t *slowCloseTransport) LocalAddr() net.Addr        { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (t *slowCloseTransport) Close() error {
	if t.calls.Add(1) == 2 {
		close(t.second)
	}
	t.once.Do(func() {
		close(t.closing)
		<-t.release
		t.finished.Store(true)
	})
	return nil
}

// Run returns only after the transport's Close has finished, even when
// ReadFrom failed as soon as that Close began (found by the race detector:
// a DTLS server still logging "sessions saved" after the appliance's Run
// had returned to its caller).
func TestRunReturnsAfterTransportClosed(t *testing.T) {
	tr := &slowCloseTransport{closing: make(chan struct{}), release: make(chan struct{}), second: make(chan struct{})}
	e := NewEndpoint(tr, HandlerFunc(func(context.Context, *Request) *Response { return nil }), DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		// Run returned without waiting for the Close in progress.
		close(tr.release)
		t.Fatalf("Run returned (%v) while the transport's Close still ran", err)
	case <-tr.second:
		// Run waits in its own Close for the first one.
		close(tr.release)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !tr.finished.Load() {
		t.Fatal("Run returned before the transport's Close finished")
	}
}
