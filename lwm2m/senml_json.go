package lwm2m

import (
	"encoding/base64"
	"fmt"
	"time"
)

// SenML JSON, application/senml+json, content format 110 (RFC 8428 §5;
// Core 1.1 §7.4.4). A pack is an array of objects with the labels of
// RFC 8428 Table 4 and, for LwM2M object links, "vlo".

func decodeSenMLJSON(base Path, data []byte, reg *Registry) ([]Record, error) {
	return decodeSenMLJSONAt(base, data, reg, time.Now)
}

// decodeSenMLJSONAt is decodeSenMLJSON with the clock that relative times
// (RFC 8428 §4.5.3) are resolved against.
func decodeSenMLJSONAt(base Path, data []byte, reg *Registry, now func() time.Time) ([]Record, error) {
	pk, hint, err := openSenMLJSON(data)
	if err != nil {
		return nil, err
	}
	d := senmlDecoder{f: FormatSenMLJSON, base: base, reg: reg, now: now}
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

// senmlJSONPack reads the records of a SenML JSON pack one by one.
type senmlJSONPack struct {
	s    jsonScanner
	i    int // records read
	done bool
}

// openSenMLJSON reads the opening bracket; hint is how many records to
// make room for (a record with a name and a value takes some 16 bytes or
// more).
func openSenMLJSON(data []byte) (senmlJSONPack, int, error) {
	pk := senmlJSONPack{s: jsonScanner{b: data, f: FormatSenMLJSON}}
	s := &pk.s
	if s.peek() == 0 {
		return pk, 0, s.errAt(0, "empty payload")
	}
	if err := s.expect('['); err != nil {
		return pk, 0, err
	}
	if s.peek() == ']' {
		s.off++
		pk.done = true
	}
	return pk, len(data)/16 + 1, nil
}

// next reads the next record into rec; ok is false after the last one,
// once the end of the payload is checked.
func (pk *senmlJSONPack) next(rec *senmlRecord) (ok bool, off int, err error) {
	s := &pk.s
	if pk.done {
		return false, s.off, s.end()
	}
	if pk.i >= MaxRecords {
		return false, s.off, limitErr(s.f, s.off, pk.i, "", "more than %d records", MaxRecords)
	}
	s.ws()
	off = s.off
	*rec = senmlRecord{}
	if err := readSenMLJSONRecord(s, rec, pk.i); err != nil {
		return false, off, err
	}
	more, err := s.more(']')
	if err != nil {
		return false, off, inRecord(err, pk.i, "")
	}
	pk.done = !more
	pk.i++
	return true, off, nil
}

// readSenMLJSON walks a SenML JSON pack and hands each record to sink.
func readSenMLJSON(data []byte, sink senmlSink) error {
	pk, hint, err := openSenMLJSON(data)
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

func senmlJSONLabel(k []byte) (senmlFields, string) {
	switch string(k) {
	case "bn":
		return sfBN, "bn"
	case "bt":
		return sfBT, "bt"
	case "bu":
		return sfBU, "bu"
	case "bv":
		return sfBV, "bv"
	case "bs":
		return sfBS, "bs"
	case "bver":
		return sfBver, "bver"
	case "n":
		return sfN, "n"
	case "u":
		return sfU, "u"
	case "v":
		return sfV, "v"
	case "vs":
		return sfVS, "vs"
	case "vb":
		return sfVB, "vb"
	case "vd":
		return sfVD, "vd"
	case "vlo":
		return sfVLO, "vlo"
	case "s":
		return sfS, "s"
	case "t":
		return sfT, "t"
	case "ut":
		return sfUT, "ut"
	}
	return 0, ""
}

func readSenMLJSONRecord(s *jsonScanner, rec *senmlRecord, idx int) error {
	if err := s.expect('{'); err != nil {
		return inRecord(err, idx, "")
	}
	if s.peek() == '}' {
		s.off++
		return nil
	}
	for {
		koff := s.off
		k, err := s.str()
		if err != nil {
			return inRecord(err, idx, "label")
		}
		if err := s.expect(':'); err != nil {
			return inRecord(err, idx, string(k))
		}
		bit, name := senmlJSONLabel(k)
		switch {
		case bit == 0 && len(k) > 0 && k[len(k)-1] == '_':
			// RFC 8428 §4.4: labels ending in "_" must be understood.
			return decodeErr(s.f, koff, idx, string(k), "unsupported must-understand field")
		case bit == 0:
			if err := s.skip(1); err != nil {
				return inRecord(err, idx, string(k))
			}
		case rec.has&bit != 0:
			return decodeErr(s.f, koff, idx, name, "field appears twice")
		default:
			rec.has |= bit
			if err := senmlJSONField(s, rec, bit, idx, name); err != nil {
				return err
			}
		}
		more, err := s.more('}')
		if err != nil {
			return inRecord(err, idx, "")
		}
		if !more {
			return nil
		}
	}
}

func senmlJSONField(s *jsonScanner, rec *senmlRecord, bit senmlFields, idx int, name string) error {
	voff := s.off
	switch bit {
	case sfBN, sfBU, sfN, sfU, sfVS, sfVLO, sfVD:
		if s.peek() != '"' {
			return decodeErr(s.f, s.off, idx, name, "want a string")
		}
		v, err := s.str()
		if err != nil {
			return inRecord(err, idx, name)
		}
		switch bit {
		case sfBN:
			rec.bn = v
		case sfBU:
			rec.bu = v
		case sfN:
			rec.n = v
		case sfU:
			rec.u = v
		case sfVS:
			rec.vs = v
		case sfVLO:
			rec.vlo = v
		case sfVD:
			b, err := decodeBase64Lenient(v)
			if err != nil {
				return decodeErr(s.f, voff, idx, name, "data value is not base64url: %v", err)
			}
			rec.vd = b
		}
		return nil
	case sfVB:
		l, err := s.literal()
		if err != nil || l < 0 {
			return decodeErr(s.f, voff, idx, name, "want true or false")
		}
		rec.vb = l == 1
		return nil
	}
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return decodeErr(s.f, s.off, idx, name, "want a number")
	}
	num, err := s.number()
	if err != nil {
		return inRecord(err, idx, name)
	}
	switch bit {
	case sfBT:
		rec.bt = num
	case sfBV:
		rec.bv = num
	case sfBS:
	case sfBver:
		if num.kind != numInt {
			return decodeErr(s.f, voff, idx, name, "want an integer version")
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

// appendSenMLJSONRecord writes one record object, fields in the order of
// RFC 8428's examples. It fails only on a non-finite float.
func appendSenMLJSONRecord(dst []byte, r *senmlRecord) ([]byte, error) {
	dst = append(dst, '{')
	first := true
	key := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(append(append(dst, '"'), k...), '"', ':')
	}
	num := func(k string, n cborNumber) error {
		key(k)
		var ok bool
		if dst, ok = appendJSONNumber(dst, n); !ok {
			return fmt.Errorf("%w: %s %v has no JSON form", ErrType, k, n.f)
		}
		return nil
	}
	if r.has&sfBN != 0 {
		key("bn")
		dst = appendJSONString(dst, r.bn)
	}
	if r.has&sfBT != 0 {
		if err := num("bt", r.bt); err != nil {
			return nil, err
		}
	}
	if r.has&sfBU != 0 {
		key("bu")
		dst = appendJSONString(dst, r.bu)
	}
	if r.has&sfBV != 0 {
		if err := num("bv", r.bv); err != nil {
			return nil, err
		}
	}
	if r.has&sfBver != 0 {
		_ = num("bver", cborNumber{kind: numInt, i: r.bver})
	}
	if r.has&sfN != 0 {
		key("n")
		dst = appendJSONString(dst, r.n)
	}
	if r.has&sfU != 0 {
		key("u")
		dst = appendJSONString(dst, r.u)
	}
	if r.has&sfT != 0 {
		if err := num("t", r.t); err != nil {
			return nil, err
		}
	}
	switch {
	case r.has&sfV != 0:
		if err := num("v", r.v); err != nil {
			return nil, err
		}
	case r.has&sfVS != 0:
		key("vs")
		if r.vs != nil {
			dst = appendJSONString(dst, r.vs)
		} else {
			dst = appendJSONString(dst, r.vsStr)
		}
	case r.has&sfVB != 0:
		key("vb")
		if r.vb {
			dst = append(dst, "true"...)
		} else {
			dst = append(dst, "false"...)
		}
	case r.has&sfVD != 0:
		key("vd")
		dst = append(dst, '"')
		dst = base64.RawURLEncoding.AppendEncode(dst, r.vd)
		dst = append(dst, '"')
	case r.has&sfVLO != 0:
		key("vlo")
		dst = appendJSONString(dst, r.vlo)
	}
	return append(dst, '}'), nil
}

func encodeSenMLJSON(base Path, recs []Record) ([]byte, error) {
	pl, err := planSenML(recs, true)
	if err != nil {
		return nil, err
	}
	// A record takes at most about 64 bytes besides its string or opaque
	// value: braces, keys, name, time and a number.
	size := 2 + 64
	for i := range recs {
		size += 64 + len(recs[i].Value.Str())*6/5 + len(recs[i].Value.Bytes())*4/3
	}
	out := append(make([]byte, 0, size), '[')
	var nameBuf, bnBuf, auxBuf [32]byte
	for i := range recs {
		w, err := senmlFromRecord(&pl, &recs[i], i, nameBuf[:], bnBuf[:], auxBuf[:])
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = appendSenMLJSONRecord(out, &w); err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", i, recs[i].Path, err)
		}
	}
	return append(out, ']'), nil
}

// encodeSenMLJSONPaths writes the Read-Composite / Observe-Composite request
// body: [{"n":"/3/0/0"},…] (Core 1.1 §6.3.8, §7.4.4).
func encodeSenMLJSONPaths(paths []Path) ([]byte, error) {
	out := append(make([]byte, 0, 2+len(paths)*20), '[')
	for i, p := range paths {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"n":"`...)
		out = appendPathBytes(out, p)
		out = append(out, `"}`...)
	}
	return append(out, ']'), nil
}

func decodeSenMLJSONPaths(data []byte) ([]Path, error) {
	s := senmlPathSink{f: FormatSenMLJSON}
	if err := readSenMLJSON(data, &s); err != nil {
		return nil, err
	}
	return s.out, nil
}
