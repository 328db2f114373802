package lwm2m

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAttributes(t *testing.T) {
	cases := []struct {
		q    string
		want Attributes
		out  string // String(); q when empty
	}{
		{"pmin=10&pmax=60", Attributes{PMin: AttrUint(10), PMax: AttrUint(60)}, ""},
		{"gt=50&lt=42.2&st=0.5", Attributes{GT: AttrFloat(50), LT: AttrFloat(42.2), ST: AttrFloat(0.5)}, ""},
		{"?pmax=600&pmin=5", Attributes{PMin: AttrUint(5), PMax: AttrUint(600)}, "pmin=5&pmax=600"},
		{"pmin&gt", Attributes{PMin: UintAttr{State: AttrUnset}, GT: FloatAttr{State: AttrUnset}}, ""},
		{"epmin=1&epmax=30&edge=1&con=0&hqmax=10",
			Attributes{EPMin: AttrUint(1), EPMax: AttrUint(30), Edge: AttrUint(1), Con: AttrUint(0), HQMax: AttrUint(10)}, ""},
		{"gt=-10.5&lt=-20", Attributes{GT: AttrFloat(-10.5), LT: AttrFloat(-20)}, "gt=-10.5&lt=-20"},
		{"gt=1e3", Attributes{GT: AttrFloat(1000)}, "gt=1000"},
		{"", Attributes{}, ""},
	}
	for _, c := range cases {
		got, err := ParseAttributesQuery(c.q)
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q: got %+v", c.q, got)
		}
		out := c.out
		if out == "" {
			out = c.q
		}
		if got.String() != out {
			t.Errorf("%q: String %q, want %q", c.q, got.String(), out)
		}
		again, err := ParseAttributes(got.Queries())
		if err != nil || again != got {
			t.Errorf("%q: reparse %+v %v", c.q, again, err)
		}
	}
}

func TestParseAttributesErrors(t *testing.T) {
	for _, q := range []string{
		"pmin=10&pmin=20",  // twice
		"foo=1",            // unknown
		"pmin=-1",          // negative period
		"pmin=1.5",         // not an integer
		"pmin=+1",          // sign
		"pmin=",            // empty
		"gt=abc",           // not a number
		"gt=0x10",          // hex
		"gt=Inf",           // not finite
		"gt=NaN",           // not a number
		"st=-1",            // st ≥ 0
		"lt=10&gt=5",       // lt < gt
		"lt=5&gt=5",        // lt < gt
		"lt=1&gt=5&st=2",   // lt + 2·st < gt
		"pmin=60&pmax=10",  // pmin ≤ pmax
		"epmin=60&epmax=1", // epmin ≤ epmax
		"edge=2",           // 0 or 1
		"con=5",            // 0 or 1
		"pmin=10&&pmax=20", // empty parameter
	} {
		_, err := ParseAttributesQuery(q)
		if !errors.Is(err, ErrInvalidAttributes) {
			t.Errorf("%q: %v", q, err)
		}
	}
	// Consistency is checked only among attributes that are set.
	if _, err := ParseAttributesQuery("lt=10&gt"); err != nil {
		t.Errorf("unset gt: %v", err)
	}
}

func TestAttributesValidateFor(t *testing.T) {
	reg := NewRegistry()
	typ := func(p string) (Path, DataType, bool) {
		pp := MustParsePath(p)
		t, ok := typeOf(reg, pp)
		return pp, t, ok
	}
	ok := []struct {
		q, path string
	}{
		{"pmin=10", "/3"},
		{"pmin=10&pmax=20", "/3/0"},
		{"gt=20", "/3303/0/5700"},
		{"st=1", "/3/0/7/0"},
		{"edge=1", "/3342/0/5500"},
		{"gt=20", "/4242/0/1"}, // unknown: type not checked
	}
	for _, c := range ok {
		a, _ := ParseAttributesQuery(c.q)
		p, tp, known := typ(c.path)
		if err := a.ValidateFor(p, tp, known); err != nil {
			t.Errorf("%s on %s: %v", c.q, c.path, err)
		}
	}
	bad := []struct {
		q, path string
	}{
		{"pmin=10", "/"},
		{"gt=20", "/3303/0"},
		{"gt=20", "/3/0/0"}, // string resource
		{"edge=1", "/3303/0/5700"},
		{"edge=0", "/3342"},
	}
	for _, c := range bad {
		a, _ := ParseAttributesQuery(c.q)
		p, tp, known := typ(c.path)
		if err := a.ValidateFor(p, tp, known); !errors.Is(err, ErrInvalidAttributes) {
			t.Errorf("%s on %s: %v", c.q, c.path, err)
		}
	}
}

func TestAttributesMerge(t *testing.T) {
	have := Attributes{PMin: AttrUint(10), PMax: AttrUint(60), GT: AttrFloat(5)}
	update, _ := ParseAttributesQuery("pmax=120&gt&lt=1")
	got := have.Merge(update)
	want := Attributes{PMin: AttrUint(10), PMax: AttrUint(120), LT: AttrFloat(1)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if !(Attributes{}).IsZero() || got.IsZero() {
		t.Error("IsZero")
	}
}

func FuzzParseAttributes(f *testing.F) {
	for _, s := range []string{
		"pmin=10&pmax=60", "gt=50&lt=42.2&st=0.5", "pmin&gt", "epmin=1&epmax=30&edge=1&con=0&hqmax=10",
		"foo=1", "gt=1e3", "lt=1&gt=5&st=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		a, err := ParseAttributesQuery(q)
		if err != nil {
			if !errors.Is(err, ErrInvalidAttributes) {
				t.Fatalf("%q: error %v is not ErrInvalidAttributes", q, err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("%q parsed but does not validate: %v", q, err)
		}
		again, err := ParseAttributesQuery(a.String())
		if err != nil || again != a {
			t.Fatalf("%q → %q → %+v %v", q, a.String(), again, err)
		}
		for _, v := range []FloatAttr{a.GT, a.LT, a.ST} {
			if v.IsSet() && strings.ContainsAny(formatAttrFloat(v.Value), "eE") {
				t.Fatalf("%q formats %v with an exponent", q, v.Value)
			}
		}
	})
}
