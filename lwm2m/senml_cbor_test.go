package lwm2m

import (
	"bytes"
	"encoding/hex"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Core 1.1 §7.4.5: the Read of /3/0 in SenML CBOR (the spec shows it in
// diagnostic notation next to the SenML JSON of §7.4.4 and as hex).
const specDeviceSenMLCBOR = `90a321652f332f302f00613003744f70656e204d6f62696c6520416c6c69616e6365
a200613103764c69676874776569676874204d324d20436c69656e74a2006132036933343530303031323
3a20061330363312e30a20063362f300201a20063362f310205a20063372f3002190ed8a20063372f3102
191388a20063382f3002187da20063382f3102190384a2006139021864a200623130020fa2006431312f3
00200a200623133021a5182428fa20062313403662b30323a3030a200623136036155`

// RFC 8428 §6: the CBOR form of the §5.1.2 "multiple data points" pack.
const rfc8428CBOR = `87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a3006763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333`

func TestSenMLCBORSpecDeviceRead(t *testing.T) {
	want := senmlHex(t, specDeviceSenMLCBOR)
	got, err := Encode(FormatSenMLCBOR, MustParsePath("/3/0"), senmlDeviceExample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Core 1.1 §7.4.5 example:\n got %x\nwant %x", got, want)
	}
	// Without a model, 13 (Current Time) is the integer the wire shows;
	// with one, it is a Time.
	recs, err := Decode(FormatSenMLCBOR, MustParsePath("/3/0"), want, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := senmlDeviceExample()
	exp[13].Value = Int(1367491215)
	if !senmlSameRecords(recs, exp) {
		t.Fatalf("decode without model:\n got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(exp))
	}
	recs, err = Decode(FormatSenMLCBOR, MustParsePath("/3/0"), want, structuredRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if !senmlSameRecords(recs, senmlDeviceExample()) {
		t.Fatalf("decode with model:\n got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(senmlDeviceExample()))
	}
}

// senmlRawSink collects resolved wire records, for the RFC 8428 vectors whose
// names are URNs rather than LwM2M paths.
type senmlRawSink struct {
	st   senmlResolver
	recs []senmlRawResolved
}

type senmlRawResolved struct {
	name  string
	unit  string
	t     float64
	timed bool
	v     float64
}

func (s *senmlRawSink) begin(int) {}
func (s *senmlRawSink) add(r *senmlRecord, _, _ int) error {
	timed := s.st.resolve(r)
	s.recs = append(s.recs, senmlRawResolved{name: r.fullName(), unit: string(r.u), t: r.tf, timed: timed, v: r.v.float()})
	return nil
}

// rfc8428Pack is the §5.1.2 pack as wire records, for the encoder.
func rfc8428Pack() []senmlRecord {
	num := func(f float64) cborNumber { return cborNumber{kind: numFloat, f: f} }
	in := func(i int64) cborNumber { return cborNumber{kind: numInt, i: i} }
	recs := []senmlRecord{{
		has: sfBN | sfBT | sfBU | sfBver | sfN | sfU | sfV,
		bn:  []byte("urn:dev:ow:10e2073a0108006:"), bt: num(1.276020076001e+09),
		bu: []byte("A"), bver: 5, n: []byte("voltage"), u: []byte("V"), v: num(120.1),
	}}
	for i, v := range []float64{1.2, 1.3, 1.4, 1.5, 1.6, 1.7} {
		recs = append(recs, senmlRecord{has: sfN | sfT | sfV, n: []byte("current"), t: in(int64(i - 5)), v: num(v)})
	}
	return recs
}

func checkRFC8428Resolved(t *testing.T, got []senmlRawResolved) {
	t.Helper()
	if len(got) != 7 {
		t.Fatalf("got %d records, want 7", len(got))
	}
	// RFC 8428 §5.1.2 / §4.6: names and times after resolution.
	if got[0].name != "urn:dev:ow:10e2073a0108006:voltage" || got[0].unit != "V" || got[0].v != 120.1 || got[0].t != 1.276020076001e+09 {
		t.Errorf("record 0 = %+v", got[0])
	}
	for i := 1; i < 7; i++ {
		r := got[i]
		wantT := 1.276020076001e+09 + float64(i-6)
		if r.name != "urn:dev:ow:10e2073a0108006:current" || r.unit != "A" || r.t != wantT || !r.timed {
			t.Errorf("record %d = %+v, want current in A at %v", i, r, wantT)
		}
	}
	if got[4].v != 1.5 {
		t.Errorf("record 4 value %v, want 1.5 (a half-precision float on the wire)", got[4].v)
	}
}

func TestSenMLCBORRFC8428Example(t *testing.T) {
	want := senmlHex(t, rfc8428CBOR)
	var s senmlRawSink
	if err := readSenMLCBOR(want, &s); err != nil {
		t.Fatal(err)
	}
	checkRFC8428Resolved(t, s.recs)

	// The encoder writes the same bytes: preferred serialization, floats
	// in the shortest exact width (1.5 is f9 3e00).
	out := appendCBORHead(nil, cborArray, 7)
	for _, r := range rfc8428Pack() {
		out = appendSenMLCBORRecord(out, &r)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("RFC 8428 §6:\n got %x\nwant %x", out, want)
	}
}

func TestSenMLCBORTimeSeries(t *testing.T) {
	// Zephyr's cached time series (CONFIG_LWM2M_RESOURCE_DATA_CACHE_SUPPORT)
	// arrive as many records of one path: bn names the path once, bt
	// carries the first time and t the offsets (RFC 8428 §4.5.3).
	ts := time.Unix(1732435200, 0).UTC()
	p := MustParsePath("/3303/0/5700")
	recs := []Record{
		{Path: p, Value: Float(22.5), Time: ts},
		{Path: p, Value: Float(22.75), Time: ts.Add(10 * time.Second)},
		{Path: p, Value: Float(23), Time: ts.Add(20 * time.Second)},
	}
	want := senmlHex(t, `83
		a3 21 6c 2f333330332f302f35373030 22 1a 6742dd00 02 f9 4da0
		a2 06 0a 02 f9 4db0
		a2 06 14 02 f9 4dc0`)
	got, err := Encode(FormatSenMLCBOR, Path{}, recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	back, err := decodeSenMLCBORAt(Path{}, got, nil, senmlFixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if !senmlSameRecords(back, recs) {
		t.Fatalf("round trip:\n got %s\nwant %s", senmlRecordsString(back), senmlRecordsString(recs))
	}
}

func TestSenMLCBORRelativeTime(t *testing.T) {
	// {-2: "/3303/0/", 0: "5700", 6: -30, 2: 21.5}, {0: "5700", 2: 21.0},
	// {0: "5700", 6: 0, 2: 20.5}: a negative t is 30 s before now; no
	// time, or t 0, is "now" and left for the receiver to stamp.
	data := senmlHex(t, `83
		a4 21 68 2f333330332f302f 00 64 35373030 06 38 1d 02 f9 4d60
		a2 00 64 35373030 02 f9 4d40
		a3 00 64 35373030 06 00 02 f9 4d20`)
	recs, err := decodeSenMLCBORAt(MustParsePath("/3303"), data, nil, senmlFixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("got %d records", len(recs))
	}
	if want := senmlTestNow.Add(-30 * time.Second); !recs[0].Time.Equal(want) {
		t.Errorf("relative time: got %v, want %v", recs[0].Time, want)
	}
	if !recs[1].Time.IsZero() || !recs[2].Time.IsZero() {
		t.Errorf("records without a time got %v, %v", recs[1].Time, recs[2].Time)
	}
	if recs[0].Value.Float() != 21.5 || recs[2].Value.Float() != 20.5 {
		t.Errorf("values %s", senmlRecordsString(recs))
	}
}

func TestSenMLCBORRoundTrips(t *testing.T) {
	reg := structuredRegistry(t)
	cases := map[string]struct {
		base Path
		recs []Record
	}{
		"device read":     {MustParsePath("/3/0"), senmlDeviceExample()},
		"every type":      {MustParsePath("/32769/0"), senmlEveryType()},
		"composite":       {Path{}, senmlComposite10()},
		"single resource": {MustParsePath("/3303/0/5700"), []Record{{Path: MustParsePath("/3303/0/5700"), Value: Float(-0.5)}}},
		"resource instances": {MustParsePath("/3/0/7"), []Record{
			{Path: MustParsePath("/3/0/7/0"), Value: Int(3800)},
			{Path: MustParsePath("/3/0/7/1"), Value: Int(5000)},
			{Path: MustParsePath("/3/0/7/65534"), Value: Int(-1)},
		}},
		"sub-second times": {Path{}, []Record{
			{Path: MustParsePath("/3303/0/5700"), Value: Float(1), Time: time.Unix(1732435200, 250_000_000).UTC()},
			{Path: MustParsePath("/3303/0/5700"), Value: Float(2), Time: time.Unix(1732435201, 1000).UTC()},
		}},
		"floats of each width": {MustParsePath("/32769/0/7"), []Record{
			{Path: MustParsePath("/32769/0/7/0"), Value: Float(0.5)},
			{Path: MustParsePath("/32769/0/7/1"), Value: Float(100000.5)},
			{Path: MustParsePath("/32769/0/7/2"), Value: Float(math.Pi)},
			{Path: MustParsePath("/32769/0/7/3"), Value: Float(math.Inf(-1))},
			{Path: MustParsePath("/32769/0/7/4"), Value: Float(math.NaN())},
			{Path: MustParsePath("/32769/0/7/5"), Value: Float(5.960464477539063e-08)},
			{Path: MustParsePath("/32769/0/7/6"), Value: Float(math.SmallestNonzeroFloat64)},
		}},
		"empty": {MustParsePath("/3/0"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(FormatSenMLCBOR, c.base, c.recs, reg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeSenMLCBORAt(c.base, data, reg, senmlFixedClock)
			if err != nil {
				t.Fatalf("%v\n%x", err, data)
			}
			if !senmlSameRecords(back, c.recs) {
				t.Fatalf("round trip:\n got %s\nwant %s\n%x", senmlRecordsString(back), senmlRecordsString(c.recs), data)
			}
		})
	}
}

func TestSenMLCBORFloatWidths(t *testing.T) {
	for _, c := range []struct {
		f    float64
		want string
	}{
		{0, "f90000"}, {math.Copysign(0, -1), "f98000"}, {1.5, "f93e00"}, {65504, "f97bff"},
		{5.960464477539063e-08, "f90001"}, {math.Inf(1), "f97c00"}, {math.NaN(), "f97e00"},
		{100000, "fa47c35000"}, {3.4028234663852886e+38, "fa7f7fffff"},
		{1.1, "fb3ff199999999999a"}, {1e300, "fb7e37e43c8800759c"},
	} {
		got := hex.EncodeToString(appendCBORFloat(nil, c.f))
		if got != c.want {
			t.Errorf("%v: got %s, want %s (RFC 8949 Appendix A)", c.f, got, c.want)
		}
		r := cborReader{b: appendCBORFloat(nil, c.f)}
		h, err := r.head()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := r.numberFrom(h)
		if !senmlSameValue(Float(n.f), Float(c.f)) {
			t.Errorf("%s decodes to %v, want %v", c.want, n.f, c.f)
		}
	}
}

func TestSenMLCBORModelTyping(t *testing.T) {
	reg := structuredRegistry(t)
	// {0: "/3303/0/5700", 2: 21} is a Float by the model, an Integer
	// without; {0: "/32769/0/2", 2: 7} is Unsigned by the model.
	data := senmlHex(t, `82 a2 00 6c 2f333330332f302f35373030 02 15 a2 00 6a 2f33323736392f302f32 02 07`)
	recs, err := Decode(FormatSenMLCBOR, Path{}, data, reg)
	if err != nil {
		t.Fatal(err)
	}
	if !recs[0].Value.Equal(Float(21)) || !recs[1].Value.Equal(Uint(7)) {
		t.Errorf("with model: %s", senmlRecordsString(recs))
	}
	recs, err = Decode(FormatSenMLCBOR, Path{}, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !recs[0].Value.Equal(Int(21)) || !recs[1].Value.Equal(Int(7)) {
		t.Errorf("without model: %s", senmlRecordsString(recs))
	}
	// A non-integral number where the model says Integer is a type error
	// naming the record and the field.
	bad := senmlHex(t, `81 a2 00 66 2f332f302f39 02 f9 3e00`)
	de := senmlWantDecodeError(t, func() error { _, err := Decode(FormatSenMLCBOR, Path{}, bad, reg); return err }(), ErrType)
	if de.Record != 0 || de.Field != "v" {
		t.Errorf("error names record %d field %q: %v", de.Record, de.Field, de)
	}
}

func TestSenMLCBORDecodeErrors(t *testing.T) {
	nest := bytes.Repeat([]byte{0x81}, 100000)
	cases := []struct {
		name   string
		hex    string
		raw    []byte
		target error
		field  string
	}{
		{name: "empty", hex: ``, target: ErrMalformed},
		{name: "not an array", hex: `a0`, target: ErrMalformed},
		{name: "truncated array", hex: `82 a2 00 66 2f332f302f39 02 01`, target: ErrMalformed},
		{name: "trailing bytes", hex: `81 a2 00 66 2f332f302f39 02 01 00`, target: ErrMalformed},
		{name: "record not a map", hex: `81 01`, target: ErrMalformed},
		{name: "million records claimed", hex: `9a 000f4240 a0`, target: ErrLimit},
		{name: "nesting bomb in an unknown field", raw: append(senmlHex(t, `81 a1 18 63`), nest...), target: ErrLimit},
		{name: "indefinite array never ends", hex: `9f a1 00 61 31`, target: ErrMalformed},
		{name: "name twice", hex: `81 a3 00 61 31 00 61 32 02 01`, target: ErrMalformed, field: "n"},
		{name: "two values", hex: `81 a3 00 66 2f332f302f39 02 01 04 f5`, target: ErrMalformed, field: "v"},
		{name: "no value", hex: `81 a1 00 66 2f332f302f39`, target: ErrMalformed, field: "v"},
		{name: "must-understand label", hex: `81 a2 63 61 62 5f 01 02 01`, target: ErrMalformed, field: "ab_"},
		{name: "name is not a path", hex: `81 a2 00 63 66 6f 6f 02 01`, target: ErrInvalidPath, field: "n"},
		{name: "value at an instance", hex: `81 a2 00 64 2f332f30 02 01`, target: ErrInvalidPath, field: "n"},
		{name: "id too large", hex: `81 a2 00 68 2f36353533352f30 02 01`, target: ErrInvalidPath, field: "n"},
		{name: "vs is not text", hex: `81 a2 00 66 2f332f302f30 03 01`, target: ErrMalformed, field: "vs"},
		{name: "vb is not a boolean", hex: `81 a2 00 66 2f332f302f30 04 01`, target: ErrMalformed, field: "vb"},
		{name: "vd is not bytes", hex: `81 a2 00 66 2f332f302f30 08 61 41`, target: ErrMalformed, field: "vd"},
		{name: "bad objlnk", hex: `81 a2 00 66 2f332f302f30 63 766c6f 61 78`, target: ErrType, field: "vlo"},
		{name: "text not UTF-8", hex: `81 a2 00 66 2f332f302f30 03 62 c328`, target: ErrMalformed, field: "vs"},
		{name: "string longer than payload", hex: `81 a2 00 66 2f332f302f30 03 78 ff 41`, target: ErrMalformed, field: "vs"},
		{name: "reserved info", hex: `81 a1 00 7c`, target: ErrMalformed},
		{name: "time out of range", hex: `81 a3 00 66 2f332f302f39 06 fb 7e37e43c8800759c 02 01`, target: ErrMalformed, field: "t"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := c.raw
			if data == nil {
				data = senmlHex(t, c.hex)
			}
			_, err := Decode(FormatSenMLCBOR, Path{}, data, nil)
			de := senmlWantDecodeError(t, err, c.target)
			if de.Format != FormatSenMLCBOR {
				t.Errorf("format %v", de.Format)
			}
			if c.field != "" && de.Field != c.field {
				t.Errorf("field %q, want %q: %v", de.Field, c.field, err)
			}
		})
	}
	// Outside the requested path.
	_, err := Decode(FormatSenMLCBOR, MustParsePath("/3/1"), senmlHex(t, specDeviceSenMLCBOR), nil)
	senmlWantDecodeError(t, err, ErrInvalidPath)
}

func TestSenMLCBORRecordLimit(t *testing.T) {
	// An indefinite-length array with one record more than MaxRecords.
	rec := senmlHex(t, `a2 00 66 2f332f302f39 02 01`)
	data := append([]byte{0x9f}, bytes.Repeat(rec, MaxRecords+1)...)
	data = append(data, 0xff)
	_, err := Decode(FormatSenMLCBOR, Path{}, data, nil)
	senmlWantDecodeError(t, err, ErrLimit)
	// MaxRecords itself is fine.
	data = append(appendCBORHead(nil, cborArray, MaxRecords), bytes.Repeat(rec, MaxRecords)...)
	recs, err := Decode(FormatSenMLCBOR, Path{}, data, nil)
	if err != nil || len(recs) != MaxRecords {
		t.Fatalf("%d records, %v", len(recs), err)
	}
}

func TestSenMLCBORIndefiniteAndUnknown(t *testing.T) {
	// Indefinite array, indefinite map, chunked text, an unknown label
	// with a nested value, a tag before the value, and a base value
	// (RFC 8428 §4.5.1: v = bv + v).
	data := senmlHex(t, `9f
		bf 21 66 2f332f302f39 24 0a 00 60 02 05 18 64 82 01 a1 01 02 ff
		bf 21 60 00 7f 62 2f33 64 2f302f31 ff 03 c1 7f 61 41 61 42 ff ff
		ff`)
	recs, err := Decode(FormatSenMLCBOR, Path{}, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Path: MustParsePath("/3/0/9"), Value: Int(15)},
		{Path: MustParsePath("/3/0/1"), Value: String("AB")},
	}
	if !senmlSameRecords(recs, want) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(want))
	}
}

func TestSenMLCBORPaths(t *testing.T) {
	paths := []Path{MustParsePath("/3/0/0"), MustParsePath("/1/0/1"), MustParsePath("/3303"), MustParsePath("/3/0/6/1"), {}}
	data, err := EncodePaths(FormatSenMLCBOR, paths)
	if err != nil {
		t.Fatal(err)
	}
	// [{0: "/3/0/0"}, {0: "/1/0/1"}, {0: "/3303"}, {0: "/3/0/6/1"}, {0: "/"}]
	want := senmlHex(t, `85 a1 00 66 2f332f302f30 a1 00 66 2f312f302f31 a1 00 65 2f33333033 a1 00 68 2f332f302f362f31 a1 00 61 2f`)
	if !bytes.Equal(data, want) {
		t.Fatalf("got %x\nwant %x", data, want)
	}
	back, err := DecodePaths(FormatSenMLCBOR, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(paths) {
		t.Fatalf("got %v", back)
	}
	for i := range paths {
		if back[i] != paths[i] {
			t.Errorf("path %d: got %s, want %s", i, back[i], paths[i])
		}
	}
	// bn applies to the names after it.
	back, err = DecodePaths(FormatSenMLCBOR, senmlHex(t, `82 a2 21 65 2f332f302f 00 61 30 a1 00 61 39`))
	if err != nil || len(back) != 2 || back[0] != MustParsePath("/3/0/0") || back[1] != MustParsePath("/3/0/9") {
		t.Fatalf("got %v, %v", back, err)
	}
	_, err = DecodePaths(FormatSenMLCBOR, senmlHex(t, `81 a2 00 66 2f332f302f30 02 01`))
	senmlWantDecodeError(t, err, ErrMalformed)
	_, err = DecodePaths(FormatSenMLCBOR, senmlHex(t, `81 a1 00 64 2f332f78`))
	senmlWantDecodeError(t, err, ErrInvalidPath)
}

func TestSenMLEncodeErrors(t *testing.T) {
	for name, recs := range map[string][]Record{
		"instance path":    {{Path: MustParsePath("/3/0"), Value: Int(1)}},
		"no value":         {{Path: MustParsePath("/3/0/4"), Value: None()}},
		"time before 1978": {{Path: MustParsePath("/3/0/9"), Value: Int(1), Time: time.Unix(1000, 0)}},
	} {
		for _, f := range []Format{FormatSenMLCBOR, FormatSenMLJSON} {
			if _, err := Encode(f, Path{}, recs, nil); err == nil {
				t.Errorf("%s %s: no error", f, name)
			}
		}
	}
	// JSON has no form for non-finite numbers; CBOR has.
	inf := []Record{{Path: MustParsePath("/3303/0/5700"), Value: Float(math.Inf(1))}}
	if _, err := Encode(FormatSenMLJSON, Path{}, inf, nil); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("JSON infinity: %v", err)
	}
	if _, err := Encode(FormatSenMLCBOR, Path{}, inf, nil); err != nil {
		t.Errorf("CBOR infinity: %v", err)
	}
}

// senmlBytesPerRun is the heap allocated by one call of f, averaged over runs.
func senmlBytesPerRun(runs int, f func()) uint64 {
	f()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func TestHostileInputsAllocateLittle(t *testing.T) {
	// A header claiming a million records, a nesting bomb and a string
	// longer than the payload are refused before anything sized by the
	// claim is allocated: a few kilobytes at most (the error message and
	// the records reserved for a payload of this size).
	bomb := append(senmlHex(t, `81 a1 18 63`), bytes.Repeat([]byte{0x81}, 100000)...)
	inputs := []struct {
		f    Format
		data []byte
	}{
		{FormatSenMLCBOR, senmlHex(t, `9a 000f4240 a0`)},
		{FormatSenMLCBOR, senmlHex(t, `9f`+strings.Repeat(`a2 00 66 2f332f302f39 02 01`, 10)+`9a 000f4240`)},
		{FormatSenMLCBOR, bomb},
		{FormatSenMLCBOR, senmlHex(t, `81 a2 00 66 2f332f302f30 03 7b 7fffffffffffffff`)},
		{FormatLwM2MCBOR, senmlHex(t, `ba 000f4240 03`)},
		{FormatLwM2MCBOR, senmlHex(t, `a1 03 ba 000f4240 00`)},
		{FormatSenMLJSON, []byte(`[{"x":` + strings.Repeat("[", 100000) + `]}]`)},
		{FormatLwM2MJSON, []byte(`{"x":` + strings.Repeat("{\"a\":", 100000) + `}`)},
	}
	for i, in := range inputs {
		n := senmlBytesPerRun(5, func() {
			if _, err := Decode(in.f, Path{}, in.data, nil); err == nil {
				t.Fatalf("input %d (%s): no error", i, in.f)
			}
		})
		if n > 64<<10 {
			t.Errorf("input %d (%s, %d bytes): %d bytes allocated", i, in.f, len(in.data), n)
		}
	}
}

func TestSenMLCBORBaseFieldsPerRecord(t *testing.T) {
	// A cache flush may repeat bt in every record and change bn between
	// objects: each base field holds until the next one (RFC 8428 §4.6).
	// [{-2: "/3303/0/", -3: 1732435200, 0: "5700", 2: 22.5},
	//  {-3: 1732435210, 0: "5700", 2: 22.75},
	//  {-2: "/3/0/", -3: 1732435210, 0: "9", 2: 87}]
	data := senmlHex(t, `83
		a4 21 68 2f333330332f302f 22 1a 6742dd00 00 64 35373030 02 f9 4da0
		a3 22 1a 6742dd0a 00 64 35373030 02 f9 4db0
		a4 21 65 2f332f302f 22 1a 6742dd0a 00 61 39 02 18 57`)
	recs, err := Decode(FormatSenMLCBOR, Path{}, data, structuredRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1732435200, 0).UTC()
	want := []Record{
		{Path: MustParsePath("/3303/0/5700"), Value: Float(22.5), Time: ts},
		{Path: MustParsePath("/3303/0/5700"), Value: Float(22.75), Time: ts.Add(10 * time.Second)},
		{Path: MustParsePath("/3/0/9"), Value: Int(87), Time: ts.Add(10 * time.Second)},
	}
	if !senmlSameRecords(recs, want) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(want))
	}
}

func TestSenMLCBORObjlnkWithNUL(t *testing.T) {
	// {0: "/32769/0/0", "vlo": "3:0\x00"}: the terminating NUL some
	// embedded encoders count into the length is dropped.
	recs, err := Decode(FormatSenMLCBOR, Path{}, senmlHex(t, `81 a2 00 6a 2f33323736392f302f30 63 766c6f 64 333a3000`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !recs[0].Value.Equal(ObjlnkValue(Objlnk{3, 0})) {
		t.Fatalf("got %s", senmlRecordsString(recs))
	}
}
