package lwm2m

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// LwM2M CBOR, application/vnd.oma.lwm2m+cbor, content format 11544
// (Core 1.2 §7.4.7). The payload is a tree of CBOR maps keyed by path
// identifiers from the root: {3: {0: {0: "Open Mobile Alliance", 6: {0: 1}}}}.
// A key may also be an array of identifiers that stands for several levels
// at once ({[3, 0]: {…}}). Leaves are resource or resource-instance values
// in the types of the CBOR format (Core 1.2 §7.4.6); the format carries no
// timestamps. In a Read-Composite or Observe-Composite request the leaves
// are null and name the requested paths.

// Date/time tags (RFC 8949 §3.4.1, §3.4.2): the encoder writes Time as an
// epoch number with tag 1; the decoder also takes an RFC 3339 string with
// tag 0, as the single-value CBOR format sees from some clients.
const (
	cborTagDateTime = 0
	cborTagEpoch    = 1
)

func decodeLwM2MCBOR(base Path, data []byte, reg *Registry) ([]Record, error) {
	w := lwm2mCBORWalker{r: cborReader{b: data, f: FormatLwM2MCBOR}, base: base, reg: reg}
	w.out = make([]Record, 0, min(initialRecords, len(data)/6+1))
	if err := w.walkRoot(); err != nil {
		return nil, err
	}
	if err := checkTreePaths(w.out); err != nil {
		return nil, err
	}
	return w.out, nil
}

// checkTreePaths rejects a payload that names one path twice, or a value
// and a value inside it: CBOR maps have unique keys (RFC 8949 §5.6) and a
// resource is either single or multiple.
func checkTreePaths(recs []Record) error {
	if len(recs) < 2 {
		return nil
	}
	// Encoders walk their tree in order, so the common case is already
	// sorted and needs no copy.
	sorted := true
	for i := 1; i < len(recs) && sorted; i++ {
		if recs[i-1].Path.Contains(recs[i].Path) {
			return decodeErr(FormatLwM2MCBOR, -1, i, recs[i].Path.String(), "%s appears twice or inside %s", recs[i].Path, recs[i-1].Path)
		}
		sorted = recs[i-1].Path.Compare(recs[i].Path) < 0
	}
	if sorted {
		return nil
	}
	ps := make([]Path, len(recs))
	for i := range recs {
		ps[i] = recs[i].Path
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a].Compare(ps[b]) < 0 })
	for i := 1; i < len(ps); i++ {
		if ps[i-1].Contains(ps[i]) {
			return decodeErr(FormatLwM2MCBOR, -1, -1, ps[i].String(), "%s appears twice or inside %s", ps[i], ps[i-1])
		}
	}
	return nil
}

func decodeLwM2MCBORPaths(data []byte) ([]Path, error) {
	w := lwm2mCBORWalker{r: cborReader{b: data, f: FormatLwM2MCBOR}, paths: true}
	if err := w.walkRoot(); err != nil {
		return nil, err
	}
	return w.pathOut, nil
}

// lwm2mCBORWalker walks the map tree of one payload.
type lwm2mCBORWalker struct {
	r       cborReader
	base    Path
	reg     *Registry
	paths   bool // a path list: leaves are null
	out     []Record
	pathOut []Path
	n       int // leaves seen, for MaxRecords and error positions
}

func (w *lwm2mCBORWalker) walkRoot() error {
	if len(w.r.b) == 0 {
		return w.r.errAt(0, "empty payload")
	}
	h, _, err := w.r.headSkipTags()
	if err != nil {
		return err
	}
	if h.major != cborMap {
		return w.r.errAt(h.off, "the payload is a map, got major type %d", h.major)
	}
	if err := w.walkMap(h, Path{}); err != nil {
		return err
	}
	if !w.r.done() {
		return w.r.errAt(w.r.off, "%d bytes after the payload", len(w.r.b)-w.r.off)
	}
	return nil
}

// walkMap reads the pairs of a map whose head h was read, for the path
// prefix p. Nesting is bounded by the four levels of a path.
func (w *lwm2mCBORWalker) walkMap(h cborHead, p Path) error {
	n, err := w.r.containerLen(h, MaxRecords, "map")
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		if n >= 0 && i == n {
			return nil
		}
		if n < 0 && w.r.peekBreak() {
			return nil
		}
		kp, err := w.key(p)
		if err != nil {
			return err
		}
		vh, tag, err := w.r.headSkipTags()
		if err != nil {
			return inRecord(err, w.n, kp.String())
		}
		if vh.major == cborMap && tag < 0 {
			if kp.Len() >= 4 {
				return decodeErr(w.r.f, vh.off, w.n, kp.String(), "a map below a resource instance")
			}
			if err := w.walkMap(vh, kp); err != nil {
				return err
			}
			continue
		}
		if err := w.leaf(vh, tag, kp); err != nil {
			return err
		}
	}
}

// key reads a map key: one identifier or an array of them, appended to p.
func (w *lwm2mCBORWalker) key(p Path) (Path, error) {
	h, err := w.r.head()
	if err != nil {
		return p, inRecord(err, w.n, "key")
	}
	appendID := func(h cborHead) error {
		if h.major != cborUint || h.arg > MaxID {
			return decodeErr(w.r.f, h.off, w.n, p.String(), "key is not an identifier 0..%d", MaxID)
		}
		if p.Len() >= 4 {
			return decodeErr(w.r.f, h.off, w.n, p.String(), "path deeper than a resource instance")
		}
		p = p.Append(uint16(h.arg))
		return nil
	}
	if h.major != cborArray {
		return p, appendID(h)
	}
	n, err := w.r.containerLen(h, 4, "key")
	if err != nil {
		return p, inRecord(err, w.n, "key")
	}
	if n == 0 {
		return p, decodeErr(w.r.f, h.off, w.n, p.String(), "empty key array")
	}
	for i := 0; ; i++ {
		if n >= 0 && i == n {
			return p, nil
		}
		if n < 0 && w.r.peekBreak() {
			if i == 0 {
				return p, decodeErr(w.r.f, h.off, w.n, p.String(), "empty key array")
			}
			return p, nil
		}
		eh, err := w.r.head()
		if err != nil {
			return p, inRecord(err, w.n, "key")
		}
		if err := appendID(eh); err != nil {
			return p, err
		}
	}
}

// leaf reads the value at path p, whose head h (after any tags, the first
// of which is tag) was read.
func (w *lwm2mCBORWalker) leaf(h cborHead, tag int64, p Path) error {
	if w.n >= MaxRecords {
		return limitErr(w.r.f, h.off, w.n, p.String(), "more than %d values", MaxRecords)
	}
	idx := w.n
	w.n++
	if w.paths {
		if h.major != cborSimple || h.info != cborNull {
			return decodeErr(w.r.f, h.off, idx, p.String(), "a path list leaf is null, got major type %d", h.major)
		}
		if p.Len() == 0 {
			return decodeErr(w.r.f, h.off, idx, "", "path list names no path")
		}
		w.pathOut = append(w.pathOut, p)
		return nil
	}
	if p.Len() < 3 {
		return &DecodeError{Format: w.r.f, Offset: h.off, Record: idx, Field: p.String(),
			Err: fmt.Errorf("%w: value at %s, not at a resource or resource instance", ErrInvalidPath, p)}
	}
	if !w.base.Contains(p) {
		return &DecodeError{Format: w.r.f, Offset: h.off, Record: idx, Field: p.String(),
			Err: fmt.Errorf("%w: %s is not under the requested %s", ErrInvalidPath, p, w.base)}
	}
	var v Value
	field := "v"
	switch h.major {
	case cborUint, cborNint, cborSimple:
		if h.major == cborSimple && (h.info == cborTrue || h.info == cborFalse) {
			v, field = Bool(h.info == cborTrue), "vb"
			break
		}
		num, ok := w.r.numberFrom(h)
		if !ok {
			return decodeErr(w.r.f, h.off, idx, p.String(), "unsupported simple value %d", h.info)
		}
		v = num.value()
		if tag == cborTagEpoch {
			f := num.float()
			if math.IsNaN(f) || math.Abs(f) > math.MaxInt64/2 {
				return decodeErr(w.r.f, h.off, idx, p.String(), "time out of range")
			}
			v = TimeUnix(int64(math.Floor(f)))
		}
	case cborText:
		s, err := w.r.stringBody(h)
		if err != nil {
			return inRecord(err, idx, p.String())
		}
		v, field = String(string(s)), "vs"
		if tag == cborTagDateTime {
			t, err := time.Parse(time.RFC3339, string(s))
			if err != nil {
				return decodeErr(w.r.f, h.off, idx, p.String(), "tag 0 date/time %q is not RFC 3339", s)
			}
			v, field = Time(t), "v"
		}
	case cborBytes:
		s, err := w.r.stringBody(h)
		if err != nil {
			return inRecord(err, idx, p.String())
		}
		v, field = Opaque(append([]byte{}, s...)), "vd"
	default:
		return decodeErr(w.r.f, h.off, idx, p.String(), "unsupported value of major type %d", h.major)
	}
	v, _, err := applyModel(v, field, p, w.reg)
	if err != nil {
		return typeErr(w.r.f, h.off, idx, p.String(), err)
	}
	w.out = append(w.out, Record{Path: p, Value: v})
	return nil
}

// appendLwM2MCBORValue writes a leaf in the CBOR types of Core 1.2 §7.4.6.
func appendLwM2MCBORValue(dst []byte, v Value) ([]byte, error) {
	switch v.Type() {
	case TypeString, TypeCorelnk:
		return appendCBORText(dst, v.Str()), nil
	case TypeInteger:
		return appendCBORInt(dst, v.Int()), nil
	case TypeUnsigned:
		return appendCBORHead(dst, cborUint, v.Uint()), nil
	case TypeFloat:
		return appendCBORFloat(dst, v.Float()), nil
	case TypeBoolean:
		return appendCBORBool(dst, v.Bool()), nil
	case TypeOpaque:
		return appendCBORBytes(dst, v.Bytes()), nil
	case TypeTime:
		return appendCBORInt(append(dst, cborTag<<5|cborTagEpoch), v.TimeUnix()), nil
	case TypeObjlnk:
		return appendCBORText(dst, v.Objlnk().String()), nil
	}
	return nil, fmt.Errorf("%w: a value is needed, got %s", ErrType, v)
}

func encodeLwM2MCBOR(base Path, recs []Record) ([]byte, error) {
	idx := make([]int, len(recs))
	for i := range recs {
		if recs[i].Path.Len() < 3 {
			return nil, fmt.Errorf("%w: record %d: %s is not a resource or resource instance", ErrInvalidPath, i, recs[i].Path)
		}
		if !recs[i].Time.IsZero() {
			return nil, fmt.Errorf("%w: record %d (%s): lwm2m-cbor carries no timestamps, use senml-cbor", ErrUnsupportedFormat, i, recs[i].Path)
		}
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return recs[idx[a]].Path.Compare(recs[idx[b]].Path) < 0 })
	paths := make([]Path, len(idx))
	for i, j := range idx {
		paths[i] = recs[j].Path
	}
	size := 8
	for i := range recs {
		size += 12 + len(recs[i].Value.Str()) + len(recs[i].Value.Bytes())
	}
	return appendLwM2MCBORTree(make([]byte, 0, size), paths, 0, func(dst []byte, i int) ([]byte, error) {
		return appendLwM2MCBORValue(dst, recs[idx[i]].Value)
	}, 0)
}

// appendLwM2MCBORTree writes the map for level lvl of the sorted paths
// ps[...] (index offset first into the caller's order), and leaf(i) for
// the value of path i.
func appendLwM2MCBORTree(dst []byte, ps []Path, lvl int, leaf func([]byte, int) ([]byte, error), first int) ([]byte, error) {
	groups := 0
	for i := 0; i < len(ps); i++ {
		if i == 0 || ps[i].ids[lvl] != ps[i-1].ids[lvl] {
			groups++
		}
	}
	dst = appendCBORHead(dst, cborMap, uint64(groups))
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j].ids[lvl] == ps[i].ids[lvl] {
			j++
		}
		dst = appendCBORHead(dst, cborUint, uint64(ps[i].ids[lvl]))
		if ps[i].Len() == lvl+1 {
			if j-i > 1 {
				if ps[i+1].Len() == lvl+1 {
					return nil, fmt.Errorf("%w: %s appears twice; lwm2m-cbor holds one value per path", ErrInvalidPath, ps[i])
				}
				return nil, fmt.Errorf("%w: %s and %s cannot both be written: one lies inside the other", ErrInvalidPath, ps[i], ps[i+1])
			}
			var err error
			if dst, err = leaf(dst, first+i); err != nil {
				return nil, fmt.Errorf("%s: %w", ps[i], err)
			}
		} else {
			var err error
			if dst, err = appendLwM2MCBORTree(dst, ps[i:j], lvl+1, leaf, first+i); err != nil {
				return nil, err
			}
		}
		i = j
	}
	return dst, nil
}

// encodeLwM2MCBORPaths writes a path list as a tree with null leaves. A path
// inside another requested path adds nothing and is left out.
func encodeLwM2MCBORPaths(paths []Path) ([]byte, error) {
	ps := make([]Path, 0, len(paths))
	for _, p := range paths {
		if p.IsRoot() {
			return nil, fmt.Errorf("%w: lwm2m-cbor cannot name the root in a path list", ErrInvalidPath)
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a].Compare(ps[b]) < 0 })
	kept := ps[:0]
	for _, p := range ps {
		if len(kept) > 0 && kept[len(kept)-1].Contains(p) {
			continue
		}
		kept = append(kept, p)
	}
	return appendLwM2MCBORTree(make([]byte, 0, 1+len(kept)*8), kept, 0, func(dst []byte, _ int) ([]byte, error) {
		return append(dst, cborSimple<<5|cborNull), nil
	}, 0)
}
