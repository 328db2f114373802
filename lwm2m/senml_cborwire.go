package lwm2m

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// This file holds the small CBOR (RFC 8949) reader and writer that the SenML
// CBOR and LwM2M CBOR codecs share. They are written by hand rather than
// through reflection because these payloads are the telemetry hot path and
// the encoders must be byte-exact (preferred serialization, RFC 8949 §4.1):
// the reader works on the input slice without copying except where a value
// outlives the call, and every length is checked against the bytes that are
// actually there before anything is allocated.

// CBOR major types (RFC 8949 §3.1).
const (
	cborUint   = 0
	cborNint   = 1
	cborBytes  = 2
	cborText   = 3
	cborArray  = 4
	cborMap    = 5
	cborTag    = 6
	cborSimple = 7
)

// Simple values and the break stop code (RFC 8949 §3.3, §3.2.1).
const (
	cborFalse = 20
	cborTrue  = 21
	cborNull  = 22
	cborBreak = 0xff
)

// cborIndef is the argument the reader reports for an indefinite length.
const cborIndef = math.MaxUint64

// cborHead is one decoded initial byte with its argument.
type cborHead struct {
	major byte
	info  byte   // additional information (low 5 bits)
	arg   uint64 // count, length, value, tag or float bits; cborIndef for indefinite
	off   int    // offset of the initial byte
}

// cborReader reads data items from b. Errors are *DecodeError for format f.
type cborReader struct {
	b   []byte
	off int
	f   Format
}

func (r *cborReader) errAt(off int, format string, args ...any) error {
	return decodeErr(r.f, off, -1, "", format, args...)
}

func (r *cborReader) done() bool { return r.off >= len(r.b) }

// peekBreak reports whether the next byte is the break stop code, and
// consumes it if so.
func (r *cborReader) peekBreak() bool {
	if r.off < len(r.b) && r.b[r.off] == cborBreak {
		r.off++
		return true
	}
	return false
}

// head reads an initial byte and its argument.
func (r *cborReader) head() (cborHead, error) {
	h := cborHead{off: r.off}
	if r.off >= len(r.b) {
		return h, r.errAt(r.off, "unexpected end of data")
	}
	ib := r.b[r.off]
	r.off++
	h.major, h.info = ib>>5, ib&0x1f
	switch {
	case h.info < 24:
		h.arg = uint64(h.info)
	case h.info <= 27:
		n := 1 << (h.info - 24)
		if len(r.b)-r.off < n {
			return h, r.errAt(h.off, "truncated argument")
		}
		switch n {
		case 1:
			h.arg = uint64(r.b[r.off])
		case 2:
			h.arg = uint64(binary.BigEndian.Uint16(r.b[r.off:]))
		case 4:
			h.arg = uint64(binary.BigEndian.Uint32(r.b[r.off:]))
		case 8:
			h.arg = binary.BigEndian.Uint64(r.b[r.off:])
		}
		r.off += n
	case h.info == 31:
		if h.major == cborUint || h.major == cborNint || h.major == cborTag {
			return h, r.errAt(h.off, "indefinite length on major type %d", h.major)
		}
		if h.major == cborSimple {
			return h, r.errAt(h.off, "unexpected break")
		}
		h.arg = cborIndef
	default:
		return h, r.errAt(h.off, "reserved additional information %d", h.info)
	}
	return h, nil
}

// skipTags reads a head, skipping any tags before it (RFC 8949 §3.4), and
// returns the first tag number seen (or -1).
func (r *cborReader) headSkipTags() (cborHead, int64, error) {
	tag := int64(-1)
	for i := 0; ; i++ {
		h, err := r.head()
		if err != nil || h.major != cborTag {
			return h, tag, err
		}
		if i >= MaxDepth {
			return h, tag, limitErr(r.f, h.off, -1, "", "more than %d nested tags", MaxDepth)
		}
		if tag < 0 {
			tag = int64(min(h.arg, math.MaxInt64))
		}
	}
}

// stringBody returns the content of a byte or text string whose head was
// just read. A definite-length string is returned as a sub-slice of the input
// (callers copy what they keep); an indefinite one is assembled from its
// chunks (RFC 8949 §3.2.3).
func (r *cborReader) stringBody(h cborHead) ([]byte, error) {
	if h.arg != cborIndef {
		if h.arg > uint64(len(r.b)-r.off) {
			return nil, r.errAt(h.off, "string of %d bytes exceeds the %d bytes left", h.arg, len(r.b)-r.off)
		}
		s := r.b[r.off : r.off+int(h.arg)]
		r.off += int(h.arg)
		if h.major == cborText && !utf8.Valid(s) {
			return nil, r.errAt(h.off, "text string is not valid UTF-8")
		}
		return s, nil
	}
	var out []byte
	for !r.peekBreak() {
		c, err := r.head()
		if err != nil {
			return nil, err
		}
		if c.major != h.major || c.arg == cborIndef {
			return nil, r.errAt(c.off, "indefinite string chunk of major type %d", c.major)
		}
		s, err := r.stringBody(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// skip reads and discards one data item, nested at most MaxDepth deep.
func (r *cborReader) skip(depth int) error {
	if depth > MaxDepth {
		return limitErr(r.f, r.off, -1, "", "nesting deeper than %d", MaxDepth)
	}
	h, err := r.head()
	if err != nil {
		return err
	}
	switch h.major {
	case cborUint, cborNint, cborSimple:
		return nil
	case cborBytes, cborText:
		_, err := r.stringBody(h)
		return err
	case cborTag:
		return r.skip(depth + 1)
	case cborArray, cborMap:
		per := uint64(1)
		if h.major == cborMap {
			per = 2
		}
		if h.arg == cborIndef {
			for !r.peekBreak() {
				for j := uint64(0); j < per; j++ {
					if err := r.skip(depth + 1); err != nil {
						return err
					}
				}
			}
			return nil
		}
		// Every item takes at least one byte: a count larger than what
		// is left is malformed, and this check bounds the loop.
		if h.arg > uint64(len(r.b)-r.off) {
			return r.errAt(h.off, "container of %d items exceeds the %d bytes left", h.arg, len(r.b)-r.off)
		}
		for i := uint64(0); i < h.arg*per; i++ {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	return r.errAt(h.off, "unknown major type %d", h.major)
}

// containerLen checks a definite array/map count against MaxRecords-like
// bounds and the bytes left; it returns -1 for indefinite lengths.
func (r *cborReader) containerLen(h cborHead, limit int, what string) (int, error) {
	if h.arg == cborIndef {
		return -1, nil
	}
	if h.arg > uint64(limit) {
		return 0, limitErr(r.f, h.off, -1, "", "%s of %d items exceeds the limit of %d", what, h.arg, limit)
	}
	if h.arg > uint64(len(r.b)-r.off) {
		return 0, r.errAt(h.off, "%s of %d items exceeds the %d bytes left", what, h.arg, len(r.b)-r.off)
	}
	return int(h.arg), nil
}

// cborNumber is a decoded CBOR or JSON number that remembers whether the
// wire showed it as an integer or a float.
type cborNumber struct {
	kind numKind
	i    int64
	u    uint64
	f    float64
}

type numKind uint8

const (
	numInt   numKind = iota + 1 // fits int64
	numUint                     // > MaxInt64
	numFloat                    // written as a float
)

func (n cborNumber) float() float64 {
	switch n.kind {
	case numInt:
		return float64(n.i)
	case numUint:
		return float64(n.u)
	}
	return n.f
}

func (n cborNumber) value() Value {
	switch n.kind {
	case numInt:
		return Int(n.i)
	case numUint:
		return Uint(n.u)
	}
	return Float(n.f)
}

// numberFrom interprets a head of major type 0, 1 or 7 (floats) as a number.
func (r *cborReader) numberFrom(h cborHead) (cborNumber, bool) {
	switch h.major {
	case cborUint:
		if h.arg > math.MaxInt64 {
			return cborNumber{kind: numUint, u: h.arg}, true
		}
		return cborNumber{kind: numInt, i: int64(h.arg)}, true
	case cborNint:
		if h.arg > math.MaxInt64 {
			// -1-arg below MinInt64: keep it as a float, the closest
			// an LwM2M value can hold.
			return cborNumber{kind: numFloat, f: -1 - float64(h.arg)}, true
		}
		return cborNumber{kind: numInt, i: -1 - int64(h.arg)}, true
	case cborSimple:
		switch h.info {
		case 25:
			return cborNumber{kind: numFloat, f: float16to64(uint16(h.arg))}, true
		case 26:
			return cborNumber{kind: numFloat, f: float64(math.Float32frombits(uint32(h.arg)))}, true
		case 27:
			return cborNumber{kind: numFloat, f: math.Float64frombits(h.arg)}, true
		}
	}
	return cborNumber{}, false
}

// float16to64 widens an IEEE 754 half-precision value (RFC 8949 Appendix D).
func float16to64(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -v
	}
	return v
}

// float16Exact returns the half-precision bits of f when f converts to
// half precision and back without loss.
func float16Exact(f float64) (uint16, bool) {
	f32 := float32(f)
	if float64(f32) != f {
		return 0, false
	}
	b := math.Float32bits(f32)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff:
		return sign | 0x7c00, mant == 0 // infinities; NaN is handled by the caller
	case exp == 0 && mant == 0:
		return sign, true
	case exp == 0:
		return 0, false // float32 subnormals are far below half precision
	}
	e := exp - 127
	switch {
	case e >= -14 && e <= 15:
		if mant&0x1fff != 0 {
			return 0, false
		}
		return sign | uint16(e+15)<<10 | uint16(mant>>13), true
	case e >= -24 && e < -14:
		full := 1<<23 | mant
		shift := uint(-(e + 1))
		if full&(1<<shift-1) != 0 {
			return 0, false
		}
		return sign | uint16(full>>shift), true
	}
	return 0, false
}

// appendCBORHead writes an initial byte with the shortest argument
// (RFC 8949 §4.2.1, preferred serialization).
func appendCBORHead(dst []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(dst, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(dst, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return append(dst, m|25, byte(arg>>8), byte(arg))
	case arg <= math.MaxUint32:
		return append(dst, m|26, byte(arg>>24), byte(arg>>16), byte(arg>>8), byte(arg))
	}
	return append(dst, m|27, byte(arg>>56), byte(arg>>48), byte(arg>>40), byte(arg>>32),
		byte(arg>>24), byte(arg>>16), byte(arg>>8), byte(arg))
}

func appendCBORInt(dst []byte, i int64) []byte {
	if i >= 0 {
		return appendCBORHead(dst, cborUint, uint64(i))
	}
	return appendCBORHead(dst, cborNint, uint64(-1-i))
}

func appendCBORText(dst []byte, s string) []byte {
	dst = appendCBORHead(dst, cborText, uint64(len(s)))
	return append(dst, s...)
}

func appendCBORTextBytes(dst []byte, s []byte) []byte {
	dst = appendCBORHead(dst, cborText, uint64(len(s)))
	return append(dst, s...)
}

func appendCBORBytes(dst []byte, b []byte) []byte {
	dst = appendCBORHead(dst, cborBytes, uint64(len(b)))
	return append(dst, b...)
}

func appendCBORBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, cborSimple<<5|cborTrue)
	}
	return append(dst, cborSimple<<5|cborFalse)
}

// appendCBORFloat writes f in the shortest of half, single and double
// precision that holds it exactly (RFC 8949 §4.2.2); NaN is the canonical
// half-precision quiet NaN.
func appendCBORFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) {
		return append(dst, 0xf9, 0x7e, 0x00)
	}
	if h, ok := float16Exact(f); ok {
		return append(dst, 0xf9, byte(h>>8), byte(h))
	}
	if f32 := float32(f); float64(f32) == f {
		b := math.Float32bits(f32)
		return append(dst, 0xfa, byte(b>>24), byte(b>>16), byte(b>>8), byte(b))
	}
	b := math.Float64bits(f)
	return append(dst, 0xfb, byte(b>>56), byte(b>>48), byte(b>>40), byte(b>>32),
		byte(b>>24), byte(b>>16), byte(b>>8), byte(b))
}

// limitErr builds a *DecodeError wrapping ErrLimit.
func limitErr(f Format, offset, record int, field, format string, args ...any) error {
	return &DecodeError{Format: f, Offset: offset, Record: record, Field: field,
		Err: fmt.Errorf("%w: %s", ErrLimit, fmt.Sprintf(format, args...))}
}

// typeErr builds a *DecodeError wrapping ErrType.
func typeErr(f Format, offset, record int, field string, err error) error {
	return &DecodeError{Format: f, Offset: offset, Record: record, Field: field, Err: err}
}

// inRecord fills in the record index and field of a *DecodeError that does
// not name them yet.
func inRecord(err error, record int, field string) error {
	if de, ok := err.(*DecodeError); ok {
		if de.Record < 0 {
			de.Record = record
		}
		if de.Field == "" {
			de.Field = field
		}
	}
	return err
}
