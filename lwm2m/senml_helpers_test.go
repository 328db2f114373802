package lwm2m

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// Helpers shared by the SenML, LwM2M JSON and LwM2M CBOR tests.

// structuredRegistry is a small, self-contained model set for the tests of
// the structured formats, so that they do not depend on the built-in
// models: the Device object's resources used in the spec examples, the
// IPSO temperature object, and a test object with one resource of every
// remaining type.
func structuredRegistry(t testing.TB) *Registry {
	t.Helper()
	res := func(id uint16, typ DataType, multi bool) *ResourceModel {
		return &ResourceModel{ID: id, Type: typ, Multiple: multi, Operations: OpRead | OpWrite}
	}
	obj := func(id uint16, rs ...*ResourceModel) *ObjectModel {
		m := &ObjectModel{ID: id, Resources: map[uint16]*ResourceModel{}}
		for _, r := range rs {
			m.Resources[r.ID] = r
		}
		return m
	}
	reg := NewEmptyRegistry()
	err := reg.Add(
		obj(3, res(0, TypeString, false), res(1, TypeString, false), res(2, TypeString, false),
			res(3, TypeString, false), res(4, TypeNone, false), res(6, TypeInteger, true),
			res(7, TypeInteger, true), res(8, TypeInteger, true), res(9, TypeInteger, false),
			res(10, TypeInteger, false), res(11, TypeInteger, true), res(13, TypeTime, false),
			res(14, TypeString, false), res(15, TypeString, false), res(16, TypeString, false)),
		obj(3303, res(5700, TypeFloat, false), res(5701, TypeString, false), res(5601, TypeFloat, false)),
		obj(32769, res(0, TypeObjlnk, false), res(1, TypeCorelnk, false), res(2, TypeUnsigned, false),
			res(3, TypeOpaque, false), res(4, TypeBoolean, false), res(5, TypeTime, false),
			res(6, TypeInteger, false), res(7, TypeFloat, true), res(8, TypeString, true)),
	)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// senmlTestNow is the fixed clock relative SenML times resolve against.
var senmlTestNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func senmlFixedClock() time.Time { return senmlTestNow }

func senmlHex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// senmlSameValue is Value.Equal, except that any two NaNs are the same.
func senmlSameValue(a, b Value) bool {
	if a.Type() == TypeFloat && b.Type() == TypeFloat && math.IsNaN(a.Float()) && math.IsNaN(b.Float()) {
		return true
	}
	return a.Equal(b)
}

func senmlSameRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || !senmlSameValue(a[i].Value, b[i].Value) || !a[i].Time.Equal(b[i].Time) {
			return false
		}
	}
	return true
}

func senmlRecordsString(rs []Record) string {
	var sb strings.Builder
	for _, r := range rs {
		sb.WriteString(r.Path.String() + "=" + r.Value.String())
		if !r.Time.IsZero() {
			sb.WriteString("@" + r.Time.Format(time.RFC3339Nano))
		}
		sb.WriteString(" ")
	}
	return sb.String()
}

// senmlWantDecodeError checks that err is a *DecodeError that wraps target.
func senmlWantDecodeError(t *testing.T, err error, target error) *DecodeError {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error wrapping %v, got none", target)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("want a *DecodeError, got %T: %v", err, err)
	}
	if !errors.Is(err, target) {
		t.Fatalf("want an error wrapping %v, got %v", target, err)
	}
	return de
}

// senmlDeviceExample is the Read of /3/0 that Core 1.1 §7.4.4 and §7.4.5 show
// (and, in LwM2M JSON, Core 1.0 §6.4.4): the Device object instance with
// multiple-instance resources 6, 7, 8 and 11.
func senmlDeviceExample() []Record {
	p := MustParsePath
	return []Record{
		{Path: p("/3/0/0"), Value: String("Open Mobile Alliance")},
		{Path: p("/3/0/1"), Value: String("Lightweight M2M Client")},
		{Path: p("/3/0/2"), Value: String("345000123")},
		{Path: p("/3/0/3"), Value: String("1.0")},
		{Path: p("/3/0/6/0"), Value: Int(1)},
		{Path: p("/3/0/6/1"), Value: Int(5)},
		{Path: p("/3/0/7/0"), Value: Int(3800)},
		{Path: p("/3/0/7/1"), Value: Int(5000)},
		{Path: p("/3/0/8/0"), Value: Int(125)},
		{Path: p("/3/0/8/1"), Value: Int(900)},
		{Path: p("/3/0/9"), Value: Int(100)},
		{Path: p("/3/0/10"), Value: Int(15)},
		{Path: p("/3/0/11/0"), Value: Int(0)},
		{Path: p("/3/0/13"), Value: TimeUnix(1367491215)},
		{Path: p("/3/0/14"), Value: String("+02:00")},
		{Path: p("/3/0/16"), Value: String("U")},
	}
}

// senmlEveryType has one record of each data type, in the test object 32769,
// with a multiple-instance resource.
func senmlEveryType() []Record {
	p := MustParsePath
	return []Record{
		{Path: p("/32769/0/0"), Value: ObjlnkValue(Objlnk{3, 0})},
		{Path: p("/32769/0/1"), Value: Corelnk("</3/0>;rt=\"oma.device\"")},
		{Path: p("/32769/0/2"), Value: Uint(math.MaxUint64)},
		{Path: p("/32769/0/3"), Value: Opaque([]byte{0, 1, 2, 0xfe, 0xff})},
		{Path: p("/32769/0/4"), Value: Bool(true)},
		{Path: p("/32769/0/5"), Value: TimeUnix(1700000000)},
		{Path: p("/32769/0/6"), Value: Int(math.MinInt64)},
		{Path: p("/32769/0/7/0"), Value: Float(22.5)},
		{Path: p("/32769/0/7/1"), Value: Float(-1e-7)},
		{Path: p("/32769/0/7/2"), Value: Float(3)},
		{Path: p("/32769/0/8/0"), Value: String("quote \" backslash \\ newline \n ünïcødé")},
		{Path: p("/32769/0/8/1"), Value: String("")},
	}
}

// senmlComposite10 is a 10-resource composite as a Zephyr device sends it with
// Send or an Observe-Composite notification: several objects, with
// timestamps.
func senmlComposite10() []Record {
	p := MustParsePath
	ts := time.Unix(1732435200, 0).UTC()
	return []Record{
		{Path: p("/3303/0/5700"), Value: Float(22.5), Time: ts},
		{Path: p("/3303/1/5700"), Value: Float(-4.25), Time: ts},
		{Path: p("/3304/0/5700"), Value: Float(41.3), Time: ts},
		{Path: p("/3315/0/5700"), Value: Float(1013.2), Time: ts},
		{Path: p("/3/0/9"), Value: Int(87), Time: ts},
		{Path: p("/3/0/7/0"), Value: Int(3800), Time: ts},
		{Path: p("/3/0/20"), Value: Int(1), Time: ts},
		{Path: p("/4/0/2"), Value: Int(-71), Time: ts},
		{Path: p("/4/0/3"), Value: Int(8), Time: ts},
		{Path: p("/6/0/0"), Value: Float(52.52), Time: ts.Add(-30 * time.Second)},
	}
}
