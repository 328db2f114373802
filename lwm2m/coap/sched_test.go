package coap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func peerKey(i int) PeerKey {
	return PeerKey{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(10000+i))}
}

// TestFairQueueRoundRobin: one worker serving peers with very different
// backlogs takes them in turn, and each peer's jobs in order.
func TestFairQueueRoundRobin(t *testing.T) {
	q := newFairQueue(1000, 100)
	backlog := []int{100, 10, 10, 1, 50}
	for p, n := range backlog {
		for i := range n {
			if r := q.push(peerKey(p), job{msg: &Message{MessageID: uint16(i)}}); r != accepted {
				t.Fatalf("peer %d job %d refused: %d", p, i, r)
			}
		}
	}
	served := make([]int, len(backlog))
	next := make([]uint16, len(backlog))
	for round := 0; ; round++ {
		// Serve one job per peer that still has some: each round must
		// touch every peer with work exactly once.
		busy := 0
		for p, n := range backlog {
			if served[p] < n {
				busy++
			}
		}
		if busy == 0 {
			break
		}
		seen := map[PeerKey]bool{}
		for range busy {
			j, pj, ok := q.pop()
			if !ok {
				t.Fatal("queue closed")
			}
			if seen[pj.key] {
				t.Fatalf("round %d: peer %v served twice before others had a turn", round, pj.key)
			}
			seen[pj.key] = true
			p := int(pj.key.Addr.Port() - 10000)
			if j.msg.MessageID != next[p] {
				t.Fatalf("peer %d: job %d before %d", p, j.msg.MessageID, next[p])
			}
			next[p]++
			served[p]++
			q.done(pj)
		}
	}
	if q.len() != 0 || len(q.peers) != 0 {
		t.Fatalf("left: %d jobs, %d peers", q.len(), len(q.peers))
	}
}

// TestFairQueueOnePeerAtATime: a peer's second job is not handed out
// while its first runs, whatever the number of workers.
func TestFairQueueOnePeerAtATime(t *testing.T) {
	q := newFairQueue(10, 10)
	q.push(peerKey(1), job{})
	q.push(peerKey(1), job{})
	q.push(peerKey(2), job{})
	_, a, _ := q.pop()
	_, b, _ := q.pop()
	if a.key == b.key {
		t.Fatal("two jobs of one peer running at once")
	}
	q.done(b)
	q.done(a)
	_, c, _ := q.pop()
	if c.key != peerKey(1) {
		t.Fatalf("got %v", c.key)
	}
	q.done(c)
	q.close()
	if _, _, ok := q.pop(); ok {
		t.Fatal("pop after close and drain")
	}
}

// TestFairQueueLimits: a peer over its share and the queue over its total
// are refused, and counted by the endpoint.
func TestFairQueueLimits(t *testing.T) {
	q := newFairQueue(5, 3)
	for i := range 3 {
		if r := q.push(peerKey(1), job{}); r != accepted {
			t.Fatalf("job %d: %d", i, r)
		}
	}
	if r := q.push(peerKey(1), job{}); r != refusedPeer {
		t.Fatalf("4th job of one peer: %d", r)
	}
	q.push(peerKey(2), job{})
	q.push(peerKey(3), job{})
	if r := q.push(peerKey(4), job{}); r != refusedTotal {
		t.Fatalf("6th job: %d", r)
	}
	q.close()
	if r := q.push(peerKey(5), job{}); r != refusedClosed {
		t.Fatalf("after close: %d", r)
	}
}

// TestPeerQueueFull: one peer cannot fill the endpoint's queue; its excess
// requests get 5.03, counted.
func TestPeerQueueFull(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 8)
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		entered <- struct{}{}
		<-block
		return NewResponse(Content)
	})
	cfg := testConfig()
	cfg.PeerQueueLength = 2
	cfg.ProcessingDelay = 0
	e := serveOnly(t, h, cfg)
	defer close(block)
	p := dialRaw(t, e)
	p.send(&Message{Type: Confirmable, Code: GET, MessageID: 0, Token: []byte{0}})
	<-entered
	// Two wait behind the running one; the fourth is over the peer's share.
	for i := 1; i < 4; i++ {
		p.send(&Message{Type: Confirmable, Code: GET, MessageID: uint16(i), Token: []byte{byte(i)}})
	}
	r := p.recv()
	if r.Code != ServiceUnavailable || r.MessageID != 3 {
		t.Fatalf("%v", r)
	}
	if st := e.Stats(); st.Overloaded != 1 || st.Queued != 2 {
		t.Fatalf("%+v", st)
	}
}

// TestMaxWaiting: requests to a peer that does not answer queue for its
// NSTART slot up to MaxWaiting; further ones fail at once with
// ErrPeerBusy, counted, and the waiters leave when their context ends.
func TestMaxWaiting(t *testing.T) {
	cfg := testConfig()
	cfg.MaxWaiting = 3
	cfg.RequestTimeout = time.Hour
	cfg.ACKTimeout = time.Hour // the silent peer never makes the first one fail
	srv := serveOnly(t, nil, cfg)
	silent := dialRaw(t, srv) // reads nothing, answers nothing
	to := Peer{Addr: unmap(silent.c.LocalAddr().(*net.UDPAddr).AddrPort())}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var cancelled atomic.Int32
	for range 4 { // one in flight, three waiting
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := srv.Do(ctx, to, get("/x")); errors.Is(err, context.Canceled) {
				cancelled.Add(1)
			}
		}()
	}
	waitUntil(t, "three waiters", func() bool { return srv.Stats().Waiting == 3 })
	for i := range 5 {
		if _, err := srv.Do(ctx, to, get("/x")); !errors.Is(err, ErrPeerBusy) {
			t.Fatalf("request %d over the limit: %v", i, err)
		}
	}
	if st := srv.Stats(); st.PeerBusy != 5 || st.Waiting != 3 {
		t.Fatalf("%+v", st)
	}
	cancel()
	wg.Wait()
	if cancelled.Load() != 4 || srv.Stats().Waiting != 0 {
		t.Fatalf("cancelled %d, %+v", cancelled.Load(), srv.Stats())
	}
}

// waitUntil polls a condition another goroutine makes true.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
