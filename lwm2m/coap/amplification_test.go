package coap

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// countingPeer is a raw socket that counts the bytes it sends and receives.
type countingPeer struct {
	*rawPeer
	sent, got int
}

func (c *countingPeer) do(m *Message) *Message {
	c.t.Helper()
	b, _ := m.Marshal()
	c.sent += len(b)
	c.send(m)
	buf := make([]byte, 2048)
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.c.Read(buf)
		if err != nil {
			c.t.Fatal(err)
		}
		c.got += n
		r, err := Unmarshal(buf[:n])
		if err != nil {
			c.t.Fatal(err)
		}
		if r.Type == Acknowledgement && r.MessageID == m.MessageID && r.Code != Empty {
			return r.Clone()
		}
	}
}

// TestNoAmplification: an unverified address (it never answered anything
// the endpoint sent) gets no response larger than AmplificationFactor
// times its request, counted in bytes (RFC 7252 §11.3): a large body comes
// in small Block2 blocks — still all of it —, a long diagnostic is cut.
// Once the peer has answered a message sent to it, it gets full blocks.
func TestNoAmplification(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		if r.Message.Path() == "/err" {
			return ErrorResponse(BadRequest, strings.Repeat("é diagnostic ", 80))
		}
		resp := NewResponse(Content)
		resp.Payload = body
		return resp
	})
	cfg := testConfig()
	e := serveOnly(t, h, cfg)
	p := &countingPeer{rawPeer: dialRaw(t, e)}
	req := &Message{Type: Confirmable, Code: GET, MessageID: 1, Token: []byte{1, 2, 3, 4}}
	req.SetPath("/big")
	reqSize := req.size()

	// The whole body, block by block, each answer within 3x its request.
	var got []byte
	for num := uint32(0); ; num++ {
		before := p.got
		r := p.do(req)
		if n := p.got - before; n > max(3*reqSize, minAnswer) {
			t.Fatalf("block %d: %d bytes for a %d-byte request", num, n, reqSize)
		}
		b, ok := r.Block(Block2)
		if !ok || b.Offset() != len(got) {
			t.Fatalf("block %d: %+v", num, b)
		}
		got = append(got, r.Payload...)
		if !b.More {
			break
		}
		req.MessageID++
		req.SetBlock(Block2, Block{Num: b.Num + 1, SZX: b.SZX})
		reqSize = req.size()
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes", len(got))
	}
	if p.got > 3*p.sent {
		t.Fatalf("sent %d bytes, received %d", p.sent, p.got)
	}

	errReq := &Message{Type: Confirmable, Code: GET, MessageID: 1000, Token: []byte{9}}
	errReq.SetPath("/err")
	r := p.do(errReq)
	if r.Code != BadRequest || r.size() > max(3*errReq.size(), minAnswer) || len(r.Payload) == 0 {
		t.Fatalf("error: %s, %d bytes, payload %q", r.Code, r.size(), r.Payload)
	}
	if !strings.HasPrefix(string(r.Payload), "é diagnostic") || !utf8Valid(r.Payload) {
		t.Fatalf("cut diagnostic %q", r.Payload)
	}
	if e.Stats().Trimmed == 0 {
		t.Fatal("trimmed responses not counted")
	}

	// The peer answers a request from the endpoint: now verified.
	to := Peer{Addr: unmap(p.c.LocalAddr().(*net.UDPAddr).AddrPort())}
	done := make(chan error, 1)
	go func() {
		_, err := e.Do(context.Background(), to, get("/ping"))
		done <- err
	}()
	buf := make([]byte, 2048)
	_ = p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := Unmarshal(buf[:n])
	p.send(&Message{Type: Acknowledgement, Code: Content, MessageID: in.MessageID, Token: in.Token})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	full := &Message{Type: Confirmable, Code: GET, MessageID: 2000, Token: []byte{5}}
	full.SetPath("/big")
	if r := p.do(full); len(r.Payload) != cfg.BlockSize {
		t.Fatalf("verified peer: %d-byte block", len(r.Payload))
	}
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }
