package lwm2m

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// CBOR, application/cbor (60): Core 1.1 §7.4.6. The payload is one resource
// or resource instance value as a plain CBOR data item (RFC 8949):
//
//	String, Corelnk  text string (major type 3)
//	Integer          unsigned or negative integer (major types 0, 1)
//	Unsigned Integer unsigned integer (major type 0)
//	Float            floating point (major type 7), shortest exact width
//	Boolean          false / true (major type 7)
//	Opaque           byte string (major type 2)
//	Time             tag 1 (epoch seconds, RFC 8949 §3.4.2) with an integer
//	Objlnk           text string "O:I"
//
// Decoding is lenient where clients differ: Time also as an untagged number,
// as tag 0 with an RFC 3339 string (Zephyr writes that), or as a string;
// object links may carry the trailing NUL Zephyr's encoder includes.

// cbor60Enc and cbor60Dec are immutable after creation.
var (
	cbor60Enc = mustCBOR60Enc()
	cbor60Dec = mustCBOR60Dec()
)

func mustCBOR60Enc() cbor.EncMode {
	em, err := cbor.EncOptions{
		ShortestFloat: cbor.ShortestFloat16,
		NaNConvert:    cbor.NaNConvertPreserveSignal,
		InfConvert:    cbor.InfConvertFloat16,
	}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}

func mustCBOR60Dec() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  MaxDepth,
		MaxArrayElements: 16, // a single value has no arrays or maps;
		MaxMapPairs:      16, // these are the smallest limits allowed
		IntDec:           cbor.IntDecConvertNone,
		TimeTagToAny:     cbor.TimeTagToTime,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

func encodeCBOR(base Path, recs []Record) ([]byte, error) {
	r, err := singleRecord(FormatCBOR, base, recs)
	if err != nil {
		return nil, err
	}
	v := r.Value
	var x any
	switch v.Type() {
	case TypeString, TypeCorelnk:
		if !utf8.ValidString(v.Str()) {
			return nil, fmt.Errorf("%w: %s: string is not UTF-8, which a CBOR text string must be", ErrType, r.Path)
		}
		x = v.Str()
	case TypeInteger:
		x = v.Int()
	case TypeUnsigned:
		x = v.Uint()
	case TypeFloat:
		x = v.Float()
	case TypeBoolean:
		x = v.Bool()
	case TypeOpaque:
		b := v.Bytes()
		if b == nil {
			b = []byte{}
		}
		x = b
	case TypeTime:
		x = cbor.Tag{Number: 1, Content: v.TimeUnix()}
	case TypeObjlnk:
		x = v.Objlnk().String()
	default:
		return nil, fmt.Errorf("%w: %s: no value to write as CBOR", ErrType, r.Path)
	}
	return cbor60Enc.Marshal(x)
}

// decodeCBOR types the value by the model; without one it keeps the CBOR
// type: integers that fit int64 as Integer, larger ones as Unsigned, tag 0/1
// as Time, byte strings as Opaque, null as None.
func decodeCBOR(base Path, data []byte, reg *Registry) ([]Record, error) {
	if err := singlePath(FormatCBOR, base); err != nil {
		return nil, err
	}
	var x any
	if err := cbor60Dec.Unmarshal(data, &x); err != nil {
		return nil, decodeErr(FormatCBOR, 0, -1, base.String(), "%v", err)
	}
	v, err := cbor60Value(x)
	if err != nil {
		return nil, &DecodeError{Format: FormatCBOR, Offset: 0, Record: -1, Field: base.String(), Err: err}
	}
	if t, ok := typeOf(reg, base); ok && t != TypeNone && !v.IsNone() && v.Type() != t {
		if t == TypeObjlnk && v.Type() == TypeString {
			v = String(strings.TrimRight(v.Str(), "\x00"))
		}
		if (t == TypeString || t == TypeCorelnk) && v.Type() == TypeOpaque && !utf8.Valid(v.Bytes()) {
			return nil, &DecodeError{Format: FormatCBOR, Offset: 0, Record: -1, Field: base.String(),
				Err: fmt.Errorf("%w: byte string for a %s resource is not UTF-8", ErrType, t)}
		}
		if v, err = v.As(t); err != nil {
			return nil, &DecodeError{Format: FormatCBOR, Offset: 0, Record: -1, Field: base.String(), Err: err}
		}
	}
	return []Record{{Path: base, Value: v}}, nil
}

// cbor60Value maps a decoded CBOR item to a Value of its natural type.
func cbor60Value(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return None(), nil
	case uint64:
		if x <= math.MaxInt64 {
			return Int(int64(x)), nil
		}
		return Uint(x), nil
	case int64:
		return Int(x), nil
	case float64:
		return Float(x), nil
	case bool:
		return Bool(x), nil
	case string:
		return String(x), nil
	case []byte:
		return Opaque(x), nil
	case time.Time:
		return Time(x), nil
	case big.Int:
		return Value{}, fmt.Errorf("%w: integer %s does not fit 64 bits", ErrType, x.String())
	case *big.Int:
		return Value{}, fmt.Errorf("%w: integer %s does not fit 64 bits", ErrType, x.String())
	case []any:
		return Value{}, fmt.Errorf("%w: an array is not a single value", ErrMalformed)
	case map[any]any:
		return Value{}, fmt.Errorf("%w: a map is not a single value", ErrMalformed)
	case cbor.Tag:
		return Value{}, fmt.Errorf("%w: unexpected tag %d", ErrMalformed, x.Number)
	}
	return Value{}, fmt.Errorf("%w: unexpected CBOR item %T", ErrMalformed, x)
}
