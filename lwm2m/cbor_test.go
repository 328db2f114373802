package lwm2m

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// CBOR single values (Core 1.1 §7.4.6). Encodings are those of RFC 8949
// Appendix A where it has the value; the others follow RFC 8949 §3 and the
// preferred serialization of §4.2.
var cborVectors = []struct {
	name string
	path string
	hex  string
	val  Value
	// decodeOnly marks forms that decode but that the encoder writes
	// differently.
	decodeOnly bool
}{
	{"RFC 8949 App. A: 0", "/3/0/9", "00", Int(0), false},
	{"RFC 8949 App. A: 100", "/3/0/9", "18 64", Int(100), false},
	{"RFC 8949 App. A: 1000000", "/60000/0/1", "1a 00 0f 42 40", Int(1000000), false},
	{"RFC 8949 App. A: -1", "/60000/0/1", "20", Int(-1), false},
	{"RFC 8949 App. A: -1000", "/60000/0/1", "39 03 e7", Int(-1000), false},
	{"RFC 8949 App. A: 18446744073709551615", "/60000/0/2", "1b ff ff ff ff ff ff ff ff", Uint(math.MaxUint64), false},
	{"RFC 8949 App. A: 1.5 (half)", "/3303/0/5700", "f9 3e 00", Float(1.5), false},
	{"RFC 8949 App. A: 100000.0 (single)", "/3303/0/5700", "fa 47 c3 50 00", Float(100000), false},
	{"RFC 8949 App. A: 1.1 (double)", "/3303/0/5700", "fb 3f f1 99 99 99 99 99 9a", Float(1.1), false},
	{"RFC 8949 App. A: -4.1", "/3303/0/5700", "fb c0 10 66 66 66 66 66 66", Float(-4.1), false},
	{"RFC 8949 App. A: Infinity", "/3303/0/5700", "f9 7c 00", Float(math.Inf(1)), false},
	{"RFC 8949 App. A: false", "/1/0/6", "f4", Bool(false), false},
	{"RFC 8949 App. A: true", "/1/0/6", "f5", Bool(true), false},
	{"RFC 8949 App. A: \"IETF\"", "/3/0/0", "64 49 45 54 46", String("IETF"), false},
	{"RFC 8949 App. A: \"\"", "/3/0/0", "60", String(""), false},
	{"RFC 8949 App. A: h'01020304'", "/5/0/0", "44 01 02 03 04", Opaque([]byte{1, 2, 3, 4}), false},
	{"RFC 8949 App. A: 1(1363896240), Current Time", "/3/0/13", "c1 1a 51 4b 67 b0", TimeUnix(1363896240), false},
	{"RFC 8949 App. A: 0(\"2013-03-21T20:04:00Z\")", "/3/0/13",
		"c0 74 32 30 31 33 2d 30 33 2d 32 31 54 32 30 3a 30 34 3a 30 30 5a", TimeUnix(1363896240), true},
	{"RFC 8949 App. A: 1(1363896240.5)", "/3/0/13", "c1 fb 41 d4 52 d9 ec 20 00 00", TimeUnix(1363896240), true},
	{"time untagged", "/3/0/13", "1a 51 4b 67 b0", TimeUnix(1363896240), true},
	{"Zephyr time: 0(\"1970-01-01T00:00:00-00:00\")", "/3/0/13",
		"c0 78 19 31 39 37 30 2d 30 31 2d 30 31 54 30 30 3a 30 30 3a 30 30 2d 30 30 3a 30 30", TimeUnix(0), true},
	{"objlnk", "/60000/0/7", "63 33 3a 30", ObjlnkValue(Objlnk{3, 0}), false},
	{"Zephyr objlnk with NUL", "/60000/0/7", "64 33 3a 30 00", ObjlnkValue(Objlnk{3, 0}), true},
	{"corelnk", "/60000/0/8", "66 3c 2f 33 2f 30 3e", Corelnk("</3/0>"), false},
	{"integer for float resource", "/3303/0/5700", "18 19", Float(25), true},
	{"resource instance", "/3/0/7/1", "19 13 88", Int(5000), false},
	{"indefinite text", "/3/0/0", "7f 62 61 62 61 63 ff", String("abc"), true},
}

func TestCBORVectors(t *testing.T) {
	reg := testRegistryA(t)
	for _, tc := range cborVectors {
		t.Run(tc.name, func(t *testing.T) {
			p := MustParsePath(tc.path)
			data := hexBytesA(t, tc.hex)
			got, err := Decode(FormatCBOR, p, data, reg)
			if err != nil {
				t.Fatal(err)
			}
			equalRecordsA(t, got, []Record{{Path: p, Value: tc.val}})
			if tc.decodeOnly {
				return
			}
			enc, err := Encode(FormatCBOR, p, got, reg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, data) {
				t.Errorf("encode % x, want % x", enc, data)
			}
		})
	}
}

func TestCBORRoundTripEveryType(t *testing.T) {
	reg := testRegistryA(t)
	for res, values := range allTypeValues {
		for i, v := range values {
			p := NewPath(60000, 0, res)
			roundTripA(t, FormatCBOR, p, []Record{{Path: p, Value: v}}, reg)
			ri := NewPath(60000, 0, res+10, uint16(i))
			roundTripA(t, FormatCBOR, ri, []Record{{Path: ri, Value: v}}, reg)
		}
	}
}

// Without a model the CBOR type decides.
func TestCBORWithoutModel(t *testing.T) {
	p := MustParsePath("/4242/0/1")
	for _, c := range []struct {
		hex string
		val Value
	}{
		{"18 64", Int(100)},
		{"3b 7f ff ff ff ff ff ff ff", Int(math.MinInt64)},
		{"1b ff ff ff ff ff ff ff ff", Uint(math.MaxUint64)},
		{"f9 3e 00", Float(1.5)},
		{"f5", Bool(true)},
		{"61 61", String("a")},
		{"41 01", Opaque([]byte{1})},
		{"c1 1a 51 4b 67 b0", TimeUnix(1363896240)},
		{"f6", None()},
	} {
		got, err := Decode(FormatCBOR, p, hexBytesA(t, c.hex), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.hex, err)
		}
		equalRecordsA(t, got, []Record{{Path: p, Value: c.val}})
	}
}

func TestCBORErrors(t *testing.T) {
	reg := testRegistryA(t)
	for _, c := range []struct {
		name, path, hex string
		is              error
	}{
		{"empty", "/3/0/9", "", ErrMalformed},
		{"truncated", "/3/0/9", "19 01", ErrMalformed},
		{"trailing bytes", "/3/0/9", "01 02", ErrMalformed},
		{"array", "/3/0/9", "82 01 02", ErrMalformed},
		{"map", "/3/0/9", "a1 01 02", ErrMalformed},
		{"string for integer", "/3/0/9", "61 61", ErrType},
		{"negative for unsigned", "/60000/0/2", "20", ErrType},
		{"bignum", "/60000/0/1", "c2 49 01 00 00 00 00 00 00 00 00", ErrType},
		{"unknown tag", "/3/0/0", "d8 40 61 61", ErrMalformed},
		{"invalid UTF-8", "/3/0/0", "61 ff", ErrMalformed},
		{"bad objlnk", "/60000/0/7", "61 33", ErrType},
		{"deep nesting", "/3/0/0", "81818181818181818181818181818181818101", ErrMalformed},
		{"instance path", "/3/0", "01", ErrInvalidPath},
	} {
		_, err := Decode(FormatCBOR, MustParsePath(c.path), hexBytesA(t, c.hex), reg)
		var de *DecodeError
		if !errors.Is(err, c.is) || !errors.As(err, &de) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
		}
	}
	p := MustParsePath("/3/0/6")
	if _, err := Encode(FormatCBOR, p, []Record{recA("/3/0/6/0", Int(1)), recA("/3/0/6/1", Int(2))}, reg); !errors.Is(err, ErrUnsupportedFormat) {
		t.Errorf("multiple values: %v", err)
	}
}

func FuzzDecodeCBOR(f *testing.F) {
	for _, tc := range cborVectors {
		f.Add(hexBytesA(f, tc.hex), tc.path)
	}
	reg := testRegistryA(f)
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		for _, r := range []*Registry{reg, nil} {
			recs, err := Decode(FormatCBOR, p, data, r)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %v is not a *DecodeError", err)
				}
				continue
			}
			if len(recs) != 1 || recs[0].Value.IsNone() {
				continue
			}
			enc, err := Encode(FormatCBOR, p, recs, r)
			if err != nil {
				t.Fatalf("re-encode %v: %v", recs, err)
			}
			again, err := Decode(FormatCBOR, p, enc, r)
			if err != nil {
				t.Fatalf("decode re-encoded % x: %v", enc, err)
			}
			if !again[0].Value.Equal(recs[0].Value) {
				t.Fatalf("% x → %s → % x → %s", data, recs[0].Value, enc, again[0].Value)
			}
		}
	})
}
