package coap

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestNotificationRefusedWhenQueueFull: a confirmable notification that
// finds the observer's worker queue full is neither acknowledged nor
// answered 5.03 (an ACK would tell the device it was received, RST would
// end the observation); its retransmission is delivered once there is
// room.
func TestNotificationRefusedWhenQueueFull(t *testing.T) {
	var mu sync.Mutex
	var tok []byte
	var obsPeer Peer
	ready := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		resp := NewResponse(Content)
		if v, ok := r.Message.Observe(); ok && v == 0 {
			mu.Lock()
			tok, obsPeer = r.Message.Token, r.Peer
			mu.Unlock()
			resp.SetObserve(1)
			resp.Then = func() { ready <- struct{}{} }
		}
		return resp
	})
	cfg := testConfig()
	cfg.Workers = 1
	cfg.QueueLength = 1
	cfg.ACKTimeout = 200 * time.Millisecond // room for the test between retransmissions
	srv, cli, p := pair(t, h, cfg)
	release := make(chan struct{})
	var gotMu sync.Mutex
	got := map[uint32]int{}
	obs, _, err := cli.Observe(context.Background(), p, get("/r"), func(n *Notification) error {
		v, _ := n.Message.Observe()
		gotMu.Lock()
		got[v]++
		first := len(got) == 1
		gotMu.Unlock()
		if first {
			<-release // the worker is busy with the first one
		}
		return nil
	})
	if err != nil || obs == nil {
		t.Fatalf("observe: %v %v", obs, err)
	}
	<-ready
	mu.Lock()
	tk, op := tok, obsPeer
	mu.Unlock()
	errs := make(chan error, 3)
	notify := func(seq uint32) {
		n := NewResponse(Content)
		n.SetObserve(seq)
		errs <- srv.Notify(context.Background(), op, tk, n)
	}
	go notify(2)
	waitStat(t, "the first notification in the worker", func() bool {
		gotMu.Lock()
		defer gotMu.Unlock()
		return len(got) == 1
	})
	go notify(3) // waits in the queue
	waitStat(t, "the second queued", func() bool { return cli.Stats().Notifications == 2 })
	go notify(4) // finds the queue full
	waitStat(t, "the third refused", func() bool { return cli.Stats().Overloaded >= 1 })
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("notification: %v", err)
		}
	}
	gotMu.Lock()
	defer gotMu.Unlock()
	if got[2] != 1 || got[3] != 1 || got[4] != 1 {
		t.Fatalf("delivered %v, want each of 2, 3, 4 once", got)
	}
}

func waitStat(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a hang guard only
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
