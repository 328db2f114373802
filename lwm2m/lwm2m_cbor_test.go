package lwm2m

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// Vectors in the shape of Core 1.2 §7.4.7: nested maps keyed by path ids
// from the root, leaves in the CBOR types of §7.4.6 (Time with tag 1).
func TestLwM2MCBORVectors(t *testing.T) {
	p := MustParsePath
	cases := []struct {
		name string
		base Path
		recs []Record
		hex  string // what the encoder writes (definite lengths)
		// noModel: the vector's ids are not the Device object's.
		noModel bool
	}{
		{"one resource", p("/3/3/3"), []Record{{Path: p("/3/3/3"), Value: Int(25)}},
			`a1 03 a1 03 a1 03 18 19`, true}, // {3: {3: {3: 25}}}
		{"two resources", p("/3/3"), []Record{{Path: p("/3/3/3"), Value: Int(25)}, {Path: p("/3/3/1"), Value: Int(11)}},
			`a1 03 a1 03 a2 01 0b 03 18 19`, true}, // {3: {3: {1: 11, 3: 25}}}
		{"device subset", p("/3/0"), []Record{
			{Path: p("/3/0/0"), Value: String("Open Mobile Alliance")},
			{Path: p("/3/0/6/0"), Value: Int(1)},
			{Path: p("/3/0/6/1"), Value: Int(5)},
			{Path: p("/3/0/13"), Value: TimeUnix(1367491215)},
		}, // {3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}, 13: 1(1367491215)}}}
			`a1 03 a1 00 a3 00 74 4f70656e204d6f62696c6520416c6c69616e6365 06 a2 00 01 01 05 0d c1 1a 5182428f`, false},
		{"composite", Path{}, []Record{
			{Path: p("/3303/0/5700"), Value: Float(22.5)},
			{Path: p("/3/0/9"), Value: Int(100)},
		}, // {3: {0: {9: 100}}, 3303: {0: {5700: 22.5}}}
			`a2 03 a1 00 a1 09 18 64 19 0ce7 a1 00 a1 19 1644 f9 4da0`, false},
		{"other types", p("/32769/0"), []Record{
			{Path: p("/32769/0/0"), Value: ObjlnkValue(Objlnk{3, 0})},
			{Path: p("/32769/0/3"), Value: Opaque([]byte{1, 2})},
			{Path: p("/32769/0/4"), Value: Bool(false)},
			{Path: p("/32769/0/6"), Value: Int(-500)},
		}, // {32769: {0: {0: "3:0", 3: h'0102', 4: false, 6: -500}}}
			`a1 19 8001 a1 00 a4 00 63 333a30 03 42 0102 04 f4 06 39 01f3`, false},
	}
	reg := structuredRegistry(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := senmlHex(t, c.hex)
			got, err := Encode(FormatLwM2MCBOR, c.base, c.recs, reg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got  %x\nwant %x", got, want)
			}
			r := reg
			if c.noModel {
				r = nil
			}
			back, err := Decode(FormatLwM2MCBOR, c.base, want, r)
			if err != nil {
				t.Fatal(err)
			}
			SortRecords(back)
			exp := append([]Record(nil), c.recs...)
			SortRecords(exp)
			if !senmlSameRecords(back, exp) {
				t.Fatalf("got %s\nwant %s", senmlRecordsString(back), senmlRecordsString(exp))
			}
		})
	}
}

func TestLwM2MCBORDecodeForms(t *testing.T) {
	p := MustParsePath
	cases := []struct {
		name, hex string
		want      []Record
	}{
		// Indefinite-length maps, as streaming encoders (Anjay) write them.
		{"indefinite", `bf 03 bf 03 bf 03 18 19 ff ff ff`, []Record{{Path: p("/3/3/3"), Value: Int(25)}}},
		// Keys that are arrays of ids stand for several levels.
		{"array keys", `a1 82 03 00 a2 00 61 78 82 06 01 05`, []Record{
			{Path: p("/3/0/0"), Value: String("x")}, {Path: p("/3/0/6/1"), Value: Int(5)}}},
		{"full path key", `a1 83 19 0ce7 00 19 1644 fb 4036800000000000`, []Record{{Path: p("/3303/0/5700"), Value: Float(22.5)}}},
		{"indefinite array key", `a1 9f 03 00 09 ff 01`, []Record{{Path: p("/3/0/9"), Value: Int(1)}}},
		// {[3, 0, 13]: 0("2013-05-02T10:40:15Z")}: Time as a tag 0 string.
		{"tag 0 time", `a1 83 03 00 0d c0 74 323031332d30352d30325431303a34303a31355a`, []Record{{Path: p("/3/0/13"), Value: TimeUnix(1367491215)}}},
		// A streaming client's notification with every data type: Time as
		// tag 1, Objlnk as "O:I" text, doubles always 64-bit.
		{"client notification", `bf 08 bf 08 bf 00 18 19 01 18 64 02 c1 03 03 78 32 ` + strings.Repeat("58", 50) +
			` 04 58 32 ` + strings.Repeat("44", 50) + ` 05 f4 06 65 31373a3138 07 fb 3ff199999999999a ff ff ff`, []Record{
			{Path: p("/8/8/0"), Value: Int(25)}, {Path: p("/8/8/1"), Value: Int(100)}, {Path: p("/8/8/2"), Value: TimeUnix(3)},
			{Path: p("/8/8/3"), Value: String(strings.Repeat("X", 50))}, {Path: p("/8/8/4"), Value: Opaque(bytes.Repeat([]byte("D"), 50))},
			{Path: p("/8/8/5"), Value: Bool(false)}, {Path: p("/8/8/6"), Value: String("17:18")}, {Path: p("/8/8/7"), Value: Float(1.1)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, err := Decode(FormatLwM2MCBOR, Path{}, senmlHex(t, c.hex), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !senmlSameRecords(recs, c.want) {
				t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(c.want))
			}
		})
	}
}

func TestLwM2MCBORRoundTrips(t *testing.T) {
	reg := structuredRegistry(t)
	comp := senmlComposite10()
	for i := range comp {
		comp[i].Time = time.Time{}
	}
	comp = comp[:len(comp)-1] // one value per path
	for name, c := range map[string]struct {
		base Path
		recs []Record
	}{
		"device":     {MustParsePath("/3/0"), senmlDeviceExample()},
		"every type": {MustParsePath("/32769"), senmlEveryType()},
		"composite":  {Path{}, comp},
		"floats": {Path{}, []Record{
			{Path: MustParsePath("/32769/0/7/0"), Value: Float(math.NaN())},
			{Path: MustParsePath("/32769/0/7/1"), Value: Float(math.Inf(1))},
			{Path: MustParsePath("/32769/0/7/2"), Value: Float(0.1)},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(FormatLwM2MCBOR, c.base, c.recs, reg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(FormatLwM2MCBOR, c.base, data, reg)
			if err != nil {
				t.Fatalf("%v\n%x", err, data)
			}
			exp := append([]Record(nil), c.recs...)
			SortRecords(exp)
			if !senmlSameRecords(back, exp) {
				t.Fatalf("got %s\nwant %s\n%x", senmlRecordsString(back), senmlRecordsString(exp), data)
			}
		})
	}
}

func TestLwM2MCBOREncodeErrors(t *testing.T) {
	p := MustParsePath
	for name, recs := range map[string][]Record{
		"timestamp":      {{Path: p("/3/0/9"), Value: Int(1), Time: time.Unix(1732435200, 0)}},
		"duplicate path": {{Path: p("/3/0/9"), Value: Int(1)}, {Path: p("/3/0/9"), Value: Int(2)}},
		"nested paths":   {{Path: p("/3/0/6"), Value: Int(1)}, {Path: p("/3/0/6/0"), Value: Int(2)}},
		"instance":       {{Path: p("/3/0"), Value: Int(1)}},
		"no value":       {{Path: p("/3/0/4"), Value: None()}},
	} {
		if _, err := Encode(FormatLwM2MCBOR, Path{}, recs, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLwM2MCBORDecodeErrors(t *testing.T) {
	nest := bytes.Repeat([]byte{0xa1, 0x01}, 50000)
	cases := []struct {
		name   string
		hex    string
		raw    []byte
		target error
	}{
		{name: "empty", hex: ``, target: ErrMalformed},
		{name: "not a map", hex: `80`, target: ErrMalformed},
		{name: "truncated", hex: `a1 03 a1 00`, target: ErrMalformed},
		{name: "trailing", hex: `a1 03 a1 00 a1 09 01 00`, target: ErrMalformed},
		{name: "text key", hex: `a1 61 33 01`, target: ErrMalformed},
		{name: "id too large", hex: `a1 19 ffff a1 00 a1 00 01`, target: ErrMalformed},
		{name: "too deep", hex: `a1 03 a1 00 a1 06 a1 00 a1 00 01`, target: ErrMalformed},
		{name: "nesting bomb", raw: nest, target: ErrMalformed},
		{name: "value at an instance", hex: `a1 03 a1 00 01`, target: ErrInvalidPath},
		{name: "outside base", hex: `a1 04 a1 00 a1 00 01`, target: ErrInvalidPath},
		{name: "duplicate path", hex: `a2 03 a1 00 a1 09 01 03 a1 00 a1 09 02`, target: ErrMalformed},
		{name: "value and its instances", hex: `a1 83 03 00 06 01 a1 83 03 00 06 a1 00 01`, target: ErrMalformed},
		{name: "null value", hex: `a1 83 03 00 09 f6`, target: ErrMalformed},
		{name: "array value", hex: `a1 83 03 00 09 80`, target: ErrMalformed},
		{name: "million pairs claimed", hex: `ba 000f4240 03`, target: ErrLimit},
		{name: "empty key", hex: `a1 80 01`, target: ErrMalformed},
		{name: "long key", hex: `a1 85 03 00 01 02 03 01`, target: ErrLimit},
		{name: "type mismatch", hex: `a1 83 03 00 09 61 78`, target: ErrType},
		{name: "tag 0 not a date", hex: `a1 83 03 00 0d c0 61 78`, target: ErrMalformed},
	}
	reg := structuredRegistry(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := c.raw
			if data == nil {
				data = senmlHex(t, c.hex)
			}
			base := Path{}
			if c.name == "outside base" {
				base = MustParsePath("/3")
			}
			_, err := Decode(FormatLwM2MCBOR, base, data, reg)
			senmlWantDecodeError(t, err, c.target)
		})
	}
}

func TestLwM2MCBORPaths(t *testing.T) {
	paths := []Path{MustParsePath("/3303/0/5700"), MustParsePath("/3/0/0"), MustParsePath("/1"), MustParsePath("/1/0/1")}
	data, err := EncodePaths(FormatLwM2MCBOR, paths)
	if err != nil {
		t.Fatal(err)
	}
	// {1: null, 3: {0: {0: null}}, 3303: {0: {5700: null}}}: /1/0/1 lies
	// inside /1 and adds nothing.
	want := senmlHex(t, `a3 01 f6 03 a1 00 a1 00 f6 19 0ce7 a1 00 a1 19 1644 f6`)
	if !bytes.Equal(data, want) {
		t.Fatalf("got %x\nwant %x", data, want)
	}
	back, err := DecodePaths(FormatLwM2MCBOR, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 || back[0] != MustParsePath("/1") || back[2] != MustParsePath("/3303/0/5700") {
		t.Fatalf("got %v", back)
	}
	if _, err := EncodePaths(FormatLwM2MCBOR, []Path{{}}); err == nil {
		t.Error("root path encoded")
	}
	_, err = DecodePaths(FormatLwM2MCBOR, senmlHex(t, `a1 03 01`))
	senmlWantDecodeError(t, err, ErrMalformed)
}
