package client

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// registrar is a client transport that plays a server answering every
// Register with 2.01 and counts the Registers it answered.
type registrar struct {
	countingTransport
	registers atomic.Int64
	in        chan []byte
}

func newRegistrar() *registrar {
	return &registrar{countingTransport: countingTransport{closed: make(chan struct{})}, in: make(chan []byte, 16)}
}

func (t *registrar) WriteTo(b []byte, _ coap.Peer) error {
	t.writes.Add(1)
	m, err := coap.Unmarshal(b)
	if err != nil || m.Code != coap.POST || m.Path() != "/rd" {
		return nil
	}
	t.registers.Add(1)
	ack := &coap.Message{Type: coap.Acknowledgement, Code: coap.Created, MessageID: m.MessageID, Token: m.Token}
	ack.AddOption(coap.LocationPath, []byte("rd"))
	ack.AddOption(coap.LocationPath, []byte("x1"))
	data, err := ack.Marshal()
	if err != nil {
		return err
	}
	t.in <- data
	return nil
}

func (t *registrar) ReadFrom(b []byte) (int, coap.Peer, error) {
	select {
	case d := <-t.in:
		return copy(b, d), coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5683")}, nil
	case <-t.closed:
		return 0, coap.Peer{}, net.ErrClosed
	}
}

// TestExecuteAnsweredBeforeItsRegister: the Register a Reboot asks for goes
// out only after the Execute's answer has been handed to the transport
// (its Then hook). A server that saw the Register first would end the
// registration the Execute belongs to, and fail the Execute (seen as a
// flaky TestFleetEndToEnd). The Reboot resource waits until the loop is
// either blocked on the Execute or has sent the Register, so the test
// needs no timing to tell the two apart.
func TestExecuteAnsweredBeforeItsRegister(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	tr := newRegistrar()
	objs[3].OnExecute(4, func(uint16, string) error {
		c.TriggerRegister()
		for tr.registers.Load() < 2 {
			if !c.execMu.TryRLock() { // the loop waits for this answer
				return nil
			}
			c.execMu.RUnlock()
			runtime.Gosched()
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.RunOn(ctx, tr, coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5683")}) }()
	defer func() { cancel(); tr.Close(); <-done }()
	for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() { // a hang guard
		if _, ok := c.Location(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never registered")
		}
	}
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, Token: []byte{9}}
	m.SetPath("/3/0/4")
	resp := c.ServeCoAP(context.Background(), &coap.Request{Message: m})
	if resp == nil || resp.Code != coap.Changed || resp.Then == nil {
		t.Fatalf("reboot answered %+v", resp)
	}
	if n := tr.registers.Load(); n != 1 {
		t.Fatalf("%d Registers before the Execute was answered, want 1", n)
	}
	resp.Then() // the answer is on the wire
	for deadline := time.Now().Add(time.Minute); tr.registers.Load() < 2; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("no Register after the reboot was answered")
		}
	}
}
