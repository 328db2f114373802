package coap

import (
	"bytes"
	"testing"
)

// FuzzFitUnverified: whatever the request, the response body, its code
// and the block asked for, the answer to an unverified peer never panics,
// stays within AmplificationFactor times the request (or minAnswer) when
// its body can be cut, and a cut body is a block of the original at the
// offset asked for.
func FuzzFitUnverified(f *testing.F) {
	f.Add([]byte("/fw/abc"), bytes.Repeat([]byte("x"), 3000), uint8(0x45), uint32(0), uint8(6))
	f.Add([]byte("/rd"), []byte("forbidden: endpoint is not provisioned and unknown endpoints are refused"), uint8(0x83), uint32(0), uint8(6))
	f.Add([]byte("/"), []byte("é"), uint8(0x80), uint32(0), uint8(0))
	f.Add([]byte("/x"), bytes.Repeat([]byte("y"), 100), uint8(0x45), uint32(3), uint8(2))
	e := NewEndpoint(nil, nil, DefaultConfig())
	f.Fuzz(func(t *testing.T, path, body []byte, code uint8, num uint32, szx uint8) {
		szx %= 7
		req := &Message{Type: Confirmable, Code: GET, MessageID: 1, Token: []byte{1}}
		req.SetPath(string(path))
		resp := NewResponse(Code(code))
		resp.Payload = body
		base := &Message{Code: Code(code), Token: req.Token}
		m, err := e.block2(cloneShallow(base), resp, num, szx, true)
		if err != nil {
			return
		}
		out := e.fitUnverified(req, base, m, resp, num, szx)
		limit := max(e.cfg.AmplificationFactor*req.size(), minAnswer)
		if !Code(code).IsSuccess() {
			if out.size() > limit && len(out.Payload) > 0 {
				t.Fatalf("error answer %d bytes, limit %d", out.size(), limit)
			}
			return
		}
		b, ok := out.Block(Block2)
		if !ok {
			t.Fatal("success answer without Block2")
		}
		if b.Offset() != int(num)<<(szx+4) || !bytes.Equal(out.Payload, body[b.Offset():b.Offset()+len(out.Payload)]) {
			t.Fatalf("block %+v is not the body at %d", b, int(num)<<(szx+4))
		}
		if out.size() > limit && b.SZX != 0 {
			t.Fatalf("answer %d bytes, limit %d, with SZX %d", out.size(), limit, b.SZX)
		}
	})
}
