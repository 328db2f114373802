package coap

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestDefaultQueueHoldsBurst: with the default queue bounds, a burst of
// 2,560 confirmable requests from 64 peers that arrives while every worker
// is held up (a store compaction taking the core, say) waits in the queue
// and is answered in full once the workers go on; none is refused as
// overloaded. Under the former bound of 8 × 256 jobs about 500 of them
// were (issue 15: the 10,000-device fleet lost 0.2 % of its
// notifications in such pauses).
func TestDefaultQueueHoldsBurst(t *testing.T) {
	const peers, each = 64, 40
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		<-release
		return NewResponse(Content)
	})
	st, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewEndpoint(st, h, testConfig())
	run(t, srv)
	// Registered after run's cleanup, so it runs first: a failing test
	// lets the workers go before the endpoint waits for them.
	let := sync.OnceFunc(func() { close(release) })
	t.Cleanup(let)
	conns := make([]*net.UDPConn, peers)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, st.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		for k := range each {
			m := get("/burst")
			m.Type, m.MessageID, m.Token = Confirmable, uint16(k+1), []byte{byte(k)}
			b, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		// One peer's requests at a time in the socket's buffer, so that
		// the kernel never drops one on a machine with small defaults.
		want := uint64((i + 1) * each)
		waitStat(t, "the requests received", func() bool { return srv.Stats().Received == want })
	}
	if s := srv.Stats(); s.Overloaded != 0 || s.RateLimited != 0 {
		t.Fatalf("a burst of %d requests with the workers held: %d overloaded, %d rate-limited", peers*each, s.Overloaded, s.RateLimited)
	}
	let()
	buf := make([]byte, 1500)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard only
		for range each {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("peer %d: %v", i, err)
			}
			var r Message
			if err := r.UnmarshalBinary(buf[:n]); err != nil || r.Code != Content {
				t.Fatalf("peer %d: answer %v, %v; want 2.05", i, r.Code, err)
			}
		}
	}
}
