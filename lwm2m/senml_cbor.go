package lwm2m

import (
	"fmt"
	"strconv"
	"time"
)

// SenML CBOR, application/senml+cbor, content format 112 (RFC 8428 §6;
// Core 1.1 §7.4.5). A pack is an array of maps keyed by the integer labels
// of RFC 8428 Table 6 and, for LwM2M object links, the text label "vlo".

// SenML CBOR labels (RFC 8428 §6, Table 6).
const (
	senmlLabelBS   = -6
	senmlLabelBV   = -5
	senmlLabelBU   = -4
	senmlLabelBT   = -3
	senmlLabelBN   = -2
	senmlLabelBver = -1
	senmlLabelN    = 0
	senmlLabelU    = 1
	senmlLabelV    = 2
	senmlLabelVS   = 3
	senmlLabelVB   = 4
	senmlLabelS    = 5
	senmlLabelT    = 6
	senmlLabelUT   = 7
	senmlLabelVD   = 8
)

func decodeSenMLCBOR(base Path, data []byte, reg *Registry) ([]Record, error) {
	return decodeSenMLCBORAt(base, data, reg, time.Now)
}

// decodeSenMLCBORAt is decodeSenMLCBOR with the clock that relative times
// (RFC 8428 §4.5.3) are resolved against.
func decodeSenMLCBORAt(base Path, data []byte, reg *Registry, now func() time.Time) ([]Record, error) {
	// The loop is written out (not through senmlSink) so that the decoder
	// state and the record stay on the stack: this is the ingestion path.
	pk, hint, err := openSenMLCBOR(data)
	if err != nil {
		return nil, err
	}
	d := senmlDecoder{f: FormatSenMLCBOR, base: base, reg: reg, now: now}
	d.begin(hint)
	var rec senmlRecord
	for {
		ok, off, err := pk.next(&rec)
		if err != nil {
			return nil, err
		}
		if !ok {
			return d.out, nil
		}
		if err := d.add(&rec, pk.i-1, off); err != nil {
			return nil, err
		}
	}
}

// begin sizes the result; the cap keeps a payload that merely claims many
// records from reserving memory before they are read.
func (d *senmlDecoder) begin(n int) { d.out = make([]Record, 0, min(n, initialRecords)) }

// senmlCBORPack reads the records of a SenML CBOR pack one by one.
type senmlCBORPack struct {
	r cborReader
	n int // records the array header announces, -1 for indefinite
	i int // records read
}

// openSenMLCBOR reads the pack's array header. hint is how many records to
// make room for: what the payload can plausibly hold (a record with a name
// and a value takes some eight bytes or more), never what the header
// claims.
func openSenMLCBOR(data []byte) (senmlCBORPack, int, error) {
	pk := senmlCBORPack{r: cborReader{b: data, f: FormatSenMLCBOR}}
	r := &pk.r
	if len(data) == 0 {
		return pk, 0, r.errAt(0, "empty payload")
	}
	h, _, err := r.headSkipTags()
	if err != nil {
		return pk, 0, err
	}
	if h.major != cborArray {
		return pk, 0, r.errAt(h.off, "a SenML pack is an array, got major type %d", h.major)
	}
	if pk.n, err = r.containerLen(h, MaxRecords, "pack"); err != nil {
		return pk, 0, err
	}
	hint := pk.n
	if pk.n < 0 {
		hint = len(data) / 8
	}
	return pk, min(hint, (len(data)-r.off)/8+1), nil
}

// next reads the next record into rec; ok is false after the last one,
// once the end of the payload is checked. off is the record's offset.
func (pk *senmlCBORPack) next(rec *senmlRecord) (ok bool, off int, err error) {
	r := &pk.r
	if (pk.n >= 0 && pk.i == pk.n) || (pk.n < 0 && r.peekBreak()) {
		if !r.done() {
			return false, r.off, r.errAt(r.off, "%d bytes after the pack", len(r.b)-r.off)
		}
		return false, r.off, nil
	}
	if pk.i >= MaxRecords {
		return false, r.off, limitErr(r.f, r.off, pk.i, "", "more than %d records", MaxRecords)
	}
	off = r.off
	*rec = senmlRecord{}
	if err := readSenMLCBORRecord(r, rec, pk.i); err != nil {
		return false, off, err
	}
	pk.i++
	return true, off, nil
}

// senmlSink receives the records of a pack as they are read.
type senmlSink interface {
	begin(n int)
	add(r *senmlRecord, idx, off int) error
}

// readSenMLCBOR walks a SenML CBOR pack and hands each record to sink.
func readSenMLCBOR(data []byte, sink senmlSink) error {
	pk, hint, err := openSenMLCBOR(data)
	if err != nil {
		return err
	}
	sink.begin(hint)
	var rec senmlRecord
	for {
		ok, off, err := pk.next(&rec)
		if err != nil || !ok {
			return err
		}
		if err := sink.add(&rec, pk.i-1, off); err != nil {
			return err
		}
	}
}

// readSenMLCBORRecord reads one record map into rec.
func readSenMLCBORRecord(r *cborReader, rec *senmlRecord, idx int) error {
	h, err := r.head()
	if err != nil {
		return inRecord(err, idx, "")
	}
	if h.major != cborMap {
		return decodeErr(r.f, h.off, idx, "", "a SenML record is a map, got major type %d", h.major)
	}
	n, err := r.containerLen(h, 64, "record")
	if err != nil {
		return inRecord(err, idx, "")
	}
	for j := 0; ; j++ {
		if n >= 0 && j == n {
			return nil
		}
		if n < 0 {
			if r.peekBreak() {
				return nil
			}
			if j >= 64 {
				return limitErr(r.f, r.off, idx, "", "record with more than 64 fields")
			}
		}
		kh, err := r.head()
		if err != nil {
			return inRecord(err, idx, "label")
		}
		var label int64
		switch kh.major {
		case cborUint:
			label = int64(min(kh.arg, 1<<32))
		case cborNint:
			label = -1 - int64(min(kh.arg, 1<<32))
		case cborText:
			s, err := r.stringBody(kh)
			if err != nil {
				return inRecord(err, idx, "label")
			}
			if string(s) == "vlo" {
				if err := senmlCBORField(r, rec, sfVLO, idx, "vlo"); err != nil {
					return err
				}
				continue
			}
			if len(s) > 0 && s[len(s)-1] == '_' {
				// RFC 8428 §4.4: labels ending in "_" must be understood.
				return decodeErr(r.f, kh.off, idx, string(s), "unsupported must-understand field")
			}
			if err := r.skip(1); err != nil {
				return inRecord(err, idx, string(s))
			}
			continue
		default:
			return decodeErr(r.f, kh.off, idx, "label", "label of major type %d", kh.major)
		}
		bit, name := senmlLabelBit(label)
		if bit == 0 {
			if err := r.skip(1); err != nil {
				return inRecord(err, idx, strconv.FormatInt(label, 10))
			}
			continue
		}
		if err := senmlCBORField(r, rec, bit, idx, name); err != nil {
			return err
		}
	}
}

func senmlLabelBit(label int64) (senmlFields, string) {
	switch label {
	case senmlLabelBN:
		return sfBN, "bn"
	case senmlLabelBT:
		return sfBT, "bt"
	case senmlLabelBU:
		return sfBU, "bu"
	case senmlLabelBV:
		return sfBV, "bv"
	case senmlLabelBS:
		return sfBS, "bs"
	case senmlLabelBver:
		return sfBver, "bver"
	case senmlLabelN:
		return sfN, "n"
	case senmlLabelU:
		return sfU, "u"
	case senmlLabelV:
		return sfV, "v"
	case senmlLabelVS:
		return sfVS, "vs"
	case senmlLabelVB:
		return sfVB, "vb"
	case senmlLabelS:
		return sfS, "s"
	case senmlLabelT:
		return sfT, "t"
	case senmlLabelUT:
		return sfUT, "ut"
	case senmlLabelVD:
		return sfVD, "vd"
	}
	return 0, ""
}

// senmlCBORField reads the value of one field into rec.
func senmlCBORField(r *cborReader, rec *senmlRecord, bit senmlFields, idx int, name string) error {
	if rec.has&bit != 0 {
		return decodeErr(r.f, r.off, idx, name, "field appears twice")
	}
	rec.has |= bit
	h, _, err := r.headSkipTags()
	if err != nil {
		return inRecord(err, idx, name)
	}
	switch bit {
	case sfBN, sfBU, sfN, sfU, sfVS, sfVLO, sfVD:
		want, kind := byte(cborText), "text"
		if bit == sfVD {
			want, kind = cborBytes, "byte"
		}
		if h.major != want {
			return decodeErr(r.f, h.off, idx, name, "want a %s string, got major type %d", kind, h.major)
		}
		s, err := r.stringBody(h)
		if err != nil {
			return inRecord(err, idx, name)
		}
		switch bit {
		case sfBN:
			rec.bn = s
		case sfBU:
			rec.bu = s
		case sfN:
			rec.n = s
		case sfU:
			rec.u = s
		case sfVS:
			rec.vs = s
		case sfVLO:
			rec.vlo = s
		case sfVD:
			rec.vd = s
		}
		return nil
	case sfVB:
		if h.major != cborSimple || (h.info != cborTrue && h.info != cborFalse) {
			return decodeErr(r.f, h.off, idx, name, "want a boolean")
		}
		rec.vb = h.info == cborTrue
		return nil
	}
	num, ok := r.numberFrom(h)
	if !ok {
		return decodeErr(r.f, h.off, idx, name, "want a number, got major type %d", h.major)
	}
	switch bit {
	case sfBT:
		rec.bt = num
	case sfBV:
		rec.bv = num
	case sfBS:
	case sfBver:
		if num.kind != numInt {
			return decodeErr(r.f, h.off, idx, name, "want an integer version")
		}
		rec.bver = num.i
	case sfV:
		rec.v = num
	case sfS:
		rec.s = num
	case sfT:
		rec.t = num
	case sfUT:
		rec.ut = num
	}
	return nil
}

func appendCBORNumber(dst []byte, n cborNumber) []byte {
	switch n.kind {
	case numInt:
		return appendCBORInt(dst, n.i)
	case numUint:
		return appendCBORHead(dst, cborUint, n.u)
	}
	return appendCBORFloat(dst, n.f)
}

// appendSenMLCBORRecord writes one record map with its fields in the order
// RFC 8428's examples use: base fields, name, unit, time, then the value.
func appendSenMLCBORRecord(dst []byte, r *senmlRecord) []byte {
	n := 0
	for b := r.has; b != 0; b &= b - 1 {
		n++
	}
	dst = appendCBORHead(dst, cborMap, uint64(n))
	if r.has&sfBN != 0 {
		dst = appendCBORTextBytes(append(dst, 0x21), r.bn)
	}
	if r.has&sfBT != 0 {
		dst = appendCBORNumber(append(dst, 0x22), r.bt)
	}
	if r.has&sfBU != 0 {
		dst = appendCBORTextBytes(append(dst, 0x23), r.bu)
	}
	if r.has&sfBV != 0 {
		dst = appendCBORNumber(append(dst, 0x24), r.bv)
	}
	if r.has&sfBver != 0 {
		dst = appendCBORInt(append(dst, 0x20), r.bver)
	}
	if r.has&sfN != 0 {
		dst = appendCBORTextBytes(append(dst, senmlLabelN), r.n)
	}
	if r.has&sfU != 0 {
		dst = appendCBORTextBytes(append(dst, senmlLabelU), r.u)
	}
	if r.has&sfT != 0 {
		dst = appendCBORNumber(append(dst, senmlLabelT), r.t)
	}
	switch {
	case r.has&sfV != 0:
		dst = appendCBORNumber(append(dst, senmlLabelV), r.v)
	case r.has&sfVS != 0:
		dst = append(dst, senmlLabelVS)
		if r.vs != nil {
			dst = appendCBORTextBytes(dst, r.vs)
		} else {
			dst = appendCBORText(dst, r.vsStr)
		}
	case r.has&sfVB != 0:
		dst = appendCBORBool(append(dst, senmlLabelVB), r.vb)
	case r.has&sfVD != 0:
		dst = appendCBORBytes(append(dst, senmlLabelVD), r.vd)
	case r.has&sfVLO != 0:
		dst = appendCBORTextBytes(appendCBORText(dst, "vlo"), r.vlo)
	}
	return dst
}

// senmlFromRecord returns the wire form of record i under plan pl. nameBuf,
// bnBuf and auxBuf give the name, base name and an object link their bytes
// without allocating; the result is returned by value so that they can
// stay on the caller's stack.
func senmlFromRecord(pl *senmlPlan, r *Record, i int, nameBuf, bnBuf, auxBuf []byte) (w senmlRecord, err error) {
	if i == 0 && pl.useBN {
		w.has |= sfBN
		w.bn = pl.appendBaseName(bnBuf[:0])
	}
	if i == 0 && pl.useBT {
		w.has |= sfBT
		w.bt = absTimeNumber(pl.bt)
	}
	if !pl.whole {
		w.has |= sfN
		w.n = pl.appendName(nameBuf[:0], r.Path)
	}
	if t, ok := pl.recordTime(r); ok {
		w.has |= sfT
		w.t = t
	}
	field, err := senmlField(r.Value)
	if err != nil {
		return w, fmt.Errorf("record %d (%s): %w", i, r.Path, err)
	}
	switch field {
	case "v":
		w.has |= sfV
		w.v = valueNumber(r.Value)
	case "vs":
		w.has |= sfVS
		w.vsStr = r.Value.Str()
	case "vb":
		w.has |= sfVB
		w.vb = r.Value.Bool()
	case "vd":
		w.has |= sfVD
		w.vd = r.Value.Bytes()
		if w.vd == nil {
			w.vd = []byte{}
		}
	case "vlo":
		w.has |= sfVLO
		l := r.Value.Objlnk()
		aux := strconv.AppendUint(auxBuf[:0], uint64(l.ObjectID), 10)
		aux = append(aux, ':')
		w.vlo = strconv.AppendUint(aux, uint64(l.InstanceID), 10)
	}
	return w, nil
}

func encodeSenMLCBOR(base Path, recs []Record) ([]byte, error) {
	pl, err := planSenML(recs, false)
	if err != nil {
		return nil, err
	}
	// A record takes at most about 40 bytes besides its string or opaque
	// value: map head, name, time and a double.
	size := 1 + 32
	for i := range recs {
		size += 40 + len(recs[i].Value.Str()) + len(recs[i].Value.Bytes())
	}
	out := appendCBORHead(make([]byte, 0, size), cborArray, uint64(len(recs)))
	var nameBuf, bnBuf, auxBuf [32]byte
	for i := range recs {
		w, err := senmlFromRecord(&pl, &recs[i], i, nameBuf[:], bnBuf[:], auxBuf[:])
		if err != nil {
			return nil, err
		}
		out = appendSenMLCBORRecord(out, &w)
	}
	return out, nil
}

// encodeSenMLCBORPaths writes the Read-Composite / Observe-Composite request
// body: one record per path carrying only its name (Core 1.1 §6.3.8,
// §7.4.5).
func encodeSenMLCBORPaths(paths []Path) ([]byte, error) {
	out := appendCBORHead(make([]byte, 0, 1+len(paths)*16), cborArray, uint64(len(paths)))
	var buf [32]byte
	for _, p := range paths {
		out = append(out, 0xa1, senmlLabelN)
		out = appendCBORTextBytes(out, appendPathBytes(buf[:0], p))
	}
	return out, nil
}

// appendPathBytes writes p as "/3/0/1" ("/" for the root).
func appendPathBytes(dst []byte, p Path) []byte {
	if p.Len() == 0 {
		return append(dst, '/')
	}
	for i := 0; i < p.Len(); i++ {
		dst = strconv.AppendUint(append(dst, '/'), uint64(p.ids[i]), 10)
	}
	return dst
}

// senmlPathSink collects the names of a path-list pack.
type senmlPathSink struct {
	f   Format
	st  senmlResolver
	out []Path
}

func (s *senmlPathSink) begin(n int) { s.out = make([]Path, 0, min(n, initialRecords)) }

func (s *senmlPathSink) add(r *senmlRecord, idx, off int) error {
	if r.has&(sfValues|sfS) != 0 {
		return decodeErr(s.f, off, idx, "v", "a path list record carries a value")
	}
	if r.has&(sfN|sfBN) == 0 {
		return decodeErr(s.f, off, idx, "n", "record has no name")
	}
	s.st.resolve(r)
	p, ok := parseNamePath(r.bn, r.n)
	if !ok {
		return &DecodeError{Format: s.f, Offset: off, Record: idx, Field: "n",
			Err: fmt.Errorf("%w: name %q is not an LwM2M path", ErrInvalidPath, r.fullName())}
	}
	s.out = append(s.out, p)
	return nil
}

func decodeSenMLCBORPaths(data []byte) ([]Path, error) {
	s := senmlPathSink{f: FormatSenMLCBOR}
	if err := readSenMLCBOR(data, &s); err != nil {
		return nil, err
	}
	return s.out, nil
}
