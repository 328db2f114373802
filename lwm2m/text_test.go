package lwm2m

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// Plain text values as Core §7.4.1 writes them, typed by the model.
var textVectors = []struct {
	name string
	path string
	text string
	val  Value
}{
	{"string, Manufacturer", "/3/0/0", "Open Mobile Alliance", String("Open Mobile Alliance")},
	{"integer, Battery Level", "/3/0/9", "100", Int(100)},
	{"negative integer", "/60000/0/1", "-42", Int(-42)},
	{"unsigned", "/60000/0/2", "18446744073709551615", Uint(math.MaxUint64)},
	{"float, Sensor Value", "/3303/0/5700", "24.5", Float(24.5)},
	{"float exponent", "/60000/0/3", "1e+300", Float(1e300)},
	{"boolean true, Notification Storing", "/1/0/6", "1", Bool(true)},
	{"boolean false", "/1/0/6", "0", Bool(false)},
	{"time, Current Time", "/3/0/13", "1367491215", TimeUnix(1367491215)},
	{"opaque in base64, Package", "/5/0/0", "AQIDBAU=", Opaque([]byte{1, 2, 3, 4, 5})},
	{"objlnk", "/60000/0/7", "66:0", ObjlnkValue(Objlnk{66, 0})},
	{"corelnk", "/60000/0/8", "</3/0>", Corelnk("</3/0>")},
	{"resource instance, Available Power Sources", "/3/0/6/1", "5", Int(5)},
	{"empty string", "/60000/0/0", "", String("")},
}

func TestTextVectors(t *testing.T) {
	reg := testRegistryA(t)
	for _, tc := range textVectors {
		t.Run(tc.name, func(t *testing.T) {
			p := MustParsePath(tc.path)
			got, err := Decode(FormatText, p, []byte(tc.text), reg)
			if err != nil {
				t.Fatal(err)
			}
			equalRecordsA(t, got, []Record{{Path: p, Value: tc.val}})
			enc, err := Encode(FormatText, p, got, reg)
			if err != nil {
				t.Fatal(err)
			}
			if string(enc) != tc.text {
				t.Errorf("encode %q, want %q", enc, tc.text)
			}
		})
	}
}

func TestTextRoundTripEveryType(t *testing.T) {
	reg := testRegistryA(t)
	for res, values := range allTypeValues {
		for i, v := range values {
			if v.Type() == TypeFloat && math.IsNaN(v.Float()) {
				continue // text NaN parses to the canonical NaN; compared below
			}
			roundTripA(t, FormatText, NewPath(60000, 0, res), []Record{{Path: NewPath(60000, 0, res), Value: v}}, reg)
			ri := NewPath(60000, 0, res+10, uint16(i))
			roundTripA(t, FormatText, ri, []Record{{Path: ri, Value: v}}, reg)
		}
	}
	got, err := Decode(FormatText, NewPath(60000, 0, 3), []byte("NaN"), reg)
	if err != nil || !math.IsNaN(got[0].Value.Float()) {
		t.Errorf("NaN: %v %v", got, err)
	}
}

func TestTextWithoutModel(t *testing.T) {
	got, err := Decode(FormatText, MustParsePath("/4242/0/1"), []byte("42"), NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	equalRecordsA(t, got, []Record{recA("/4242/0/1", String("42"))})
}

func TestTextErrors(t *testing.T) {
	reg := testRegistryA(t)
	var de *DecodeError
	for _, c := range []struct {
		path, text string
		is         error
	}{
		{"/3/0/9", "12a", ErrType},
		{"/1/0/6", "2", ErrType},
		{"/5/0/0", "!!", ErrType},
		{"/60000/0/7", "3", ErrType},
		{"/3/0", "x", ErrInvalidPath},
		{"/3/0/0", "\xff", ErrMalformed},
	} {
		_, err := Decode(FormatText, MustParsePath(c.path), []byte(c.text), reg)
		if !errors.Is(err, c.is) || !errors.As(err, &de) {
			t.Errorf("%s %q: %v", c.path, c.text, err)
		}
	}
	for _, c := range []struct {
		base string
		recs []Record
	}{
		{"/3/0", []Record{recA("/3/0/0", String("x"))}},
		{"/3/0/0", nil},
		{"/3/0/6", []Record{recA("/3/0/6/0", Int(1)), recA("/3/0/6/1", Int(1))}},
		{"/3/0/6", []Record{recA("/3/0/6/0", Int(1))}},
		{"/3/0/4", []Record{recA("/3/0/4", None())}},
	} {
		if _, err := Encode(FormatText, MustParsePath(c.base), c.recs, reg); err == nil {
			t.Errorf("encode %s %v: no error", c.base, c.recs)
		}
	}
}

func FuzzDecodeText(f *testing.F) {
	for _, tc := range textVectors {
		f.Add([]byte(tc.text), tc.path)
	}
	reg := testRegistryA(f)
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		recs, err := Decode(FormatText, p, data, reg)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		if len(recs) != 1 || recs[0].Path != p {
			t.Fatalf("records %v", recs)
		}
		if recs[0].Value.IsNone() {
			return
		}
		enc, err := Encode(FormatText, p, recs, reg)
		if err != nil {
			t.Fatalf("re-encode %v: %v", recs, err)
		}
		again, err := Decode(FormatText, p, enc, reg)
		if err != nil {
			t.Fatalf("decode re-encoded %q: %v", enc, err)
		}
		if !again[0].Value.Equal(recs[0].Value) && !(isNaNA(again[0].Value) && isNaNA(recs[0].Value)) {
			t.Fatalf("%q → %s → %q → %s", data, recs[0].Value, enc, again[0].Value)
		}
	})
}

func isNaNA(v Value) bool { return v.Type() == TypeFloat && math.IsNaN(v.Float()) }

func TestOpaque(t *testing.T) {
	p := MustParsePath("/5/0/0")
	in := []byte{0xDE, 0xAD, 0xBE, 0xEF}
	got, err := Decode(FormatOpaque, p, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	equalRecordsA(t, got, []Record{{Path: p, Value: Opaque([]byte{0xDE, 0xAD, 0xBE, 0xEF})}})
	in[0] = 0
	if got[0].Value.Bytes()[0] != 0xDE {
		t.Error("decoded value aliases the payload")
	}
	enc, err := Encode(FormatOpaque, p, got, nil)
	if err != nil || !bytes.Equal(enc, []byte{0xDE, 0xAD, 0xBE, 0xEF}) {
		t.Fatalf("encode % X %v", enc, err)
	}
	for _, v := range allTypeValues[5] {
		roundTripA(t, FormatOpaque, p, []Record{{Path: p, Value: v}}, nil)
	}
	ri := MustParsePath("/60000/0/15/3")
	roundTripA(t, FormatOpaque, ri, []Record{{Path: ri, Value: Opaque([]byte("x"))}}, nil)
	if _, err := Encode(FormatOpaque, p, []Record{{Path: p, Value: String("x")}}, nil); !errors.Is(err, ErrType) {
		t.Errorf("string as opaque: %v", err)
	}
	if _, err := Decode(FormatOpaque, MustParsePath("/5/0"), in, nil); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("instance path: %v", err)
	}
}

func FuzzDecodeOpaque(f *testing.F) {
	f.Add([]byte{}, "/5/0/0")
	f.Add([]byte{1, 2, 3}, "/19/0/0/1")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		recs, err := Decode(FormatOpaque, p, data, nil)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || p.Len() >= 3 {
				t.Fatalf("%s: %v", p, err)
			}
			return
		}
		enc, err := Encode(FormatOpaque, p, recs, nil)
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("round trip % X → % X %v", data, enc, err)
		}
	})
}
