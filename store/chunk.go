package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/flownexus/flownexus/lwm2m"
)

// A chunk packs the readings of one series within one time bucket into a
// BLOB, so the clustered index grows by one row per series per bucket.
//
// Layout (version 1):
//
//	byte     version (1)
//	byte     lwm2m.DataType, the same for every reading of the chunk
//	uvarint  n, the number of readings, at least 1
//	n ×      timestamp, ms: the first as a zigzag varint, then deltas
//	n ×      value, by type:
//	           integer, time           zigzag varint delta from the previous
//	           unsigned, objlnk        zigzag varint delta (two's complement)
//	           float                   8 bytes little-endian IEEE 754 bits
//	           boolean                 1 byte, 0 or 1
//	           string, corelnk, opaque uvarint length, bytes
//	           none                    nothing
const chunkVersion = 1

// errChunk reports a malformed chunk BLOB.
var errChunk = errors.New("malformed chunk")

// point is one reading: Unix milliseconds and a value.
type point struct {
	t int64
	v lwm2m.Value
}

// valueBits returns the numeric payload of v as stored in the "num"
// columns and in chunks.
func valueBits(v lwm2m.Value) uint64 {
	switch v.Type() {
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		return uint64(v.Int())
	case lwm2m.TypeUnsigned:
		return v.Uint()
	case lwm2m.TypeFloat:
		return math.Float64bits(v.Float())
	case lwm2m.TypeBoolean:
		if v.Bool() {
			return 1
		}
		return 0
	case lwm2m.TypeObjlnk:
		l := v.Objlnk()
		return uint64(l.ObjectID)<<16 | uint64(l.InstanceID)
	}
	return 0
}

// valueFrom rebuilds a value from its stored parts.
func valueFrom(t lwm2m.DataType, num uint64, txt string, blb []byte) lwm2m.Value {
	switch t {
	case lwm2m.TypeString:
		return lwm2m.String(txt)
	case lwm2m.TypeCorelnk:
		return lwm2m.Corelnk(txt)
	case lwm2m.TypeInteger:
		return lwm2m.Int(int64(num))
	case lwm2m.TypeTime:
		return lwm2m.TimeUnix(int64(num))
	case lwm2m.TypeUnsigned:
		return lwm2m.Uint(num)
	case lwm2m.TypeFloat:
		return lwm2m.Float(math.Float64frombits(num))
	case lwm2m.TypeBoolean:
		return lwm2m.Bool(num != 0)
	case lwm2m.TypeObjlnk:
		return lwm2m.ObjlnkValue(lwm2m.Objlnk{ObjectID: uint16(num >> 16), InstanceID: uint16(num)})
	case lwm2m.TypeOpaque:
		if blb == nil {
			blb = []byte{}
		}
		return lwm2m.Opaque(blb)
	}
	return lwm2m.None()
}

// encodeChunk packs points (all of type typ, in time order) into a BLOB.
func encodeChunk(typ lwm2m.DataType, pts []point) []byte {
	b := make([]byte, 0, 8+len(pts)*6)
	b = append(b, chunkVersion, byte(typ))
	b = binary.AppendUvarint(b, uint64(len(pts)))
	var prev int64
	for i, p := range pts {
		if i == 0 {
			b = binary.AppendVarint(b, p.t)
		} else {
			b = binary.AppendVarint(b, p.t-prev)
		}
		prev = p.t
	}
	var pv uint64
	for _, p := range pts {
		switch typ {
		case lwm2m.TypeInteger, lwm2m.TypeTime, lwm2m.TypeUnsigned, lwm2m.TypeObjlnk:
			x := valueBits(p.v)
			b = binary.AppendVarint(b, int64(x-pv))
			pv = x
		case lwm2m.TypeFloat:
			b = binary.LittleEndian.AppendUint64(b, valueBits(p.v))
		case lwm2m.TypeBoolean:
			b = append(b, byte(valueBits(p.v)))
		case lwm2m.TypeString, lwm2m.TypeCorelnk:
			s := p.v.Str()
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		case lwm2m.TypeOpaque:
			o := p.v.Bytes()
			b = binary.AppendUvarint(b, uint64(len(o)))
			b = append(b, o...)
		}
	}
	return b
}

// decodeChunk unpacks a chunk, appending its points to dst. It never
// panics on bad input; it returns errChunk instead.
func decodeChunk(dst []point, b []byte) ([]point, lwm2m.DataType, error) {
	if len(b) < 3 || b[0] != chunkVersion {
		return dst, 0, fmt.Errorf("%w: bad header", errChunk)
	}
	typ := lwm2m.DataType(b[1])
	if typ > lwm2m.TypeCorelnk {
		return dst, 0, fmt.Errorf("%w: unknown type %d", errChunk, b[1])
	}
	rest := b[2:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n == 0 || n > uint64(len(rest)) {
		return dst, 0, fmt.Errorf("%w: bad count", errChunk)
	}
	rest = rest[k:]
	start := len(dst)
	var t int64
	for i := uint64(0); i < n; i++ {
		d, k := binary.Varint(rest)
		if k <= 0 {
			return dst[:start], 0, fmt.Errorf("%w: truncated timestamps", errChunk)
		}
		rest = rest[k:]
		t += d
		dst = append(dst, point{t: t})
	}
	var pv uint64
	for i := start; i < len(dst); i++ {
		switch typ {
		case lwm2m.TypeInteger, lwm2m.TypeTime, lwm2m.TypeUnsigned, lwm2m.TypeObjlnk:
			d, k := binary.Varint(rest)
			if k <= 0 {
				return dst[:start], 0, fmt.Errorf("%w: truncated values", errChunk)
			}
			rest = rest[k:]
			pv += uint64(d)
			dst[i].v = valueFrom(typ, pv, "", nil)
		case lwm2m.TypeFloat:
			if len(rest) < 8 {
				return dst[:start], 0, fmt.Errorf("%w: truncated values", errChunk)
			}
			dst[i].v = valueFrom(typ, binary.LittleEndian.Uint64(rest), "", nil)
			rest = rest[8:]
		case lwm2m.TypeBoolean:
			if len(rest) < 1 || rest[0] > 1 {
				return dst[:start], 0, fmt.Errorf("%w: bad boolean", errChunk)
			}
			dst[i].v = lwm2m.Bool(rest[0] == 1)
			rest = rest[1:]
		case lwm2m.TypeString, lwm2m.TypeCorelnk, lwm2m.TypeOpaque:
			l, k := binary.Uvarint(rest)
			if k <= 0 || l > uint64(len(rest)-k) {
				return dst[:start], 0, fmt.Errorf("%w: truncated values", errChunk)
			}
			s := rest[k : k+int(l)]
			rest = rest[k+int(l):]
			if typ == lwm2m.TypeOpaque {
				dst[i].v = lwm2m.Opaque(append([]byte{}, s...))
			} else {
				dst[i].v = valueFrom(typ, 0, string(s), nil)
			}
		case lwm2m.TypeNone:
			dst[i].v = lwm2m.None()
		}
	}
	if len(rest) != 0 {
		return dst[:start], 0, fmt.Errorf("%w: %d trailing bytes", errChunk, len(rest))
	}
	return dst, typ, nil
}

// numPoint is a numeric reading for charts.
type numPoint struct {
	t int64
	f float64
}

// decodeChunkNumbers appends the readings of a numeric chunk as floats
// (booleans as 0/1, like lwm2m.Value.Number), skipping the lwm2m.Value
// construction that charts do not need. Non-numeric chunks add nothing.
func decodeChunkNumbers(dst []numPoint, b []byte) ([]numPoint, error) {
	if len(b) < 3 || b[0] != chunkVersion {
		return dst, fmt.Errorf("%w: bad header", errChunk)
	}
	typ := lwm2m.DataType(b[1])
	switch typ {
	case lwm2m.TypeInteger, lwm2m.TypeTime, lwm2m.TypeUnsigned, lwm2m.TypeFloat, lwm2m.TypeBoolean:
	default:
		return dst, nil
	}
	rest := b[2:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n == 0 || n > uint64(len(rest)) {
		return dst, fmt.Errorf("%w: bad count", errChunk)
	}
	rest = rest[k:]
	start := len(dst)
	var t int64
	for i := uint64(0); i < n; i++ {
		d, k := binary.Varint(rest)
		if k <= 0 {
			return dst[:start], fmt.Errorf("%w: truncated timestamps", errChunk)
		}
		rest = rest[k:]
		t += d
		dst = append(dst, numPoint{t: t})
	}
	var pv uint64
	for i := start; i < len(dst); i++ {
		switch typ {
		case lwm2m.TypeFloat:
			if len(rest) < 8 {
				return dst[:start], fmt.Errorf("%w: truncated values", errChunk)
			}
			dst[i].f = math.Float64frombits(binary.LittleEndian.Uint64(rest))
			rest = rest[8:]
		case lwm2m.TypeBoolean:
			if len(rest) < 1 || rest[0] > 1 {
				return dst[:start], fmt.Errorf("%w: bad boolean", errChunk)
			}
			dst[i].f = float64(rest[0])
			rest = rest[1:]
		default:
			d, k := binary.Varint(rest)
			if k <= 0 {
				return dst[:start], fmt.Errorf("%w: truncated values", errChunk)
			}
			rest = rest[k:]
			pv += uint64(d)
			if typ == lwm2m.TypeUnsigned {
				dst[i].f = float64(pv)
			} else {
				dst[i].f = float64(int64(pv))
			}
		}
	}
	if len(rest) != 0 {
		return dst[:start], fmt.Errorf("%w: %d trailing bytes", errChunk, len(rest))
	}
	return dst, nil
}
