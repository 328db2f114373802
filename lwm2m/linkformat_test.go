package lwm2m

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseLinksRFC6690(t *testing.T) {
	// RFC 6690 §5, first example.
	in := `</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor"`
	links, err := ParseLinks([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Link{
		{Target: "/sensors/temp", Params: []LinkParam{{Name: "rt", Value: "temperature-c", Quoted: true}, {Name: "if", Value: "sensor", Quoted: true}}},
		{Target: "/sensors/light", Params: []LinkParam{{Name: "rt", Value: "light-lux", Quoted: true}, {Name: "if", Value: "sensor", Quoted: true}}},
	}
	if !reflect.DeepEqual(links, want) {
		t.Fatalf("got %+v", links)
	}
	if out := string(FormatLinks(links)); out != in {
		t.Errorf("format %s", out)
	}
	// RFC 6690 §5: a relation with a ptoken, quoted strings with escapes and
	// separators inside them, a bare parameter.
	in = `</t>;anchor="/sensors/temp";rel="describedby";title="a \"b\", c;d";obs;sz=1280`
	links, err = ParseLinks([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := links[0].Param("title"); v != `a "b", c;d` {
		t.Errorf("title %q", v)
	}
	if p := links[0].Params[3]; p.Name != "obs" || !p.NoValue {
		t.Errorf("obs %+v", p)
	}
	if v, _ := links[0].Param("sz"); v != "1280" {
		t.Errorf("sz %q", v)
	}
	if out := string(FormatLinks(links)); out != in {
		t.Errorf("format %s", out)
	}
}

func TestParseLinksTolerance(t *testing.T) {
	links, err := ParseLinks([]byte(" </1/0> ,\n\t</3/0> ; ver = 1.1 ,</5>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 3 || links[1].Target != "/3/0" || links[1].Params[0].Value != "1.1" {
		t.Fatalf("%+v", links)
	}
	if links, err := ParseLinks([]byte("  ")); err != nil || len(links) != 0 {
		t.Fatalf("empty: %v %v", links, err)
	}
}

func TestParseLinksErrors(t *testing.T) {
	for _, c := range []struct {
		in     string
		offset int
		record int
		field  string
	}{
		{"/3/0", 0, 0, "target"},
		{"</3/0", 0, 0, "target"},
		{"</3/0>,", 7, 1, "target"},
		{"</3/0>;", 7, 0, "parameter"},
		{"</3/0>;=1", 7, 0, "parameter"},
		{`</3/0>;rt="x`, 10, 0, "parameter"},
		{`</3/0>;rt="x\`, 10, 0, "parameter"},
		{"</3/0> </4/0>", 7, 1, "separator"},
		{"</1/0>,</3/0>x", 13, 2, "separator"},
		{"</3 0>", 0, 0, "target"},
	} {
		_, err := ParseLinks([]byte(c.in))
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if de.Offset != c.offset || de.Record != c.record || de.Field != c.field || de.Format != FormatLinkFormat {
			t.Errorf("%q: offset %d record %d field %q (%v), want %d %d %q", c.in, de.Offset, de.Record, de.Field, err, c.offset, c.record, c.field)
		}
	}
}

// Register payloads in the forms of Core §6.2.1 (Register), 1.0 and 1.1
// clients, Zephyr's, and the alternate root path.
func TestRegisterPayload(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want RegisterPayload
		out  string // Format of the parsed payload; in when empty
	}{
		{
			name: "1.0 objects and instances",
			in:   "</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>",
			want: RegisterPayload{RootPath: "/", Objects: []RegisteredObject{
				{ID: 1, Instances: []uint16{0, 1}}, {ID: 2, Instances: []uint16{0, 1, 2, 3, 4}},
				{ID: 3, Instances: []uint16{0}}, {ID: 4, Instances: []uint16{0}}, {ID: 5}}},
		},
		{
			name: "alternate root path",
			in:   `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/101>,</lwm2m/1/102>,</lwm2m/2/0>,</lwm2m/3/0>,</lwm2m/5>`,
			want: RegisterPayload{RootPath: "/lwm2m", Objects: []RegisteredObject{
				{ID: 1, Instances: []uint16{101, 102}}, {ID: 2, Instances: []uint16{0}}, {ID: 3, Instances: []uint16{0}}, {ID: 5}}},
		},
		{
			name: "1.1 with content formats and versions",
			in:   `</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</3303/0>,</3303/1>,</19>`,
			want: RegisterPayload{RootPath: "/", ContentFormats: []Format{60, 110, 112, 11542, 11543}, Objects: []RegisteredObject{
				{ID: 1, Version: "1.1", Instances: []uint16{0}}, {ID: 3, Version: "1.1", Instances: []uint16{0}},
				{ID: 19}, {ID: 3303, Instances: []uint16{0, 1}}}},
			out: `</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</19>,</3303/0>,</3303/1>`,
		},
		{
			name: "1.0 JSON support, root link without rt",
			in:   "</>;ct=11543,</1/0>,</3/0>",
			want: RegisterPayload{RootPath: "/", ContentFormats: []Format{11543}, Objects: []RegisteredObject{
				{ID: 1, Instances: []uint16{0}}, {ID: 3, Instances: []uint16{0}}}},
			out: `</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>`,
		},
		{
			name: "sloppy client: spaces, no leading slash, duplicates, foreign links",
			in:   `</>;rt="oma.lwm2m";ct=110, <3/0>, </3/0>, </1/0>, </foo/bar>, </3/0/1>`,
			want: RegisterPayload{RootPath: "/", ContentFormats: []Format{110}, Objects: []RegisteredObject{
				{ID: 1, Instances: []uint16{0}}, {ID: 3, Instances: []uint16{0}}}},
			out: `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRegisterPayload([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
			out := c.out
			if out == "" {
				out = c.in
			}
			if f := string(got.Format()); f != out {
				t.Errorf("format %s\n  want %s", f, out)
			}
			again, err := ParseRegisterPayload(got.Format())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("reparse %+v %v", again, err)
			}
		})
	}
	rp, _ := ParseRegisterPayload([]byte(cases[2].in))
	if o, ok := rp.Object(3303); !ok || len(o.Instances) != 2 {
		t.Errorf("Object(3303) %+v %v", o, ok)
	}
	if _, ok := rp.Object(4); ok {
		t.Error("Object(4) found")
	}
	if ps := rp.Paths(); len(ps) != 5 || ps[2] != NewPath(19) || ps[4] != NewPath(3303, 1) {
		t.Errorf("Paths %v", ps)
	}
	for _, bad := range []string{`</>;ct=json,</3/0>`, `</3>;ver=one,</3/0>`, `</3/0`} {
		if _, err := ParseRegisterPayload([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestDiscover(t *testing.T) {
	// A Discover answer on /3 with attributes at every level (Core §6.3,
	// "Discover"), and Bootstrap-Discover's root link and ssid/uri.
	in := `</3>;ver=1.1,</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/6>;dim=2,</3/0/7>;dim=2;gt=50;lt=42.2;st=0.5,</3/0/7/0>;epmin=1;epmax=5,</3/0/13>;con=1;hqmax=3,</3/0/16>`
	links, err := ParseDiscover([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 8 {
		t.Fatalf("%d links", len(links))
	}
	want7 := DiscoverLink{Path: NewPath(3, 0, 7), Dim: AttrUint(2),
		Attrs: Attributes{GT: AttrFloat(50), LT: AttrFloat(42.2), ST: AttrFloat(0.5)}}
	if !reflect.DeepEqual(links[4], want7) {
		t.Errorf("/3/0/7: %+v", links[4])
	}
	if links[0].Version != "1.1" || links[1].Attrs.PMin != AttrUint(10) || links[1].Attrs.PMax != AttrUint(60) ||
		links[5].Path != NewPath(3, 0, 7, 0) || links[5].Attrs.EPMax != AttrUint(5) || links[6].Attrs.Con != AttrUint(1) {
		t.Errorf("%+v", links)
	}
	if out := string(FormatDiscover(links)); out != in {
		t.Errorf("format %s", out)
	}

	bs := `</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://lwm2m.example.com:5684",</0/1>,</1/0>;ssid=101,</3/0>`
	links, err = ParseDiscover([]byte(bs))
	if err != nil {
		t.Fatal(err)
	}
	if !links[0].Path.IsRoot() || links[0].Other[0].Name != "lwm2m" || links[1].SSID != AttrUint(101) ||
		links[1].URI != "coaps://lwm2m.example.com:5684" {
		t.Errorf("%+v", links)
	}
	if out := string(FormatDiscover(links)); out != bs {
		t.Errorf("format %s", out)
	}

	for _, bad := range []string{
		`</3/x>`, `</3/0>;pmin=-1`, `</3/0>;pmin`, `</3/0>;dim=x`, `</3>;ver=1`, `</3/0/7>;gt=1;lt=2`,
		`</1/2/3/4/5>`,
	} {
		_, err := ParseDiscover([]byte(bad))
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func FuzzParseLinks(f *testing.F) {
	for _, s := range []string{
		`</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor"`,
		`</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</1>;ver=1.1,</1/0>,</3/0>,</5>`,
		`</lwm2m>;rt="oma.lwm2m",</lwm2m/1/101>,</lwm2m/3/0>`,
		`</3/0/7>;dim=2;gt=50;lt=42.2;st=0.5,</3/0/7/0>`,
		`</t>;title="a \"b\", c;d";obs`,
		``, `<`, `</3/0>;`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		links, err := ParseLinks(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		out := FormatLinks(links)
		again, err := ParseLinks(out)
		if err != nil {
			t.Fatalf("reparse %q: %v", out, err)
		}
		if len(again) != len(links) {
			t.Fatalf("%q → %q: %d links, then %d", data, out, len(links), len(again))
		}
		for i := range links {
			a, b := links[i], again[i]
			if a.Target != b.Target || len(a.Params) != len(b.Params) {
				t.Fatalf("link %d: %+v → %+v", i, a, b)
			}
			for j := range a.Params {
				pa, pb := a.Params[j], b.Params[j]
				if pa.Name != pb.Name || pa.Value != pb.Value || pa.NoValue != pb.NoValue {
					t.Fatalf("link %d param %d: %+v → %+v", i, j, pa, pb)
				}
			}
		}
		// The LwM2M layers take whatever parses without panicking.
		if rp, err := ParseRegisterPayload(data); err == nil {
			if _, err := ParseRegisterPayload(rp.Format()); err != nil {
				t.Fatalf("register payload %q formats to %q: %v", data, rp.Format(), err)
			}
		}
		if dl, err := ParseDiscover(data); err == nil {
			if _, err := ParseDiscover(FormatDiscover(dl)); err != nil {
				t.Fatalf("discover %q formats to %q: %v", data, FormatDiscover(dl), err)
			}
		}
	})
}
