package lwm2m

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// Core 1.1 §7.4.4: the Read of /3/0 in SenML JSON.
const specDeviceSenMLJSON = `[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},
{"n":"1","vs":"Lightweight M2M Client"},
{"n":"2","vs":"345000123"},
{"n":"3","vs":"1.0"},
{"n":"6/0","v":1},
{"n":"6/1","v":5},
{"n":"7/0","v":3800},
{"n":"7/1","v":5000},
{"n":"8/0","v":125},
{"n":"8/1","v":900},
{"n":"9","v":100},
{"n":"10","v":15},
{"n":"11/0","v":0},
{"n":"13","v":1367491215},
{"n":"14","vs":"+02:00"},
{"n":"16","vs":"U"}]`

// RFC 8428 §5.1.2: multiple data points, with base name, base time, base
// unit and version.
const rfc8428JSON = `[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]`

// RFC 8428 §5.1.6: multiple data types (vd is base64url without padding).
const rfc8428TypesJSON = `[
     {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
     {"n":"label","vs":"Machine Room"},
     {"n":"open","vb":false},
     {"n":"nfc-reader","vd":"aGkgCg"}
   ]`

func senmlCompactJSON(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSenMLJSONSpecDeviceRead(t *testing.T) {
	// Byte-exact up to the spec's line breaks between records.
	want := senmlCompactJSON(t, specDeviceSenMLJSON)
	got, err := Encode(FormatSenMLJSON, MustParsePath("/3/0"), senmlDeviceExample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Core 1.1 §7.4.4 example:\n got %s\nwant %s", got, want)
	}
	recs, err := Decode(FormatSenMLJSON, MustParsePath("/3/0"), []byte(specDeviceSenMLJSON), structuredRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if !senmlSameRecords(recs, senmlDeviceExample()) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(senmlDeviceExample()))
	}
}

func TestSenMLJSONRFC8428Examples(t *testing.T) {
	var s senmlRawSink
	if err := readSenMLJSON([]byte(rfc8428JSON), &s); err != nil {
		t.Fatal(err)
	}
	checkRFC8428Resolved(t, s.recs)

	// The encoder writes the example's bytes (up to white space); the
	// JSON form leaves out the last record's t of 0.
	pack := rfc8428Pack()
	pack[6].has &^= sfT
	out := []byte{'['}
	for i := range pack {
		if i > 0 {
			out = append(out, ',')
		}
		var err error
		if out, err = appendSenMLJSONRecord(out, &pack[i]); err != nil {
			t.Fatal(err)
		}
	}
	out = append(out, ']')
	if want := senmlCompactJSON(t, rfc8428JSON); !bytes.Equal(out, want) {
		t.Fatalf("RFC 8428 §5.1.2:\n got %s\nwant %s", out, want)
	}

	var types senmlRawSink
	if err := readSenMLJSON([]byte(rfc8428TypesJSON), &types); err != nil {
		t.Fatal(err)
	}
	if len(types.recs) != 4 || types.recs[3].name != "urn:dev:ow:10e2073a01080063:nfc-reader" {
		t.Fatalf("got %+v", types.recs)
	}
	// And as LwM2M values: the same pack with paths as names.
	lw := strings.NewReplacer("urn:dev:ow:10e2073a01080063:", "/32769/0/", `"temp"`, `"7/0"`, `"label"`, `"8/0"`, `"open"`, `"4"`, `"nfc-reader"`, `"3"`).Replace(rfc8428TypesJSON)
	recs, err := Decode(FormatSenMLJSON, Path{}, []byte(lw), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Path: MustParsePath("/32769/0/7/0"), Value: Float(23.1)},
		{Path: MustParsePath("/32769/0/8/0"), Value: String("Machine Room")},
		{Path: MustParsePath("/32769/0/4"), Value: Bool(false)},
		{Path: MustParsePath("/32769/0/3"), Value: Opaque([]byte("hi \n"))},
	}
	if !senmlSameRecords(recs, want) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(want))
	}
}

func TestSenMLJSONRoundTrips(t *testing.T) {
	reg := structuredRegistry(t)
	ts := time.Unix(1732435200, 0).UTC()
	cases := map[string]struct {
		base Path
		recs []Record
	}{
		"device read": {MustParsePath("/3/0"), senmlDeviceExample()},
		"every type":  {MustParsePath("/32769/0"), senmlEveryType()},
		"composite":   {Path{}, senmlComposite10()},
		"time series": {Path{}, []Record{
			{Path: MustParsePath("/3303/0/5700"), Value: Float(22.5), Time: ts},
			{Path: MustParsePath("/3303/0/5700"), Value: Float(22.75), Time: ts.Add(10 * time.Second)},
			{Path: MustParsePath("/3303/0/5700"), Value: Float(23), Time: ts.Add(1500 * time.Millisecond)},
		}},
		"one timed record": {Path{}, []Record{{Path: MustParsePath("/3303/0/5700"), Value: Float(1e21), Time: ts}}},
		"float forms": {MustParsePath("/32769/0/7"), []Record{
			{Path: MustParsePath("/32769/0/7/0"), Value: Float(3)},
			{Path: MustParsePath("/32769/0/7/1"), Value: Float(math.Copysign(0, -1))},
			{Path: MustParsePath("/32769/0/7/2"), Value: Float(1e-300)},
			{Path: MustParsePath("/32769/0/7/3"), Value: Float(math.MaxFloat64)},
		}},
		"empty": {MustParsePath("/3/0"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(FormatSenMLJSON, c.base, c.recs, reg)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("invalid JSON: %s", data)
			}
			back, err := decodeSenMLJSONAt(c.base, data, reg, senmlFixedClock)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if !senmlSameRecords(back, c.recs) {
				t.Fatalf("round trip:\n got %s\nwant %s\n%s", senmlRecordsString(back), senmlRecordsString(c.recs), data)
			}
		})
	}
}

func TestSenMLJSONTyping(t *testing.T) {
	in := `[{"n":"/32769/0/7/0","v":22},{"n":"/32769/0/7/1","v":22.0},{"n":"/32769/0/7/2","v":2.5e1},
		{"n":"/32769/0/2","v":18446744073709551615},{"n":"/32769/0/6","v":-9223372036854775808},
		{"n":"/32769/0/1","vs":"</1>"},{"n":"/32769/0/5","v":1700000000},{"n":"/32769/0/0","vlo":"3:0"},
		{"n":"/32769/0/3","vd":"AAEC_v8"},{"n":"/32769/0/8/0","vs":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}]`
	want := []Value{Float(22), Float(22), Float(25), Uint(math.MaxUint64), Int(math.MinInt64),
		Corelnk("</1>"), TimeUnix(1700000000), ObjlnkValue(Objlnk{3, 0}), Opaque([]byte{0, 1, 2, 0xfe, 0xff}),
		String("a\"\\/\b\f\n\r\té😀")}
	recs, err := Decode(FormatSenMLJSON, Path{}, []byte(in), structuredRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !recs[i].Value.Equal(want[i]) {
			t.Errorf("record %d: got %s, want %s", i, recs[i].Value, want[i])
		}
	}
	// Without a model the wire decides: integral numbers are Integer,
	// others (or written with a fraction) Float; vs String; vd Opaque.
	recs, err = Decode(FormatSenMLJSON, Path{}, []byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []Value{Int(22), Float(22), Float(25), Uint(math.MaxUint64), Int(math.MinInt64), String("</1>"), Int(1700000000)} {
		if !recs[i].Value.Equal(w) {
			t.Errorf("no model, record %d: got %s, want %s", i, recs[i].Value, w)
		}
	}
}

func TestSenMLJSONDecodeErrors(t *testing.T) {
	cases := []struct {
		name, in string
		target   error
		field    string
	}{
		{"empty", ``, ErrMalformed, ""},
		{"white space only", "  \n", ErrMalformed, ""},
		{"object not array", `{"n":"/3/0/9","v":1}`, ErrMalformed, ""},
		{"unterminated", `[{"n":"/3/0/9","v":1}`, ErrMalformed, ""},
		{"trailing garbage", `[{"n":"/3/0/9","v":1}] x`, ErrMalformed, ""},
		{"record not object", `[1]`, ErrMalformed, ""},
		{"v not a number", `[{"n":"/3/0/9","v":"1"}]`, ErrMalformed, "v"},
		{"vs not a string", `[{"n":"/3/0/0","vs":1}]`, ErrMalformed, "vs"},
		{"vb not a boolean", `[{"n":"/3/0/0","vb":1}]`, ErrMalformed, "vb"},
		{"vd not base64", `[{"n":"/3/0/0","vd":"!!"}]`, ErrMalformed, "vd"},
		{"bad number", `[{"n":"/3/0/9","v":01}]`, ErrMalformed, "v"},
		{"number out of range", `[{"n":"/3/0/9","v":1e999}]`, ErrMalformed, "v"},
		{"duplicate field", `[{"n":"/3/0/9","n":"/3/0/9","v":1}]`, ErrMalformed, "n"},
		{"must-understand", `[{"n":"/3/0/9","v":1,"x_":2}]`, ErrMalformed, "x_"},
		{"bad escape", `[{"n":"/3/0/0","vs":"\q"}]`, ErrMalformed, "vs"},
		{"control character", "[{\"n\":\"/3/0/0\",\"vs\":\"a\x01\"}]", ErrMalformed, "vs"},
		{"invalid UTF-8", "[{\"n\":\"/3/0/0\",\"vs\":\"\xc3\x28\"}]", ErrMalformed, "vs"},
		{"bad path", `[{"n":"/3/0/x","v":1}]`, ErrInvalidPath, "n"},
		{"no value", `[{"n":"/3/0/9"}]`, ErrMalformed, "v"},
		{"type mismatch", `[{"n":"/3/0/9","vs":"x"}]`, ErrType, "vs"},
		{"nesting bomb", `[{"x":` + strings.Repeat("[", 100000) + `]}]`, ErrLimit, "x"},
		{"bad literal", `[{"n":"/3/0/9","vb":tru}]`, ErrMalformed, "vb"},
	}
	reg := structuredRegistry(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(FormatSenMLJSON, Path{}, []byte(c.in), reg)
			de := senmlWantDecodeError(t, err, c.target)
			if c.field != "" && de.Field != c.field {
				t.Errorf("field %q, want %q: %v", de.Field, c.field, err)
			}
			if de.Offset < 0 || de.Offset > len(c.in) {
				t.Errorf("offset %d outside the payload: %v", de.Offset, err)
			}
		})
	}
}

func TestSenMLJSONRecordLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i <= MaxRecords; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"n":"/3/0/9","v":1}`)
	}
	b.WriteString("]")
	_, err := Decode(FormatSenMLJSON, Path{}, []byte(b.String()), nil)
	senmlWantDecodeError(t, err, ErrLimit)
}

func TestSenMLJSONPaths(t *testing.T) {
	paths := []Path{MustParsePath("/3/0/0"), MustParsePath("/1/0/1"), MustParsePath("/3303"), MustParsePath("/3/0/6/1")}
	data, err := EncodePaths(FormatSenMLJSON, paths)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"n":"/3/0/0"},{"n":"/1/0/1"},{"n":"/3303"},{"n":"/3/0/6/1"}]`; string(data) != want {
		t.Fatalf("got %s\nwant %s", data, want)
	}
	back, err := DecodePaths(FormatSenMLJSON, data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		if back[i] != paths[i] {
			t.Errorf("path %d: got %s, want %s", i, back[i], paths[i])
		}
	}
	// Core 1.1 §6.3.8 style with a base name.
	back, err = DecodePaths(FormatSenMLJSON, []byte(`[{"bn":"/3/0/","n":"0"},{"n":"9"}]`))
	if err != nil || len(back) != 2 || back[1] != MustParsePath("/3/0/9") {
		t.Fatalf("got %v, %v", back, err)
	}
	_, err = DecodePaths(FormatSenMLJSON, []byte(`[{"n":"/3/0/0","v":1}]`))
	senmlWantDecodeError(t, err, ErrMalformed)
	_, err = DecodePaths(FormatSenMLJSON, []byte(`[{}]`))
	senmlWantDecodeError(t, err, ErrMalformed)
}
