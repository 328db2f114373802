package lwm2m

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DataType is an LwM2M resource data type (Core Appendix C).
type DataType uint8

// The LwM2M data types. TypeNone is the type of executable resources and of
// values whose type is not (yet) known.
const (
	TypeNone DataType = iota
	TypeString
	TypeInteger
	TypeUnsigned
	TypeFloat
	TypeBoolean
	TypeOpaque
	TypeTime
	TypeObjlnk
	TypeCorelnk
)

var typeNames = [...]string{"none", "string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk", "corelnk"}

func (t DataType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// ParseDataType accepts the names used in DDF XML ("String", "Integer",
// "Unsigned Integer", "Float", "Boolean", "Opaque", "Time", "Objlnk",
// "Corelnk", "none" or empty) and this package's own lower-case names.
func ParseDataType(s string) (DataType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return TypeNone, nil
	case "string":
		return TypeString, nil
	case "integer", "int":
		return TypeInteger, nil
	case "unsigned integer", "unsigned", "unsignedinteger", "uint":
		return TypeUnsigned, nil
	case "float":
		return TypeFloat, nil
	case "boolean", "bool":
		return TypeBoolean, nil
	case "opaque":
		return TypeOpaque, nil
	case "time":
		return TypeTime, nil
	case "objlnk":
		return TypeObjlnk, nil
	case "corelnk":
		return TypeCorelnk, nil
	}
	return TypeNone, fmt.Errorf("%w: unknown data type %q", ErrType, s)
}

// Objlnk is an object link value: an object id and an instance id
// (Core Appendix C; MAX_ID:MAX_ID means "no link").
type Objlnk struct {
	ObjectID   uint16
	InstanceID uint16
}

func (l Objlnk) String() string {
	return strconv.Itoa(int(l.ObjectID)) + ":" + strconv.Itoa(int(l.InstanceID))
}

// ParseObjlnk parses "3:0".
func ParseObjlnk(s string) (Objlnk, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return Objlnk{}, fmt.Errorf("%w: objlnk %q is not OBJ:INST", ErrType, s)
	}
	o, err1 := strconv.ParseUint(a, 10, 16)
	i, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return Objlnk{}, fmt.Errorf("%w: objlnk %q is not OBJ:INST", ErrType, s)
	}
	return Objlnk{uint16(o), uint16(i)}, nil
}

// Value is one typed LwM2M value. The zero Value has TypeNone. Build values
// with the constructors (String, Int, …) and read them with the accessors.
type Value struct {
	typ DataType
	num uint64 // integer, unsigned, float bits, bool, time (unix seconds), objlnk
	str string // string, corelnk
	buf []byte // opaque
}

// Constructors for each data type.
func None() Value              { return Value{} }
func String(s string) Value    { return Value{typ: TypeString, str: s} }
func Int(i int64) Value        { return Value{typ: TypeInteger, num: uint64(i)} }
func Uint(u uint64) Value      { return Value{typ: TypeUnsigned, num: u} }
func Float(f float64) Value    { return Value{typ: TypeFloat, num: math.Float64bits(f)} }
func Bool(b bool) Value        { return Value{typ: TypeBoolean, num: b2u(b)} }
func Opaque(b []byte) Value    { return Value{typ: TypeOpaque, buf: b} }
func Time(t time.Time) Value   { return Value{typ: TypeTime, num: uint64(t.Unix())} }
func TimeUnix(sec int64) Value { return Value{typ: TypeTime, num: uint64(sec)} }
func ObjlnkValue(l Objlnk) Value {
	return Value{typ: TypeObjlnk, num: uint64(l.ObjectID)<<16 | uint64(l.InstanceID)}
}
func Corelnk(s string) Value { return Value{typ: TypeCorelnk, str: s} }

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Type is the value's data type.
func (v Value) Type() DataType { return v.typ }

// IsNone reports whether v carries no value.
func (v Value) IsNone() bool { return v.typ == TypeNone }

// Accessors. Each returns the zero value when v is of another type; use
// Type first, or As to convert.
func (v Value) Str() string  { return v.str }
func (v Value) Int() int64   { return int64(v.num) }
func (v Value) Uint() uint64 { return v.num }
func (v Value) Float() float64 {
	if v.typ != TypeFloat {
		return 0
	}
	return math.Float64frombits(v.num)
}
func (v Value) Bool() bool      { return v.typ == TypeBoolean && v.num != 0 }
func (v Value) Bytes() []byte   { return v.buf }
func (v Value) TimeUnix() int64 { return int64(v.num) }
func (v Value) Time() time.Time { return time.Unix(int64(v.num), 0).UTC() }
func (v Value) Objlnk() Objlnk  { return Objlnk{uint16(v.num >> 16), uint16(v.num)} }

// Number returns the value as a float64 for the numeric types (integer,
// unsigned, float, time, and boolean as 0/1); ok is false for the others.
// Charts and roll-ups use it.
func (v Value) Number() (f float64, ok bool) {
	switch v.typ {
	case TypeInteger, TypeTime:
		return float64(int64(v.num)), true
	case TypeUnsigned:
		return float64(v.num), true
	case TypeFloat:
		return math.Float64frombits(v.num), true
	case TypeBoolean:
		return float64(v.num), true
	}
	return 0, false
}

// Equal reports whether two values have the same type and content. Floats
// compare by bits, so NaN equals NaN.
func (v Value) Equal(w Value) bool {
	return v.typ == w.typ && v.num == w.num && v.str == w.str && bytes.Equal(v.buf, w.buf)
}

// Text formats the value as text/plain does (Core §7.4.1): decimal numbers,
// "1"/"0" for booleans, Unix seconds for time, "O:I" for object links and
// base64 for opaque.
func (v Value) Text() string {
	switch v.typ {
	case TypeString, TypeCorelnk:
		return v.str
	case TypeInteger, TypeTime:
		return strconv.FormatInt(int64(v.num), 10)
	case TypeUnsigned:
		return strconv.FormatUint(v.num, 10)
	case TypeFloat:
		return strconv.FormatFloat(math.Float64frombits(v.num), 'g', -1, 64)
	case TypeBoolean:
		if v.num != 0 {
			return "1"
		}
		return "0"
	case TypeOpaque:
		return base64.StdEncoding.EncodeToString(v.buf)
	case TypeObjlnk:
		return v.Objlnk().String()
	}
	return ""
}

func (v Value) String() string {
	if v.typ == TypeNone {
		return "<none>"
	}
	return v.typ.String() + "(" + v.Text() + ")"
}

// Interface returns the value as a plain Go value for JSON and templates:
// string, int64, uint64, float64, bool, []byte, time.Time, or "O:I" for an
// object link; nil for none.
func (v Value) Interface() any {
	switch v.typ {
	case TypeString, TypeCorelnk:
		return v.str
	case TypeInteger:
		return int64(v.num)
	case TypeUnsigned:
		return v.num
	case TypeFloat:
		return math.Float64frombits(v.num)
	case TypeBoolean:
		return v.num != 0
	case TypeOpaque:
		return v.buf
	case TypeTime:
		return v.Time()
	case TypeObjlnk:
		return v.Objlnk().String()
	}
	return nil
}

// MarshalJSON writes the natural JSON form: strings, numbers, booleans,
// opaque as base64, time as RFC 3339, object links as "O:I", none as null.
// Non-finite floats become strings ("NaN", "+Inf", "-Inf").
func (v Value) MarshalJSON() ([]byte, error) {
	if v.typ == TypeFloat {
		f := math.Float64frombits(v.num)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return json.Marshal(strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	return json.Marshal(v.Interface())
}

// ParseText parses text in the form Text writes, for the given type
// (Core §7.4.1). It is what the text/plain decoder and the REST API use.
func ParseText(t DataType, s string) (Value, error) {
	switch t {
	case TypeNone:
		if s != "" {
			return Value{}, fmt.Errorf("%w: executable/none takes no value, got %q", ErrType, s)
		}
		return None(), nil
	case TypeString:
		return String(s), nil
	case TypeCorelnk:
		return Corelnk(s), nil
	case TypeInteger:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an integer", ErrType, s)
		}
		return Int(i), nil
	case TypeUnsigned:
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an unsigned integer", ErrType, s)
		}
		return Uint(u), nil
	case TypeFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not a float", ErrType, s)
		}
		return Float(f), nil
	case TypeBoolean:
		switch strings.TrimSpace(s) {
		case "1", "true":
			return Bool(true), nil
		case "0", "false":
			return Bool(false), nil
		}
		return Value{}, fmt.Errorf("%w: %q is not a boolean (0 or 1)", ErrType, s)
	case TypeTime:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			t, err2 := time.Parse(time.RFC3339, strings.TrimSpace(s))
			if err2 != nil {
				return Value{}, fmt.Errorf("%w: %q is not a time (Unix seconds or RFC 3339)", ErrType, s)
			}
			return Time(t), nil
		}
		return TimeUnix(i), nil
	case TypeOpaque:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return Value{}, fmt.Errorf("%w: opaque value is not base64", ErrType)
		}
		return Opaque(b), nil
	case TypeObjlnk:
		l, err := ParseObjlnk(strings.TrimSpace(s))
		if err != nil {
			return Value{}, err
		}
		return ObjlnkValue(l), nil
	}
	return Value{}, fmt.Errorf("%w: unknown data type %d", ErrType, t)
}

// As converts v to type t where the conversion loses nothing: between the
// numeric types when the number fits, from a string by ParseText, and from
// opaque to string. Decoders of self-describing formats use it to give a
// value the type its object model declares.
func (v Value) As(t DataType) (Value, error) {
	if v.typ == t || t == TypeNone {
		return v, nil
	}
	switch v.typ {
	case TypeString, TypeCorelnk:
		return ParseText(t, v.str)
	case TypeOpaque:
		if t == TypeString || t == TypeCorelnk {
			return Value{typ: t, str: string(v.buf)}, nil
		}
	case TypeInteger, TypeUnsigned, TypeFloat, TypeTime, TypeBoolean:
		return v.convertNumber(t)
	}
	return Value{}, fmt.Errorf("%w: cannot use %s as %s", ErrType, v, t)
}

func (v Value) convertNumber(t DataType) (Value, error) {
	bad := fmt.Errorf("%w: cannot use %s as %s", ErrType, v, t)
	var i int64
	var u uint64
	var f float64
	var intOK, uintOK bool
	switch v.typ {
	case TypeInteger, TypeTime:
		i = int64(v.num)
		f = float64(i)
		intOK, uintOK, u = true, i >= 0, uint64(i)
	case TypeUnsigned:
		u = v.num
		f = float64(u)
		uintOK, intOK, i = true, u <= math.MaxInt64, int64(u)
	case TypeBoolean:
		u, i, f = v.num, int64(v.num), float64(v.num)
		intOK, uintOK = true, true
	case TypeFloat:
		f = math.Float64frombits(v.num)
		if f == math.Trunc(f) && !math.IsInf(f, 0) {
			if f >= math.MinInt64 && f < math.MaxInt64 {
				i, intOK = int64(f), true
			}
			if f >= 0 && f < math.MaxUint64 {
				u, uintOK = uint64(f), true
			}
		}
	}
	switch t {
	case TypeInteger:
		if intOK {
			return Int(i), nil
		}
	case TypeTime:
		if intOK {
			return TimeUnix(i), nil
		}
	case TypeUnsigned:
		if uintOK {
			return Uint(u), nil
		}
	case TypeFloat:
		return Float(f), nil
	case TypeBoolean:
		if uintOK && u <= 1 {
			return Bool(u == 1), nil
		}
	case TypeString:
		return String(v.Text()), nil
	}
	return Value{}, bad
}
