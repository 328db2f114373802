package lwm2m

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// Core 1.0 §6.4.4: the Read of /3/0 in the LwM2M JSON format.
const specDeviceLwM2MJSON = `{"bn":"/3/0/",
"e":[
{"n":"0","sv":"Open Mobile Alliance"},
{"n":"1","sv":"Lightweight M2M Client"},
{"n":"2","sv":"345000123"},
{"n":"3","sv":"1.0"},
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
{"n":"14","sv":"+02:00"},
{"n":"16","sv":"U"}]
}`

func TestLwM2MJSONSpecDeviceRead(t *testing.T) {
	want := senmlCompactJSON(t, specDeviceLwM2MJSON)
	got, err := Encode(FormatLwM2MJSON, MustParsePath("/3/0"), senmlDeviceExample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Core 1.0 §6.4.4 example:\n got %s\nwant %s", got, want)
	}
	recs, err := Decode(FormatLwM2MJSON, MustParsePath("/3/0"), []byte(specDeviceLwM2MJSON), structuredRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if !senmlSameRecords(recs, senmlDeviceExample()) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(senmlDeviceExample()))
	}
}

func TestLwM2MJSONTimestamps(t *testing.T) {
	// Core 1.0 §6.4.4: a notification with historical values of one
	// resource; t is relative to bt, and a negative resolved time is
	// relative to now.
	in := `{"e":[{"n":"1","v":22.4,"t":-5},{"n":"1","v":22.9,"t":-30},{"n":"1","v":24.1,"t":-50}],"bn":"/3303/0/"}`
	recs, err := decodeLwM2MJSONAt(MustParsePath("/3303/0"), []byte(in), nil, senmlFixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || !recs[1].Time.Equal(senmlTestNow.Add(-30*time.Second)) || recs[2].Value.Float() != 24.1 {
		t.Fatalf("got %s", senmlRecordsString(recs))
	}
	in = `{"bn":"/3303/0/5700","bt":1732435200,"e":[{"v":22.5},{"v":23.5,"t":60}]}`
	recs, err = decodeLwM2MJSONAt(Path{}, []byte(in), nil, senmlFixedClock)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1732435200, 0).UTC()
	want := []Record{
		{Path: MustParsePath("/3303/0/5700"), Value: Float(22.5), Time: ts},
		{Path: MustParsePath("/3303/0/5700"), Value: Float(23.5), Time: ts.Add(time.Minute)},
	}
	if !senmlSameRecords(recs, want) {
		t.Fatalf("got %s\nwant %s", senmlRecordsString(recs), senmlRecordsString(want))
	}
	out, err := Encode(FormatLwM2MJSON, MustParsePath("/3303/0/5700"), want, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"bn":"/3303/0/5700","bt":1732435200,"e":[{"v":22.5},{"v":23.5,"t":60}]}` {
		t.Fatalf("encoded %s", out)
	}
}

func TestLwM2MJSONRoundTrips(t *testing.T) {
	reg := structuredRegistry(t)
	cases := map[string]struct {
		base Path
		recs []Record
	}{
		"device read": {MustParsePath("/3/0"), senmlDeviceExample()},
		"every type":  {MustParsePath("/32769/0"), senmlEveryType()},
		"object":      {MustParsePath("/32769"), senmlEveryType()},
		"root":        {Path{}, senmlComposite10()},
		"single":      {MustParsePath("/3/0/0"), []Record{{Path: MustParsePath("/3/0/0"), Value: String("x")}}},
		"instances": {MustParsePath("/3/0/6"), []Record{
			{Path: MustParsePath("/3/0/6/0"), Value: Int(1)}, {Path: MustParsePath("/3/0/6/1"), Value: Int(5)}}},
		"empty": {MustParsePath("/3/0"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(FormatLwM2MJSON, c.base, c.recs, reg)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("invalid JSON: %s", data)
			}
			back, err := decodeLwM2MJSONAt(c.base, data, reg, senmlFixedClock)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if !senmlSameRecords(back, c.recs) {
				t.Fatalf("round trip:\n got %s\nwant %s\n%s", senmlRecordsString(back), senmlRecordsString(c.recs), data)
			}
		})
	}
}

func TestLwM2MJSONDecodeErrors(t *testing.T) {
	cases := []struct {
		name, in string
		target   error
		field    string
	}{
		{"empty", ``, ErrMalformed, ""},
		{"array", `[]`, ErrMalformed, ""},
		{"no entries", `{"bn":"/3/0/"}`, ErrMalformed, "e"},
		{"entries not array", `{"e":{}}`, ErrMalformed, "e"},
		{"bn twice", `{"bn":"/3/0/","bn":"/3/0/","e":[]}`, ErrMalformed, "bn"},
		{"bn not a string", `{"bn":3,"e":[]}`, ErrMalformed, "bn"},
		{"bt not a number", `{"bt":"x","e":[]}`, ErrMalformed, "bt"},
		{"trailing", `{"e":[]} {}`, ErrMalformed, ""},
		{"entry not object", `{"bn":"/3/0/","e":[1]}`, ErrMalformed, ""},
		{"sv not a string", `{"bn":"/3/0/","e":[{"n":"0","sv":1}]}`, ErrMalformed, "sv"},
		{"bv not a boolean", `{"bn":"/3/0/","e":[{"n":"0","bv":"true"}]}`, ErrMalformed, "bv"},
		{"bad objlnk", `{"bn":"/3/0/","e":[{"n":"0","ov":"3-0"}]}`, ErrType, "ov"},
		{"type mismatch", `{"bn":"/3/0/","e":[{"n":"9","sv":"many"}]}`, ErrType, "sv"},
		{"bad path", `{"bn":"/3/0/","e":[{"n":"a","v":1}]}`, ErrInvalidPath, "n"},
		{"outside base", `{"bn":"/3/1/","e":[{"n":"9","v":1}]}`, ErrInvalidPath, "n"},
		{"no value", `{"bn":"/3/0/","e":[{"n":"9"}]}`, ErrMalformed, "v"},
		{"two values", `{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}`, ErrMalformed, "v"},
		{"nesting bomb", `{"x":` + strings.Repeat("[", 10000) + `,"e":[]}`, ErrLimit, "x"},
	}
	reg := structuredRegistry(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(FormatLwM2MJSON, MustParsePath("/3/0"), []byte(c.in), reg)
			de := senmlWantDecodeError(t, err, c.target)
			if c.field != "" && de.Field != c.field {
				t.Errorf("field %q, want %q: %v", de.Field, c.field, err)
			}
		})
	}
}

func TestLwM2MJSONEncodeErrors(t *testing.T) {
	p := MustParsePath
	for name, recs := range map[string][]Record{
		"no value":         {{Path: p("/3/0/4"), Value: None()}},
		"infinity":         {{Path: p("/3303/0/5700"), Value: Float(math.Inf(1))}},
		"NaN":              {{Path: p("/3303/0/5700"), Value: Float(math.NaN())}},
		"instance path":    {{Path: p("/3/0"), Value: Int(1)}},
		"time before 1978": {{Path: p("/3/0/9"), Value: Int(1), Time: time.Unix(5, 0)}},
	} {
		if _, err := Encode(FormatLwM2MJSON, Path{}, recs, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
