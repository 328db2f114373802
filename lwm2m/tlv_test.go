package lwm2m

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
)

func hexBytesA(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRegistry is the built-in registry plus the objects of the spec's
// object link example (Core §7.4.3, objects 65 and 66) and an object with a
// resource of every data type, single (0–9) and multiple (10–18).
func testRegistryA(t testing.TB) *Registry {
	t.Helper()
	reg := NewRegistry()
	res := func(id uint16, typ DataType, multiple bool) *ResourceModel {
		ops := OpRead | OpWrite
		if typ == TypeNone {
			ops = OpExecute
		}
		return &ResourceModel{ID: id, Name: "r" + typ.String(), Operations: ops, Multiple: multiple, Type: typ}
	}
	all := &ObjectModel{ID: 60000, Name: "All types", Version: "1.0", Multiple: true, Resources: map[uint16]*ResourceModel{}}
	types := []DataType{TypeString, TypeInteger, TypeUnsigned, TypeFloat, TypeBoolean, TypeOpaque, TypeTime, TypeObjlnk, TypeCorelnk}
	for i, typ := range types {
		all.Resources[uint16(i)] = res(uint16(i), typ, false)
		all.Resources[uint16(10+i)] = res(uint16(10+i), typ, true)
	}
	all.Resources[9] = res(9, TypeNone, false)
	all.Resources[300] = res(300, TypeString, false) // a 16-bit resource id
	obj65 := &ObjectModel{ID: 65, Name: "object link tests 65", Multiple: true, Resources: map[uint16]*ResourceModel{
		0: res(0, TypeObjlnk, true), 1: res(1, TypeString, false), 2: res(2, TypeInteger, false)}}
	obj66 := &ObjectModel{ID: 66, Name: "object link tests 66", Multiple: true, Resources: map[uint16]*ResourceModel{
		0: res(0, TypeString, false), 1: res(1, TypeString, false), 2: res(2, TypeObjlnk, false)}}
	if err := reg.Add(all, obj65, obj66); err != nil {
		t.Fatal(err)
	}
	return reg
}

func recA(p string, v Value) Record { return Record{Path: MustParsePath(p), Value: v} }

// deviceRecords are the values of the Device object example of Core §7.4.3.
func deviceRecords(prefix string) []Record {
	return []Record{
		recA(prefix+"/0", String("Open Mobile Alliance")),
		recA(prefix+"/1", String("Lightweight M2M Client")),
		recA(prefix+"/2", String("345000123")),
		recA(prefix+"/3", String("1.0")),
		recA(prefix+"/6/0", Int(1)),
		recA(prefix+"/6/1", Int(5)),
		recA(prefix+"/7/0", Int(3800)),
		recA(prefix+"/7/1", Int(5000)),
		recA(prefix+"/8/0", Int(125)),
		recA(prefix+"/8/1", Int(900)),
		recA(prefix+"/9", Int(100)),
		recA(prefix+"/10", Int(15)),
		recA(prefix+"/11/0", Int(0)),
		recA(prefix+"/13", TimeUnix(1367491215)),
		recA(prefix+"/14", String("+02:00")),
		recA(prefix+"/16", String("U")),
	}
}

// The Device object instance of Core §7.4.3 (1.0: §6.4.3.1), resources only.
const specDeviceTLV = `
C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
C8 02 09 33 34 35 30 30 30 31 32 33
C3 03 31 2E 30
86 06 41 00 01 41 01 05
88 07 08 42 00 0E D8 42 01 13 88
87 08 41 00 7D 42 01 03 84
C1 09 64
C1 0A 0F
83 0B 41 00 00
C4 0D 51 82 42 8F
C6 0E 2B 30 32 3A 30 30
C1 10 55`

// tlvSpecVectors are the examples of Core §7.4.3 (TLV), byte for byte; the
// section numbers of LwM2M 1.0 (§6.4.3.x) are given as well because most
// implementations cite those.
var tlvSpecVectors = []struct {
	name string
	base string
	hex  string
	recs []Record
}{
	{
		name: "Core §7.4.3 single object instance: Read /3/0 (1.0 §6.4.3.1)",
		base: "/3/0",
		hex:  specDeviceTLV,
		recs: deviceRecords("/3/0"),
	},
	{
		name: "Core §7.4.3 multiple object instances A): Read /3 (1.0 §6.4.3.2 A)",
		base: "/3",
		hex:  "08 00 79" + specDeviceTLV,
		recs: deviceRecords("/3/0"),
	},
	{
		name: "Core §7.4.3 multiple object instances B): Read /2 Access Control (1.0 §6.4.3.2 B)",
		base: "/2",
		hex: `08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F
		      08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F`,
		recs: []Record{
			recA("/2/0/0", Int(1)), recA("/2/0/1", Int(0)), recA("/2/0/2/127", Int(7)), recA("/2/0/3", Int(127)),
			recA("/2/2/0", Int(3)), recA("/2/2/1", Int(0)), recA("/2/2/2/127", Int(7)), recA("/2/2/2/310", Int(1)), recA("/2/2/3", Int(127)),
		},
	},
	{
		name: "Core §7.4.3 multiple object instances C): Read /1 Server, one instance (1.0 §6.4.3.2 C)",
		base: "/1",
		hex:  "08 00 0F C1 00 01 C4 01 00 01 51 80 C1 06 01 C1 07 55",
		recs: []Record{recA("/1/0/0", Int(1)), recA("/1/0/1", Int(86400)), recA("/1/0/6", Bool(true)), recA("/1/0/7", String("U"))},
	},
	{
		name: "Core §7.4.3 object link example: Read /65/0 (1.0 §6.4.3.3)",
		base: "/65/0",
		hex:  "88 00 0C 44 00 00 42 00 00 44 01 00 42 00 01 C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30 C4 02 12 34 56 78",
		recs: []Record{
			recA("/65/0/0/0", ObjlnkValue(Objlnk{66, 0})), recA("/65/0/0/1", ObjlnkValue(Objlnk{66, 1})),
			recA("/65/0/1", String("8613800755500")), recA("/65/0/2", Int(0x12345678)),
		},
	},
	{
		name: "Core §7.4.3 object link example: Read /66 (1.0 §6.4.3.3)",
		base: "/66",
		hex: `08 00 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 31 C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 34 C4 02 00 43 00 00
		      08 01 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 32 C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 35 C4 02 FF FF FF FF`,
		recs: []Record{
			recA("/66/0/0", String("myService 1")), recA("/66/0/1", String("Internet.15.234")), recA("/66/0/2", ObjlnkValue(Objlnk{67, 0})),
			recA("/66/1/0", String("myService 2")), recA("/66/1/1", String("Internet.15.235")), recA("/66/1/2", ObjlnkValue(Objlnk{65535, 65535})),
		},
	},
}

func equalRecordsA(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i].Path != want[i].Path || !got[i].Value.Equal(want[i].Value) || !got[i].Time.Equal(want[i].Time) {
			t.Errorf("record %d: got %s=%s, want %s=%s", i, got[i].Path, got[i].Value, want[i].Path, want[i].Value)
		}
	}
}

func TestTLVSpecVectors(t *testing.T) {
	reg := testRegistryA(t)
	for _, tc := range tlvSpecVectors {
		t.Run(tc.name, func(t *testing.T) {
			data := hexBytesA(t, tc.hex)
			base := MustParsePath(tc.base)
			got, err := Decode(FormatTLV, base, data, reg)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			equalRecordsA(t, got, tc.recs)
			enc, err := Encode(FormatTLV, base, tc.recs, reg)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(enc, data) {
				t.Errorf("encode:\n got % X\nwant % X", enc, data)
			}
		})
	}
}

// The Device example wrapped in its object instance TLV also decodes against
// /3/0, as Leshan and Wakaama accept it.
func TestTLVInstanceWrapperAtInstanceLevel(t *testing.T) {
	reg := NewRegistry()
	got, err := Decode(FormatTLV, MustParsePath("/3/0"), hexBytesA(t, "08 00 79"+specDeviceTLV), reg)
	if err != nil {
		t.Fatal(err)
	}
	equalRecordsA(t, got, deviceRecords("/3/0"))
	if _, err := Decode(FormatTLV, MustParsePath("/3/1"), hexBytesA(t, "08 00 79"+specDeviceTLV), reg); err == nil {
		t.Fatal("instance 0 accepted in a payload for /3/1")
	}
}

// Without a model every value is opaque: the bytes of the TLV value.
func TestTLVWithoutModel(t *testing.T) {
	got, err := Decode(FormatTLV, MustParsePath("/3/0"), hexBytesA(t, specDeviceTLV), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 16 {
		t.Fatalf("got %d records", len(got))
	}
	if got[0].Value.Type() != TypeOpaque || string(got[0].Value.Bytes()) != "Open Mobile Alliance" {
		t.Errorf("first value %s", got[0].Value)
	}
	if !bytes.Equal(got[6].Value.Bytes(), []byte{0x0E, 0xD8}) {
		t.Errorf("/3/0/7/0 = % X", got[6].Value.Bytes())
	}
	// An unknown object in a registry is the same.
	got, err = Decode(FormatTLV, MustParsePath("/4242/0/1"), []byte{0xC1, 0x01, 0x2A}, NewRegistry())
	if err != nil || got[0].Value.Type() != TypeOpaque {
		t.Fatalf("%v %v", got, err)
	}
	// Opaque values do not alias the input.
	in := hexBytesA(t, "C3 01 01 02 03")
	got, _ = Decode(FormatTLV, MustParsePath("/4242/0"), in, nil)
	in[2] = 0xFF
	if got[0].Value.Bytes()[0] != 1 {
		t.Error("opaque value aliases the payload")
	}
}

// allTypeValues has, per resource of object 60000, values at the edges of
// each type's encoding widths.
var allTypeValues = map[uint16][]Value{
	0: {String(""), String("x"), String("grüße ✓"), String(strings.Repeat("s", 300)), String(strings.Repeat("m", 70000))},
	1: {Int(0), Int(-1), Int(127), Int(-128), Int(128), Int(-129), Int(32767), Int(-32768), Int(32768), Int(-32769),
		Int(math.MaxInt32), Int(math.MinInt32), Int(math.MaxInt32 + 1), Int(math.MinInt32 - 1), Int(math.MaxInt64), Int(math.MinInt64)},
	2: {Uint(0), Uint(255), Uint(256), Uint(65535), Uint(65536), Uint(math.MaxUint32), Uint(math.MaxUint32 + 1), Uint(math.MaxUint64)},
	3: {Float(0), Float(1.5), Float(-2.25), Float(0.1), Float(3.4e38), Float(1e300), Float(math.SmallestNonzeroFloat64),
		Float(math.Inf(1)), Float(math.Inf(-1)), Float(math.NaN()), Float(math.Copysign(0, -1))},
	4: {Bool(false), Bool(true)},
	5: {Opaque([]byte{}), Opaque([]byte{0}), Opaque(bytes.Repeat([]byte{0xAB}, 7)), Opaque(bytes.Repeat([]byte{1}, 8)),
		Opaque(bytes.Repeat([]byte{2}, 255)), Opaque(bytes.Repeat([]byte{3}, 256)), Opaque(bytes.Repeat([]byte{4}, 65535)),
		Opaque(bytes.Repeat([]byte{5}, 65536))},
	6: {TimeUnix(0), TimeUnix(1367491215), TimeUnix(-1), TimeUnix(1 << 40)},
	7: {ObjlnkValue(Objlnk{0, 0}), ObjlnkValue(Objlnk{3, 0}), ObjlnkValue(Objlnk{65535, 65535})},
	8: {Corelnk("</3/0>;pmin=10"), Corelnk("")},
}

func TestTLVRoundTripEveryType(t *testing.T) {
	reg := testRegistryA(t)
	for res, values := range allTypeValues {
		for i, v := range values {
			// Single resource, against the resource, the instance and the object.
			for _, base := range []string{"/60000/1/" + idTextA(res), "/60000/1", "/60000"} {
				recs := []Record{{Path: NewPath(60000, 1, res), Value: v}}
				roundTripA(t, FormatTLV, MustParsePath(base), recs, reg)
			}
			// Resource instance, alone and in its multiple resource.
			mres := res + 10
			ri := []Record{{Path: NewPath(60000, 1, mres, uint16(i)), Value: v}}
			roundTripA(t, FormatTLV, NewPath(60000, 1, mres, uint16(i)), ri, reg)
			roundTripA(t, FormatTLV, NewPath(60000, 1, mres), ri, reg)
		}
		// All values as instances of one multiple resource, ids crossing 255.
		var recs []Record
		for i, v := range values {
			recs = append(recs, Record{Path: NewPath(60000, 7, res+10, uint16(i*100)), Value: v})
		}
		roundTripA(t, FormatTLV, NewPath(60000, 7, res+10), recs, reg)
		roundTripA(t, FormatTLV, NewPath(60000), recs, reg)
	}
	// Executable (none) resources carry no value.
	roundTripA(t, FormatTLV, NewPath(60000, 0), []Record{{Path: NewPath(60000, 0, 9), Value: None()}}, reg)
}

func idTextA(id uint16) string { return NewPath(id).Relative() }

func roundTripA(t *testing.T, f Format, base Path, recs []Record, reg *Registry) {
	t.Helper()
	enc, err := Encode(f, base, recs, reg)
	if err != nil {
		t.Fatalf("%s encode %s %v: %v", f, base, recs[0], err)
	}
	got, err := Decode(f, base, enc, reg)
	if err != nil {
		t.Fatalf("%s decode %s % X: %v", f, base, headA(enc), err)
	}
	equalRecordsA(t, got, recs)
}

func headA(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// Nested object instances with multiple-instance resources, several
// instances, 16-bit ids at every level, unsorted input.
func TestTLVNestedInstances(t *testing.T) {
	reg := testRegistryA(t)
	recs := []Record{
		recA("/60000/300/11/1000", Int(-5)),
		recA("/60000/0/300", String("sixteen-bit resource id")),
		recA("/60000/0/0", String("a")),
		recA("/60000/300/11/2", Int(70000)),
		recA("/60000/0/14/0", Bool(true)),
		recA("/60000/0/14/1", Bool(false)),
		recA("/60000/65534/3", Float(2.5)),
	}
	enc, err := Encode(FormatTLV, MustParsePath("/60000"), recs, reg)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]Record(nil), recs...)
	SortRecords(want)
	got, err := Decode(FormatTLV, MustParsePath("/60000"), enc, reg)
	if err != nil {
		t.Fatal(err)
	}
	equalRecordsA(t, got, want)
	// 16-bit instance id: type 0x28 = object instance, 16-bit id, 8-bit length.
	if i := bytes.Index(enc, []byte{0x28, 0x01, 0x2C}); i < 0 {
		t.Errorf("no 16-bit id header for instance 300 in % X", enc)
	}
}

// The widths of Core §7.4.3: lengths in 3 bits and 8/16/24-bit fields, ids in
// 8 and 16 bits.
func TestTLVHeaderWidths(t *testing.T) {
	cases := []struct {
		id   uint16
		n    int
		head string
	}{
		{0, 0, "C0 00"},
		{5, 7, "C7 05"},
		{5, 8, "C8 05 08"},
		{255, 255, "C8 FF FF"},
		{256, 255, "E8 01 00 FF"},
		{1, 256, "D0 01 01 00"},
		{1, 65535, "D0 01 FF FF"},
		{1, 65536, "D8 01 01 00 00"},
		{65534, 1 << 20, "F8 FF FE 10 00 00"},
	}
	for _, c := range cases {
		h := appendTLVHeader(nil, tlvResource, c.id, c.n)
		if want := hexBytesA(t, c.head); !bytes.Equal(h, want) {
			t.Errorf("id %d len %d: % X, want % X", c.id, c.n, h, want)
		}
		if tlvHeaderLen(c.id, c.n) != len(h) {
			t.Errorf("id %d len %d: header length %d, wrote %d", c.id, c.n, tlvHeaderLen(c.id, c.n), len(h))
		}
		data := append(h, make([]byte, c.n)...)
		hdr, err := readTLVHeader(data, 0, len(data))
		if err != nil || hdr.id != c.id || hdr.length != c.n || hdr.kind != tlvResource || hdr.hdr != len(h) {
			t.Errorf("read back %+v %v", hdr, err)
		}
	}
	// Integers and floats take the smallest width (Core §7.4.3).
	widths := []struct {
		v Value
		n int
	}{
		{Int(0), 1}, {Int(-128), 1}, {Int(128), 2}, {Int(-32769), 4}, {Int(1 << 31), 8},
		{Uint(255), 1}, {Uint(256), 2}, {Uint(1 << 32), 8},
		{Float(1.5), 4}, {Float(0.1), 8}, {Float(math.NaN()), 8}, {Float(math.Inf(1)), 4},
	}
	for _, w := range widths {
		if n, _ := tlvValueLen(Record{Value: w.v}); n != w.n {
			t.Errorf("%s: %d bytes, want %d", w.v, n, w.n)
		}
	}
}

func TestTLVEncodeConvertsToModelType(t *testing.T) {
	reg := NewRegistry()
	enc, err := Encode(FormatTLV, MustParsePath("/3/0/9"), []Record{recA("/3/0/9", String("100"))}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xC1, 0x09, 0x64}; !bytes.Equal(enc, want) {
		t.Errorf("% X, want % X", enc, want)
	}
	if _, err := Encode(FormatTLV, MustParsePath("/3/0/9"), []Record{recA("/3/0/9", String("many"))}, reg); !errors.Is(err, ErrType) {
		t.Errorf("non-numeric string for an integer: %v", err)
	}
}

func TestTLVEncodeErrors(t *testing.T) {
	reg := NewRegistry()
	cases := []struct {
		name string
		base string
		recs []Record
		want error
	}{
		{"root", "/", []Record{recA("/3/0/0", String("x"))}, ErrInvalidPath},
		{"instance record", "/3", []Record{recA("/3/0", String("x"))}, ErrInvalidPath},
		{"duplicate", "/3/0", []Record{recA("/3/0/0", String("x")), recA("/3/0/0", String("y"))}, ErrInvalidPath},
		{"value and instances", "/3/0", []Record{recA("/3/0/6", Int(1)), recA("/3/0/6/0", Int(1))}, ErrInvalidPath},
		{"resource instance base", "/3/0/6/0", []Record{recA("/3/0/6/0", Int(1))}, nil},
		{"outside base", "/3/0", []Record{recA("/4/0/0", Int(1))}, ErrInvalidPath},
	}
	for _, c := range cases {
		_, err := Encode(FormatTLV, MustParsePath(c.base), c.recs, reg)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// An empty list is an empty payload.
	if b, err := Encode(FormatTLV, MustParsePath("/3"), nil, reg); err != nil || len(b) != 0 {
		t.Errorf("empty: % X %v", b, err)
	}
}

// Malformed payloads give a *DecodeError that says where.
func TestTLVDecodeErrors(t *testing.T) {
	reg := testRegistryA(t)
	cases := []struct {
		name   string
		base   string
		hex    string
		offset int
		field  string
		is     error
	}{
		{"truncated id", "/3/0", "C8", 1, "identifier", ErrMalformed},
		{"truncated 16-bit id", "/3/0", "E1 01", 1, "identifier", ErrMalformed},
		{"truncated length", "/3/0", "D0 01 00", 2, "length", ErrMalformed},
		{"value past end", "/3/0", "C5 00 41 42", 0, "length", ErrMalformed},
		{"nested length past parent", "/3", "08 00 03 C5 00 41", 3, "length", ErrMalformed},
		{"resource at object level", "/3", "C1 09 64", 0, "type", ErrMalformed},
		{"instance in instance", "/3", "08 00 05 08 01 02 C0 00", 3, "type", ErrMalformed},
		{"resource instance in instance", "/3/0", "41 00 01", 0, "type", ErrMalformed},
		{"resource in multiple resource", "/3/0", "86 06 C1 00 01 41 01 05", 2, "type", ErrMalformed},
		{"duplicate resource", "/3/0", "C1 09 64 C1 09 65", 3, "identifier", ErrMalformed},
		{"duplicate instance", "/3", "00 00 00 00", 2, "identifier", ErrMalformed},
		{"duplicate resource instance", "/3/0", "86 06 41 00 01 41 00 05", 5, "identifier", ErrMalformed},
		{"integer of 3 bytes", "/3/0", "C3 09 01 02 03", 2, "/3/0/9", ErrMalformed},
		{"boolean 2", "/1/0", "C1 06 02", 2, "/1/0/6", ErrMalformed},
		{"float of 2 bytes", "/60000/0", "C2 03 01 02", 2, "/60000/0/3", ErrMalformed},
		{"objlnk of 3 bytes", "/60000/0", "C3 07 01 02 03", 2, "/60000/0/7", ErrMalformed},
		{"wrong resource id", "/3/0/9", "C1 0A 64", 0, "identifier", ErrMalformed},
		{"trailing data", "/3/0/9", "C1 09 64 00", 3, "type", ErrMalformed},
		{"wrong resource instance id", "/3/0/6/1", "41 00 01", 0, "identifier", ErrMalformed},
		{"reserved id", "/3/0", "E1 FF FF 00", 0, "identifier", ErrMalformed},
	}
	for _, c := range cases {
		_, err := Decode(FormatTLV, MustParsePath(c.base), hexBytesA(t, c.hex), reg)
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: %v is not a *DecodeError", c.name, err)
			continue
		}
		if !errors.Is(err, c.is) || de.Offset != c.offset || de.Field != c.field || de.Format != FormatTLV {
			t.Errorf("%s: got offset %d field %q (%v), want offset %d field %q", c.name, de.Offset, de.Field, err, c.offset, c.field)
		}
	}
	if _, err := Decode(FormatTLV, Path{}, []byte{0xC1, 0, 1}, reg); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("root: %v", err)
	}
}

// Lenient forms some clients send for a resource read.
func TestTLVResourceForms(t *testing.T) {
	reg := NewRegistry()
	want := []Record{recA("/3/0/7/0", Int(3800)), recA("/3/0/7/1", Int(5000))}
	for _, h := range []string{
		"88 07 08 42 00 0E D8 42 01 13 88", // multiple resource TLV
		"42 00 0E D8 42 01 13 88",          // its resource instances alone
	} {
		got, err := Decode(FormatTLV, MustParsePath("/3/0/7"), hexBytesA(t, h), reg)
		if err != nil {
			t.Fatal(err)
		}
		equalRecordsA(t, got, want)
	}
	got, err := Decode(FormatTLV, MustParsePath("/3/0/7/1"), hexBytesA(t, "84 07 42 01 13 88"), reg)
	if err != nil {
		t.Fatal(err)
	}
	equalRecordsA(t, got, want[1:])
	if got, err := Decode(FormatTLV, MustParsePath("/3/0"), nil, reg); err != nil || len(got) != 0 {
		t.Errorf("empty payload: %v %v", got, err)
	}
}

func TestTLVMaxRecords(t *testing.T) {
	// MaxRecords+1 resource instances of 3 bytes each in one multiple resource.
	var body []byte
	for i := 0; i <= MaxRecords; i++ {
		body = appendTLVHeader(body, tlvResourceInstance, uint16(i), 1)
		body = append(body, 1)
	}
	data := appendTLVHeader(nil, tlvMultipleResource, 6, len(body))
	data = append(data, body...)
	_, err := Decode(FormatTLV, MustParsePath("/3/0"), data, NewRegistry())
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("%d values: %v", MaxRecords+1, err)
	}
	var de *DecodeError
	if !errors.As(err, &de) || de.Offset <= 0 {
		t.Errorf("limit error without offset: %v", err)
	}
}

// FuzzDecodeTLV: any payload decodes or fails with a *DecodeError, never
// panics; what decodes encodes again and decodes to the same records.
func FuzzDecodeTLV(f *testing.F) {
	for _, tc := range tlvSpecVectors {
		f.Add(hexBytesA(f, tc.hex), tc.base)
	}
	f.Add([]byte{0x88, 0x07, 0x08, 0x42, 0x00, 0x0E, 0xD8, 0x42, 0x01, 0x13, 0x88}, "/3/0/7")
	f.Add([]byte{0x41, 0x01, 0x05}, "/3/0/6/1")
	f.Add([]byte{0xC8, 0x00, 0x03, 'a', 'b', 'c'}, "/60000/0")
	f.Add([]byte{0x28, 0x01, 0x2C, 0x03, 0xC1, 0x04, 0x01}, "/60000")
	reg := testRegistryA(f)
	f.Fuzz(func(t *testing.T, data []byte, base string) {
		p, err := ParsePath(base)
		if err != nil {
			return
		}
		for _, r := range []*Registry{reg, nil} {
			recs, err := Decode(FormatTLV, p, data, r)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %v is not a *DecodeError", err)
				}
				continue
			}
			if len(recs) > MaxRecords {
				t.Fatalf("%d records", len(recs))
			}
			enc, err := Encode(FormatTLV, p, recs, r)
			if err != nil {
				t.Fatalf("re-encode %v: %v", recs, err)
			}
			again, err := Decode(FormatTLV, p, enc, r)
			if err != nil {
				t.Fatalf("decode re-encoded % X: %v", enc, err)
			}
			want := append([]Record(nil), recs...)
			SortRecords(want)
			equalRecordsA(t, again, want)
		}
	})
}

// benchDevice is a realistic Device object instance: the spec example plus
// the resources a Zephyr client reports (device type, versions, battery
// status, memory total), 21 values in 17 resources.
func benchDevice() []Record {
	recs := deviceRecords("/3/0")
	recs = append(recs,
		recA("/3/0/17", String("nrf9160dk")),
		recA("/3/0/18", String("1.0.0")),
		recA("/3/0/19", String("v2.6.1-zephyr")),
		recA("/3/0/20", Int(0)),
		recA("/3/0/21", Int(256)),
	)
	SortRecords(recs)
	return recs
}

func BenchmarkDecodeTLVDevice(b *testing.B) {
	reg := NewRegistry()
	base := MustParsePath("/3/0")
	data, err := Encode(FormatTLV, base, benchDevice(), reg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(FormatTLV, base, data, reg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeTLVDevice(b *testing.B) {
	reg := NewRegistry()
	base := MustParsePath("/3/0")
	recs := benchDevice()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(FormatTLV, base, recs, reg); err != nil {
			b.Fatal(err)
		}
	}
}
