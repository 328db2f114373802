package lwm2m

import (
	"encoding/binary"
	"fmt"
	"math"
)

// OMA TLV, application/vnd.oma.lwm2m+tlv (11542): Core §7.4.3.
//
// Each TLV is a type byte, an 8- or 16-bit identifier, an optional 8/16/24-bit
// length and the value. Bits 7–6 of the type byte say what the identifier
// names (Core §7.4.3, Table "TLV format"):
//
//	00 object instance, whose value is a sequence of resource TLVs
//	01 resource instance, inside a multiple resource
//	10 multiple resource, whose value is a sequence of resource instance TLVs
//	11 resource with a value
//
// Bit 5 is the identifier width (0: 8 bits, 1: 16 bits); bits 4–3 the length
// width (00: the length is bits 2–0, 01: 8 bits, 10: 16 bits, 11: 24 bits).
// Values (Core §7.4.3, "data types"): strings as UTF-8, integers and time as
// signed big-endian 1, 2, 4 or 8 bytes, unsigned integers as unsigned
// 1, 2, 4 or 8 bytes, floats as IEEE 754 binary32 or binary64, booleans as
// one byte 0 or 1, object links as two 16-bit ids, opaque as is. TLV names no
// types, so decoding needs the object model; without one, values decode as
// opaque.
const (
	tlvObjectInstance   = 0
	tlvResourceInstance = 1
	tlvMultipleResource = 2
	tlvResource         = 3
)

var tlvKindNames = [4]string{"object instance", "resource instance", "multiple resource", "resource"}

// tlvMaxLength is the largest value a 24-bit length can describe.
const tlvMaxLength = 1<<24 - 1

// tlvHeader is one parsed TLV header; the value is data[off+hdr : off+hdr+length].
type tlvHeader struct {
	kind   uint8
	id     uint16
	hdr    int // header size in bytes
	length int // value length
}

// readTLVHeader parses the TLV header at data[off:] and checks that its value
// lies within data[:end].
func readTLVHeader(data []byte, off, end int) (tlvHeader, error) {
	var h tlvHeader
	if off >= end {
		return h, decodeErr(FormatTLV, off, -1, "type", "missing TLV")
	}
	t := data[off]
	h.kind = t >> 6
	p := off + 1
	if t&0x20 != 0 {
		if p+2 > end {
			return h, decodeErr(FormatTLV, p, -1, "identifier", "16-bit identifier truncated")
		}
		h.id = binary.BigEndian.Uint16(data[p:])
		p += 2
	} else {
		if p+1 > end {
			return h, decodeErr(FormatTLV, p, -1, "identifier", "8-bit identifier truncated")
		}
		h.id = uint16(data[p])
		p++
	}
	switch lt := (t >> 3) & 3; lt {
	case 0:
		h.length = int(t & 7)
	default:
		n := int(lt)
		if p+n > end {
			return h, decodeErr(FormatTLV, p, -1, "length", "%d-bit length truncated", 8*n)
		}
		for i := 0; i < n; i++ {
			h.length = h.length<<8 | int(data[p+i])
		}
		p += n
	}
	h.hdr = p - off
	if h.length > end-p {
		return h, decodeErr(FormatTLV, off, -1, "length",
			"%s %d says %d bytes, %d remain", tlvKindNames[h.kind], h.id, h.length, end-p)
	}
	return h, nil
}

// tlvDecoder holds the state of one decodeTLV call.
type tlvDecoder struct {
	data []byte
	obj  *ObjectModel // model of the addressed object, nil when unknown
	recs []Record
	// the type of the last resource looked up, as resource instances and
	// instances of one object repeat it
	lastRes  uint16
	lastType DataType
	lastOK   bool
	str      string // data as a string, made on first need; strings slice it
	buf      []byte // a copy of data, made on first need; opaque values slice it
}

// idSet tracks the identifiers seen in one container to reject duplicates
// (an object instance or resource given twice is ambiguous). Ids below 256
// live in a bitmap, a few larger ones in an array, all on the stack; only
// containers with many large ids need a map.
type idSet struct {
	lo    [4]uint64
	large [8]uint16
	n     int
	m     map[uint16]struct{}
}

// add records id and reports whether it was new.
func (s *idSet) add(id uint16) bool {
	if id < 256 {
		w, b := id>>6, uint64(1)<<(id&63)
		if s.lo[w]&b != 0 {
			return false
		}
		s.lo[w] |= b
		return true
	}
	for i := 0; i < s.n; i++ {
		if s.large[i] == id {
			return false
		}
	}
	if s.m != nil {
		if _, ok := s.m[id]; ok {
			return false
		}
		s.m[id] = struct{}{}
		return true
	}
	if s.n < len(s.large) {
		s.large[s.n] = id
		s.n++
		return true
	}
	s.m = map[uint16]struct{}{id: {}}
	return true
}

// empty reports whether nothing was added.
func (s *idSet) empty() bool { return s.lo == [4]uint64{} && s.n == 0 && s.m == nil }

// decodeTLV reads a payload for base. TLV nests at most three levels (object
// instance, multiple resource, resource instance) and anything deeper is
// rejected where it appears, so MaxDepth is never reached; MaxRecords bounds
// the values.
func decodeTLV(base Path, data []byte, reg *Registry) ([]Record, error) {
	if base.IsRoot() {
		return nil, &DecodeError{Format: FormatTLV, Offset: -1, Record: -1, Field: "path",
			Err: fmt.Errorf("%w: TLV names no object ids; decode it against an object, instance or resource path", ErrInvalidPath)}
	}
	d := tlvDecoder{data: data}
	d.obj, _ = reg.Object(base.ObjectID())
	if len(data) == 0 {
		return []Record{}, nil
	}
	// A TLV value takes at least 2 header bytes; typical ones 6 to 10.
	n := len(data)/6 + 1
	if n > 64 {
		n = 64
	}
	d.recs = make([]Record, 0, n)
	var err error
	switch base.Len() {
	case 1:
		err = d.instances(base, 0, len(data))
	case 2:
		err = d.instanceBody(base, 0, len(data), true)
	case 3:
		err = d.resourceTop(base, 0, len(data))
	case 4:
		err = d.resourceInstanceTop(base, 0, len(data))
	}
	if err != nil {
		return nil, err
	}
	return d.recs, nil
}

// instances decodes a sequence of object instance TLVs under object path obj.
func (d *tlvDecoder) instances(obj Path, off, end int) error {
	var seen idSet
	for off < end {
		h, err := readTLVHeader(d.data, off, end)
		if err != nil {
			return err
		}
		if h.kind != tlvObjectInstance {
			return decodeErr(FormatTLV, off, -1, "type",
				"%s TLV %d at object level %s: a payload for an object must wrap resources in object instance TLVs (decode a Create without instance id against /O/I)",
				tlvKindNames[h.kind], h.id, obj)
		}
		if h.id > MaxID {
			return decodeErr(FormatTLV, off, -1, "identifier", "object instance id %d is reserved", h.id)
		}
		if !seen.add(h.id) {
			return decodeErr(FormatTLV, off, -1, "identifier", "object instance %s/%d given twice", obj, h.id)
		}
		vo := off + h.hdr
		if err := d.instanceBody(obj.Append(h.id), vo, vo+h.length, false); err != nil {
			return err
		}
		off = vo + h.length
	}
	return nil
}

// instanceBody decodes the resource TLVs of object instance inst. At the top
// of a payload for /O/I (top true) it also accepts the instance wrapped in
// its own object instance TLV, as Core §7.4.3's examples show both.
func (d *tlvDecoder) instanceBody(inst Path, off, end int, top bool) error {
	var seen idSet
	wrapped := false
	for off < end {
		h, err := readTLVHeader(d.data, off, end)
		if err != nil {
			return err
		}
		vo := off + h.hdr
		switch h.kind {
		case tlvObjectInstance:
			if !top {
				return decodeErr(FormatTLV, off, -1, "type", "object instance TLV %d nested in object instance %s", h.id, inst)
			}
			if h.id != inst.InstanceID() {
				return decodeErr(FormatTLV, off, -1, "identifier", "object instance %d in a payload for %s", h.id, inst)
			}
			if wrapped || !seen.empty() {
				return decodeErr(FormatTLV, off, -1, "identifier", "object instance %s given twice", inst)
			}
			wrapped = true
			if err := d.instanceBody(inst, vo, vo+h.length, false); err != nil {
				return err
			}
		case tlvResource, tlvMultipleResource:
			if wrapped {
				return decodeErr(FormatTLV, off, -1, "type", "resource TLV %d beside the object instance TLV of %s", h.id, inst)
			}
			if h.id > MaxID {
				return decodeErr(FormatTLV, off, -1, "identifier", "resource id %d is reserved", h.id)
			}
			if !seen.add(h.id) {
				return decodeErr(FormatTLV, off, -1, "identifier", "resource %s/%d given twice", inst, h.id)
			}
			res := inst.Append(h.id)
			if h.kind == tlvResource {
				if err := d.value(res, vo, h.length); err != nil {
					return err
				}
			} else if err := d.resourceInstances(res, vo, vo+h.length); err != nil {
				return err
			}
		default:
			return decodeErr(FormatTLV, off, -1, "type", "resource instance TLV %d outside a multiple resource in %s", h.id, inst)
		}
		off = vo + h.length
	}
	return nil
}

// resourceInstances decodes the resource instance TLVs of multiple resource res.
func (d *tlvDecoder) resourceInstances(res Path, off, end int) error {
	var seen idSet
	for off < end {
		h, err := readTLVHeader(d.data, off, end)
		if err != nil {
			return err
		}
		if h.kind != tlvResourceInstance {
			return decodeErr(FormatTLV, off, -1, "type", "%s TLV %d inside multiple resource %s", tlvKindNames[h.kind], h.id, res)
		}
		if h.id > MaxID {
			return decodeErr(FormatTLV, off, -1, "identifier", "resource instance id %d is reserved", h.id)
		}
		if !seen.add(h.id) {
			return decodeErr(FormatTLV, off, -1, "identifier", "resource instance %s/%d given twice", res, h.id)
		}
		vo := off + h.hdr
		if err := d.value(res.Append(h.id), vo, h.length); err != nil {
			return err
		}
		off = vo + h.length
	}
	return nil
}

// resourceTop decodes a payload for resource path res: one resource TLV, one
// multiple resource TLV, or (as some clients send) its resource instance TLVs
// without the multiple resource around them.
func (d *tlvDecoder) resourceTop(res Path, off, end int) error {
	h, err := readTLVHeader(d.data, off, end)
	if err != nil {
		return err
	}
	vo := off + h.hdr
	switch h.kind {
	case tlvResource, tlvMultipleResource:
		if h.id != res.ResourceID() {
			return decodeErr(FormatTLV, off, -1, "identifier", "resource %d in a payload for %s", h.id, res)
		}
		if vo+h.length != end {
			return decodeErr(FormatTLV, vo+h.length, -1, "type", "data after the resource TLV of %s", res)
		}
		if h.kind == tlvResource {
			return d.value(res, vo, h.length)
		}
		return d.resourceInstances(res, vo, end)
	case tlvResourceInstance:
		return d.resourceInstances(res, off, end)
	}
	return decodeErr(FormatTLV, off, -1, "type", "object instance TLV %d in a payload for resource %s", h.id, res)
}

// resourceInstanceTop decodes a payload for resource instance path ri: one
// resource instance TLV, or a multiple resource TLV holding just that one.
func (d *tlvDecoder) resourceInstanceTop(ri Path, off, end int) error {
	h, err := readTLVHeader(d.data, off, end)
	if err != nil {
		return err
	}
	vo := off + h.hdr
	if vo+h.length != end {
		return decodeErr(FormatTLV, vo+h.length, -1, "type", "data after the TLV of %s", ri)
	}
	switch h.kind {
	case tlvResourceInstance:
		if h.id != ri.ResourceInstanceID() {
			return decodeErr(FormatTLV, off, -1, "identifier", "resource instance %d in a payload for %s", h.id, ri)
		}
		return d.value(ri, vo, h.length)
	case tlvMultipleResource:
		if h.id != ri.ResourceID() {
			return decodeErr(FormatTLV, off, -1, "identifier", "resource %d in a payload for %s", h.id, ri)
		}
		n := len(d.recs)
		if err := d.resourceInstances(ri.Parent(), vo, end); err != nil {
			return err
		}
		if len(d.recs) != n+1 || d.recs[n].Path != ri {
			return decodeErr(FormatTLV, off, -1, "identifier", "multiple resource TLV does not hold exactly %s", ri)
		}
		return nil
	}
	return decodeErr(FormatTLV, off, -1, "type", "%s TLV %d in a payload for resource instance %s", tlvKindNames[h.kind], h.id, ri)
}

// value decodes the n value bytes at off for path p by the model's type and
// appends the record.
func (d *tlvDecoder) value(p Path, off, n int) error {
	if len(d.recs) >= MaxRecords {
		return tlvLimitErr(FormatTLV, off, -1, "more than %d values", MaxRecords)
	}
	t := TypeOpaque
	if d.obj != nil {
		if !d.lastOK || d.lastRes != p.ResourceID() {
			d.lastRes, d.lastType, d.lastOK = p.ResourceID(), TypeOpaque, true
			if rm, ok := d.obj.Resources[p.ResourceID()]; ok {
				d.lastType = rm.Type
			}
		}
		t = d.lastType
	}
	v, err := d.typed(t, off, n)
	if err != nil {
		return &DecodeError{Format: FormatTLV, Offset: off, Record: -1, Field: p.String(), Err: err}
	}
	d.recs = append(d.recs, Record{Path: p, Value: v})
	return nil
}

func (d *tlvDecoder) typed(t DataType, off, n int) (Value, error) {
	b := d.data[off : off+n]
	switch t {
	case TypeString, TypeCorelnk:
		if d.str == "" {
			d.str = string(d.data)
		}
		return Value{typ: t, str: d.str[off : off+n]}, nil
	case TypeInteger, TypeTime:
		i, ok := tlvInt(b)
		if !ok {
			return Value{}, fmt.Errorf("%w: %s of %d bytes (want 1, 2, 4 or 8)", ErrMalformed, t, n)
		}
		return Value{typ: t, num: uint64(i)}, nil
	case TypeUnsigned:
		u, ok := tlvUint(b)
		if !ok {
			return Value{}, fmt.Errorf("%w: unsigned integer of %d bytes (want 1, 2, 4 or 8)", ErrMalformed, n)
		}
		return Uint(u), nil
	case TypeFloat:
		switch n {
		case 4:
			return Float(float64(math.Float32frombits(binary.BigEndian.Uint32(b)))), nil
		case 8:
			return Value{typ: TypeFloat, num: binary.BigEndian.Uint64(b)}, nil
		}
		return Value{}, fmt.Errorf("%w: float of %d bytes (want 4 or 8)", ErrMalformed, n)
	case TypeBoolean:
		if n != 1 || b[0] > 1 {
			return Value{}, fmt.Errorf("%w: boolean must be one byte 0 or 1", ErrMalformed)
		}
		return Bool(b[0] == 1), nil
	case TypeObjlnk:
		if n != 4 {
			return Value{}, fmt.Errorf("%w: object link of %d bytes (want 4)", ErrMalformed, n)
		}
		return Value{typ: TypeObjlnk, num: uint64(binary.BigEndian.Uint32(b))}, nil
	case TypeNone:
		if n == 0 {
			return None(), nil
		}
	}
	if n == 0 {
		return Opaque([]byte{}), nil
	}
	if d.buf == nil {
		d.buf = append([]byte(nil), d.data...)
	}
	return Opaque(d.buf[off : off+n : off+n]), nil
}

// tlvInt reads a signed big-endian integer of 1, 2, 4 or 8 bytes.
func tlvInt(b []byte) (int64, bool) {
	switch len(b) {
	case 1:
		return int64(int8(b[0])), true
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), true
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), true
	case 8:
		return int64(binary.BigEndian.Uint64(b)), true
	}
	return 0, false
}

// tlvUint reads an unsigned big-endian integer of 1, 2, 4 or 8 bytes.
func tlvUint(b []byte) (uint64, bool) {
	switch len(b) {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), true
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), true
	case 8:
		return binary.BigEndian.Uint64(b), true
	}
	return 0, false
}

// tlvLimitErr builds a *DecodeError wrapping ErrLimit.
func tlvLimitErr(f Format, offset, record int, format string, args ...any) error {
	return &DecodeError{Format: f, Offset: offset, Record: record,
		Err: fmt.Errorf("%w: %s", ErrLimit, fmt.Sprintf(format, args...))}
}

// ---- encoding ----

// encodeTLV writes records as TLV for a request on base:
//
//	/O        object instance TLVs holding resource TLVs (Core §7.4.3 example "Read /3")
//	/O/I      resource TLVs, without the instance around them ("Read /3/0")
//	/O/I/R    one resource TLV, or one multiple resource TLV when the records
//	          are resource instances
//	/O/I/R/RI one resource instance TLV
//
// Integers and floats take the smallest width that holds the value exactly.
// With a registry, values are first converted to the model's type (a string
// "12" for an Integer resource becomes the integer 12).
func encodeTLV(base Path, recs []Record, reg *Registry) ([]byte, error) {
	if base.IsRoot() {
		return nil, fmt.Errorf("%w: TLV cannot carry values of several objects; encode against an object or below", ErrInvalidPath)
	}
	if len(recs) == 0 {
		return []byte{}, nil
	}
	recs, err := tlvPrepare(base, recs, reg)
	if err != nil {
		return nil, err
	}
	e := tlvEncoder{recs: recs}
	size, err := e.size(base.Len(), 0, len(recs))
	if err != nil {
		return nil, err
	}
	return e.write(make([]byte, 0, size), base.Len(), 0, len(recs)), nil
}

// tlvPrepare checks the record levels, converts values to their model types
// and sorts by path, copying the slice only when it must change it.
func tlvPrepare(base Path, recs []Record, reg *Registry) ([]Record, error) {
	var obj *ObjectModel
	if reg != nil {
		obj, _ = reg.Object(base.ObjectID())
	}
	copied := false
	sorted := true
	var lastRes uint16
	var lastType DataType
	haveLast := false
	for i, r := range recs {
		if r.Path.Len() < 3 {
			return nil, fmt.Errorf("%w: record %s: TLV values belong to resources or resource instances", ErrInvalidPath, r.Path)
		}
		if i > 0 && recs[i-1].Path.Compare(r.Path) > 0 {
			sorted = false
		}
		if obj == nil {
			continue
		}
		if !haveLast || lastRes != r.Path.ResourceID() {
			lastRes, lastType, haveLast = r.Path.ResourceID(), TypeNone, true
			if rm, ok := obj.Resources[lastRes]; ok {
				lastType = rm.Type
			}
		}
		if lastType == TypeNone || r.Value.Type() == lastType || r.Value.IsNone() {
			continue
		}
		v, err := r.Value.As(lastType)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Path, err)
		}
		if !copied {
			recs = append([]Record(nil), recs...)
			copied = true
		}
		recs[i].Value = v
	}
	if !sorted {
		if !copied {
			recs = append([]Record(nil), recs...)
		}
		SortRecords(recs)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Path == recs[i-1].Path {
			return nil, fmt.Errorf("%w: two values for %s", ErrInvalidPath, recs[i].Path)
		}
		if recs[i-1].Path.Contains(recs[i].Path) {
			return nil, fmt.Errorf("%w: %s has a value and resource instances", ErrInvalidPath, recs[i-1].Path)
		}
	}
	return recs, nil
}

// tlvEncoder writes sorted, checked records: size computes the output
// length first, so that each container's length is known before its header
// and the output is allocated once; write then appends.
type tlvEncoder struct {
	recs []Record
}

// size is the encoded size of records [i,j) that share the first lvl ids of
// their paths: lvl 1 writes object instances, 2 resources, 3 one resource,
// 4 one resource instance.
func (e *tlvEncoder) size(lvl, i, j int) (int, error) {
	switch lvl {
	case 1:
		size := 0
		for i < j {
			k := e.group(i, j, 1)
			n, err := e.resourcesLen(i, k)
			if err != nil {
				return 0, err
			}
			if n > tlvMaxLength {
				return 0, fmt.Errorf("%w: object instance %s is larger than 16 MiB", ErrLimit, e.recs[i].Path.Truncate(2))
			}
			size += tlvHeaderLen(e.recs[i].Path.InstanceID(), n) + n
			i = k
		}
		return size, nil
	case 2:
		return e.resourcesLen(i, j)
	case 3:
		return e.resourceLen(i, j)
	}
	if j-i != 1 {
		return 0, fmt.Errorf("%w: %d values for one resource instance", ErrInvalidPath, j-i)
	}
	n, err := tlvValueLen(e.recs[i])
	if err != nil {
		return 0, err
	}
	return tlvHeaderLen(e.recs[i].Path.ResourceInstanceID(), n) + n, nil
}

// write appends what size measured; size must have succeeded.
func (e *tlvEncoder) write(dst []byte, lvl, i, j int) []byte {
	switch lvl {
	case 1:
		for i < j {
			k := e.group(i, j, 1)
			n, _ := e.resourcesLen(i, k)
			dst = appendTLVHeader(dst, tlvObjectInstance, e.recs[i].Path.InstanceID(), n)
			dst = e.writeResources(dst, i, k)
			i = k
		}
		return dst
	case 2:
		return e.writeResources(dst, i, j)
	case 3:
		return e.writeResource(dst, i, j)
	}
	r := e.recs[i]
	n, _ := tlvValueLen(r)
	dst = appendTLVHeader(dst, tlvResourceInstance, r.Path.ResourceInstanceID(), n)
	return appendTLVValue(dst, r.Value)
}

// group returns the end of the run of records from i that share their id at
// position pos.
func (e *tlvEncoder) group(i, j, pos int) int {
	id := e.recs[i].Path.ID(pos)
	k := i + 1
	for k < j && e.recs[k].Path.ID(pos) == id {
		k++
	}
	return k
}

func (e *tlvEncoder) resourcesLen(i, j int) (int, error) {
	size := 0
	for i < j {
		k := e.group(i, j, 2)
		n, err := e.resourceLen(i, k)
		if err != nil {
			return 0, err
		}
		size += n
		i = k
	}
	return size, nil
}

func (e *tlvEncoder) writeResources(dst []byte, i, j int) []byte {
	for i < j {
		k := e.group(i, j, 2)
		dst = e.writeResource(dst, i, k)
		i = k
	}
	return dst
}

// resourceLen sizes one resource: records [i,j) are either one value at the
// resource path or the resource's instances.
func (e *tlvEncoder) resourceLen(i, j int) (int, error) {
	r := e.recs[i]
	id := r.Path.ResourceID()
	if r.Path.Len() == 3 {
		if j-i != 1 {
			return 0, fmt.Errorf("%w: %s has a value and resource instances", ErrInvalidPath, r.Path)
		}
		n, err := tlvValueLen(r)
		if err != nil {
			return 0, err
		}
		return tlvHeaderLen(id, n) + n, nil
	}
	n, err := e.instancesLen(i, j)
	if err != nil {
		return 0, err
	}
	if n > tlvMaxLength {
		return 0, fmt.Errorf("%w: multiple resource %s is larger than 16 MiB", ErrLimit, r.Path.Parent())
	}
	return tlvHeaderLen(id, n) + n, nil
}

func (e *tlvEncoder) writeResource(dst []byte, i, j int) []byte {
	r := e.recs[i]
	id := r.Path.ResourceID()
	if r.Path.Len() == 3 {
		n, _ := tlvValueLen(r)
		dst = appendTLVHeader(dst, tlvResource, id, n)
		return appendTLVValue(dst, r.Value)
	}
	n, _ := e.instancesLen(i, j)
	dst = appendTLVHeader(dst, tlvMultipleResource, id, n)
	for ; i < j; i++ {
		ri := e.recs[i]
		vn, _ := tlvValueLen(ri)
		dst = appendTLVHeader(dst, tlvResourceInstance, ri.Path.ResourceInstanceID(), vn)
		dst = appendTLVValue(dst, ri.Value)
	}
	return dst
}

func (e *tlvEncoder) instancesLen(i, j int) (int, error) {
	size := 0
	for ; i < j; i++ {
		n, err := tlvValueLen(e.recs[i])
		if err != nil {
			return 0, err
		}
		size += tlvHeaderLen(e.recs[i].Path.ResourceInstanceID(), n) + n
	}
	return size, nil
}

// tlvHeaderLen is the size of a TLV header for an id and value length.
func tlvHeaderLen(id uint16, n int) int {
	h := 2
	if id > 0xFF {
		h++
	}
	switch {
	case n < 8:
	case n <= 0xFF:
		h++
	case n <= 0xFFFF:
		h += 2
	default:
		h += 3
	}
	return h
}

func appendTLVHeader(dst []byte, kind uint8, id uint16, n int) []byte {
	t := kind << 6
	if id > 0xFF {
		t |= 0x20
	}
	switch {
	case n < 8:
		t |= uint8(n)
	case n <= 0xFF:
		t |= 1 << 3
	case n <= 0xFFFF:
		t |= 2 << 3
	default:
		t |= 3 << 3
	}
	dst = append(dst, t)
	if id > 0xFF {
		dst = append(dst, byte(id>>8), byte(id))
	} else {
		dst = append(dst, byte(id))
	}
	switch {
	case n < 8:
	case n <= 0xFF:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, byte(n>>8), byte(n))
	default:
		dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
	}
	return dst
}

// tlvValueLen is the encoded size of a record's value.
func tlvValueLen(r Record) (int, error) {
	v := r.Value
	n := 0
	switch v.typ {
	case TypeString, TypeCorelnk:
		n = len(v.str)
	case TypeInteger, TypeTime:
		n = tlvIntLen(int64(v.num))
	case TypeUnsigned:
		n = tlvUintLen(v.num)
	case TypeFloat:
		if tlvFloat32(v) {
			n = 4
		} else {
			n = 8
		}
	case TypeBoolean:
		n = 1
	case TypeOpaque:
		n = len(v.buf)
	case TypeObjlnk:
		n = 4
	case TypeNone:
		n = 0
	default:
		return 0, fmt.Errorf("%w: %s: cannot encode %s", ErrType, r.Path, v.typ)
	}
	if n > tlvMaxLength {
		return 0, fmt.Errorf("%w: %s: value of %d bytes exceeds TLV's 24-bit length", ErrLimit, r.Path, n)
	}
	return n, nil
}

func tlvIntLen(i int64) int {
	switch {
	case i >= math.MinInt8 && i <= math.MaxInt8:
		return 1
	case i >= math.MinInt16 && i <= math.MaxInt16:
		return 2
	case i >= math.MinInt32 && i <= math.MaxInt32:
		return 4
	}
	return 8
}

func tlvUintLen(u uint64) int {
	switch {
	case u <= math.MaxUint8:
		return 1
	case u <= math.MaxUint16:
		return 2
	case u <= math.MaxUint32:
		return 4
	}
	return 8
}

// tlvFloat32 reports whether a float value survives binary32 exactly. NaNs
// keep binary64 so that their payload bits survive.
func tlvFloat32(v Value) bool {
	f := math.Float64frombits(v.num)
	return !math.IsNaN(f) && float64(float32(f)) == f
}

func appendTLVValue(dst []byte, v Value) []byte {
	switch v.typ {
	case TypeString, TypeCorelnk:
		return append(dst, v.str...)
	case TypeInteger, TypeTime:
		i := int64(v.num)
		switch tlvIntLen(i) {
		case 1:
			return append(dst, byte(i))
		case 2:
			return binary.BigEndian.AppendUint16(dst, uint16(i))
		case 4:
			return binary.BigEndian.AppendUint32(dst, uint32(i))
		}
		return binary.BigEndian.AppendUint64(dst, uint64(i))
	case TypeUnsigned:
		switch tlvUintLen(v.num) {
		case 1:
			return append(dst, byte(v.num))
		case 2:
			return binary.BigEndian.AppendUint16(dst, uint16(v.num))
		case 4:
			return binary.BigEndian.AppendUint32(dst, uint32(v.num))
		}
		return binary.BigEndian.AppendUint64(dst, v.num)
	case TypeFloat:
		if tlvFloat32(v) {
			return binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(math.Float64frombits(v.num))))
		}
		return binary.BigEndian.AppendUint64(dst, v.num)
	case TypeBoolean:
		return append(dst, byte(v.num&1))
	case TypeOpaque:
		return append(dst, v.buf...)
	case TypeObjlnk:
		return binary.BigEndian.AppendUint32(dst, uint32(v.num))
	}
	return dst
}
