package coap

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
)

// TestBodyBlockRetransmissionServedAgain: a block of a GET answered from a
// Body is not kept for EXCHANGE_LIFETIME; the retransmission of the
// request (same message ID) runs the handler again and gets the same
// block (RFC 7252 §4.5, GET is idempotent). A response without a Body is
// still kept and repeated without running the handler.
func TestBodyBlockRetransmissionServedAgain(t *testing.T) {
	img := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	var calls atomic.Int64
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		calls.Add(1)
		resp := NewResponse(Content)
		if r.Message.Path() == "/img" {
			resp.Body, resp.BodySize = bytes.NewReader(img), int64(len(img))
			resp.AddOption(ETag, []byte{1, 2, 3, 4})
			return resp
		}
		resp.Payload = []byte("small")
		return resp
	})
	srv, _, _ := pair(t, h, testConfig())
	raw := dialRaw(t, srv)
	req := get("/img")
	req.Type, req.MessageID, req.Token = Confirmable, 0x1234, []byte{7}
	req.SetBlock(Block2, Block{Num: 2, SZX: SZXFor(256)})
	raw.send(req)
	first := raw.recv()
	raw.send(req) // a retransmission: same message ID
	second := raw.recv()
	if calls.Load() != 2 {
		t.Fatalf("handler ran %d times for a block and its retransmission, want 2", calls.Load())
	}
	a, _ := first.Marshal()
	b, _ := second.Marshal()
	// (An unverified peer gets smaller blocks: no amplification.)
	blk, ok := first.Block(Block2)
	off := int(blk.Num) * blk.Size()
	if !ok || !bytes.Equal(a, b) || off+len(first.Payload) > len(img) || !bytes.Equal(first.Payload, img[off:off+len(first.Payload)]) {
		t.Fatalf("the retransmission got another answer: %v / %v", first, second)
	}
	srv.mu.Lock()
	d := srv.dedup.get(midKey{Peer{Addr: raw.c.LocalAddr().(*net.UDPAddr).AddrPort()}.Key(), 0x1234})
	kept := d != nil && d.kept
	srv.mu.Unlock()
	if kept {
		t.Fatal("the block is held in the deduplication cache")
	}

	small := get("/small")
	small.Type, small.MessageID, small.Token = Confirmable, 0x1235, []byte{8}
	raw.send(small)
	raw.recv()
	raw.send(small)
	if r := raw.recv(); string(r.Payload) != "small" || calls.Load() != 3 {
		t.Fatalf("a response without a Body: handler ran %d times, reply %v", calls.Load(), r)
	}
}
