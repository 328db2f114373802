package coap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Frames as they appear on the wire (captured from LwM2M exchanges and
// checked by hand against RFC 7252 §3).
var frames = []struct {
	name string
	hex  string
	want func(*testing.T, *Message)
}{
	{
		// CON POST /rd?ep=node1&lt=300 token 0x3a7c, Content-Format 40,
		// payload "</3/0>".
		name: "register",
		hex:  "42 02 12 34 3a 7c b2 72 64 11 28 35 65 70 3d 6e 31 06 6c 74 3d 33 30 30 ff 3c 2f 33 2f 30 3e",
		want: func(t *testing.T, m *Message) {
			if m.Type != Confirmable || m.Code != POST || m.MessageID != 0x1234 || !bytes.Equal(m.Token, []byte{0x3a, 0x7c}) {
				t.Fatalf("header %v", m)
			}
			if m.Path() != "/rd" || len(m.Queries()) != 2 || m.Queries()[0] != "ep=n1" || m.Queries()[1] != "lt=300" {
				t.Fatalf("uri %q %q", m.Path(), m.Queries())
			}
			if cf, ok := m.ContentFormat(); !ok || cf != 40 || string(m.Payload) != "</3/0>" {
				t.Fatalf("cf %d payload %q", cf, m.Payload)
			}
		},
	},
	{
		// ACK 2.01 with Location-Path rd/a1.
		name: "created",
		hex:  "62 41 12 34 3a 7c 82 72 64 02 61 31",
		want: func(t *testing.T, m *Message) {
			if m.Type != Acknowledgement || m.Code != Created || m.Code.String() != "2.01" {
				t.Fatalf("%v", m)
			}
			if lp := m.LocationPath(); len(lp) != 2 || lp[1] != "a1" {
				t.Fatalf("location %q", lp)
			}
		},
	},
	{
		// NON 2.05 notification, Observe 0x1234, Content-Format 11542 (TLV),
		// Block2 num 1, more, szx 6.
		name: "notification",
		hex:  "51 45 00 07 99 62 12 34 62 2d 16 b1 1e ff c8 00 01",
		want: func(t *testing.T, m *Message) {
			if o, ok := m.Observe(); !ok || o != 0x1234 {
				t.Fatalf("observe %d", o)
			}
			if cf, _ := m.ContentFormat(); cf != 11542 {
				t.Fatalf("cf %d", cf)
			}
			b, ok := m.Block(Block2)
			if !ok || b.Num != 1 || !b.More || b.SZX != 6 || b.Size() != 1024 || b.Offset() != 1024 {
				t.Fatalf("block %+v", b)
			}
		},
	},
	{
		name: "empty ack",
		hex:  "60 00 ab cd",
		want: func(t *testing.T, m *Message) {
			if m.Type != Acknowledgement || m.Code != Empty || m.MessageID != 0xabcd || len(m.Options) != 0 {
				t.Fatalf("%v", m)
			}
		},
	},
	{
		// Option number 258 (No-Response) needs a 1-byte extended delta.
		name: "extended delta",
		hex:  "40 01 00 01 d1 f5 02",
		want: func(t *testing.T, m *Message) {
			if v, ok := m.Uint(NoResponse); !ok || v != 2 {
				t.Fatalf("%v", m.Options)
			}
		},
	},
}

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrames(t *testing.T) {
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			data := unhex(t, f.hex)
			m, err := Unmarshal(data)
			if err != nil {
				t.Fatal(err)
			}
			f.want(t, m)
			// Encoding gives the same bytes back.
			out, err := m.Marshal()
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("re-encoded %x, want %x (%v)", out, data, err)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	for _, c := range []struct{ name, hex string }{
		{"short", "40 01 00"},
		{"version 2", "80 01 00 01"},
		{"token length 9", "49 01 00 01 01 02 03 04 05 06 07 08 09"},
		{"token truncated", "44 01 00 01 01 02"},
		{"reserved class 1", "40 20 00 01"},
		{"empty with token", "61 00 00 01 05"},
		{"empty with payload", "60 00 00 01 ff 01"},
		{"marker without payload", "40 01 00 01 ff"},
		{"delta nibble 15", "40 01 00 01 f0"},
		{"length nibble 15", "40 01 00 01 0f"},
		{"extension truncated", "40 01 00 01 d0"},
		{"value truncated", "40 01 00 01 b5 61"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Unmarshal(unhex(t, c.hex)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestOptionsSortedStably(t *testing.T) {
	m := &Message{Code: GET, Token: []byte{1}}
	m.AddQuery("b=1")
	m.SetPath("/a/b")
	m.AddQuery("a=2")
	m.SetObserve(0)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil || got.Path() != "/a/b" || got.Queries()[0] != "b=1" || got.Queries()[1] != "a=2" {
		t.Fatalf("%v %v %q", got, err, got.Queries())
	}
	if o, ok := got.Observe(); !ok || o != 0 {
		t.Fatal("observe 0 lost")
	}
}

func TestUintAndBlock(t *testing.T) {
	for _, v := range []uint32{0, 1, 255, 256, 65535, 65536, 1<<24 - 1, 1 << 24, 1<<32 - 1} {
		m := &Message{}
		m.SetUint(Size2, v)
		if got, ok := m.Uint(Size2); !ok || got != v {
			t.Fatalf("%d → %d", v, got)
		}
	}
	m := &Message{}
	m.SetBlock(Block1, Block{Num: 1<<20 - 1, More: true, SZX: 2})
	if b, ok := m.Block(Block1); !ok || b.Num != 1<<20-1 || !b.More || b.SZX != 2 {
		t.Fatalf("%+v", b)
	}
	m.SetUint(Block2, 7) // SZX 7 is reserved
	if _, ok := m.Block(Block2); ok {
		t.Fatal("SZX 7 accepted")
	}
	if SZXFor(1024) != 6 || SZXFor(1000) != 5 || SZXFor(16) != 0 || SZXFor(5) != 0 {
		t.Fatal("SZXFor")
	}
}

// FuzzUnmarshal: decoding never panics, and whatever decodes re-encodes to
// a message that decodes the same.
func FuzzUnmarshal(f *testing.F) {
	for _, fr := range frames {
		f.Add(unhex(f, fr.hex))
	}
	f.Add([]byte{0x40, 0x01, 0x00, 0x01, 0xd0, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-decode %x: %v", out, err)
		}
		if m2.Type != m.Type || m2.Code != m.Code || m2.MessageID != m.MessageID || !bytes.Equal(m2.Token, m.Token) ||
			!bytes.Equal(m2.Payload, m.Payload) || len(m2.Options) != len(m.Options) {
			t.Fatalf("round trip differs: %v vs %v", m, m2)
		}
		for i := range m.Options {
			if m.Options[i].ID != m2.Options[i].ID || !bytes.Equal(m.Options[i].Value, m2.Options[i].Value) {
				t.Fatalf("option %d differs", i)
			}
		}
	})
}
