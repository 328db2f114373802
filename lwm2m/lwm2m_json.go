package lwm2m

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// LwM2M JSON, application/vnd.oma.lwm2m+json, content format 11543
// (Core 1.0 §6.4.4, kept in 1.1/1.2 for 1.0 clients). One object: the base
// name "bn", an optional base time "bt" and the entries "e", each with a
// name "n" relative to bn, one of "v" (number), "bv" (boolean), "sv"
// (string; opaque as base64) or "ov" (object link "O:I"), and a time "t"
// relative to bt.

// lwm2mJSONField maps the fields of the 1.0 format onto the SenML ones
// whose typing rules they share.
func lwm2mJSONField(senml string) string {
	switch senml {
	case "vs":
		return "sv"
	case "vb":
		return "bv"
	case "vlo":
		return "ov"
	}
	return senml
}

func decodeLwM2MJSON(base Path, data []byte, reg *Registry) ([]Record, error) {
	return decodeLwM2MJSONAt(base, data, reg, time.Now)
}

func decodeLwM2MJSONAt(base Path, data []byte, reg *Registry, now func() time.Time) ([]Record, error) {
	s := jsonScanner{b: data, f: FormatLwM2MJSON}
	if s.peek() == 0 {
		return nil, s.errAt(0, "empty payload")
	}
	// First pass: the base fields, wherever they are in the object; the
	// entries are resolved against them in the second.
	var bn []byte
	var bt cborNumber
	var hasBN, hasBT bool
	eOff := -1
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	if s.peek() == '}' {
		s.off++
	} else {
		for {
			koff := s.off
			k, err := s.str()
			if err != nil {
				return nil, err
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			switch string(k) {
			case "bn":
				if hasBN {
					return nil, decodeErr(s.f, koff, -1, "bn", "field appears twice")
				}
				if s.peek() != '"' {
					return nil, decodeErr(s.f, s.off, -1, "bn", "want a string")
				}
				if bn, err = s.str(); err != nil {
					return nil, inRecord(err, -1, "bn")
				}
				hasBN = true
			case "bt":
				if hasBT {
					return nil, decodeErr(s.f, koff, -1, "bt", "field appears twice")
				}
				if c := s.peek(); c != '-' && (c < '0' || c > '9') {
					return nil, decodeErr(s.f, s.off, -1, "bt", "want a number")
				}
				if bt, err = s.number(); err != nil {
					return nil, inRecord(err, -1, "bt")
				}
				hasBT = true
			case "e":
				if eOff >= 0 {
					return nil, decodeErr(s.f, koff, -1, "e", "field appears twice")
				}
				if s.peek() != '[' {
					return nil, decodeErr(s.f, s.off, -1, "e", "want an array")
				}
				eOff = s.off
				if err := s.skip(1); err != nil {
					return nil, inRecord(err, -1, "e")
				}
			default:
				if err := s.skip(1); err != nil {
					return nil, inRecord(err, -1, string(k))
				}
			}
			more, err := s.more('}')
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	if eOff < 0 {
		return nil, decodeErr(s.f, len(data), -1, "e", "no entries array")
	}

	d := senmlDecoder{f: FormatLwM2MJSON, base: base, reg: reg, now: now}
	d.out = make([]Record, 0, min(initialRecords, len(data)/16+1))
	s.off = eOff + 1
	if s.peek() == ']' {
		return d.out, nil
	}
	var rec senmlRecord
	for i := 0; ; i++ {
		if i >= MaxRecords {
			return nil, limitErr(s.f, s.off, i, "", "more than %d entries", MaxRecords)
		}
		s.ws()
		off := s.off
		rec = senmlRecord{}
		if err := readLwM2MJSONEntry(&s, &rec, i); err != nil {
			return nil, err
		}
		if i == 0 {
			// The base fields act as if the first entry carried them.
			if hasBN {
				rec.has, rec.bn = rec.has|sfBN, bn
			}
			if hasBT {
				rec.has, rec.bt = rec.has|sfBT, bt
			}
		}
		if err := d.add(&rec, i, off); err != nil {
			if de, ok := err.(*DecodeError); ok {
				de.Field = lwm2mJSONField(de.Field)
			}
			return nil, err
		}
		more, err := s.more(']')
		if err != nil {
			return nil, inRecord(err, i, "")
		}
		if !more {
			return d.out, nil
		}
	}
}

func readLwM2MJSONEntry(s *jsonScanner, rec *senmlRecord, idx int) error {
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
		var bit senmlFields
		switch string(k) {
		case "n":
			bit = sfN
		case "v":
			bit = sfV
		case "sv":
			bit = sfVS
		case "bv":
			bit = sfVB
		case "ov":
			bit = sfVLO
		case "t":
			bit = sfT
		}
		switch {
		case bit == 0:
			if err := s.skip(1); err != nil {
				return inRecord(err, idx, string(k))
			}
		case rec.has&bit != 0:
			return decodeErr(s.f, koff, idx, string(k), "field appears twice")
		default:
			rec.has |= bit
			// The value syntax is SenML JSON's; only the names differ.
			if err := senmlJSONField(s, rec, bit, idx, string(k)); err != nil {
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

func encodeLwM2MJSON(base Path, recs []Record) ([]byte, error) {
	pl, err := planSenML(recs, true)
	if err != nil {
		return nil, err
	}
	// Names are relative to the requested path, as in Core 1.0 §6.4.4's
	// examples ("bn":"/3/0/", "n":"7/0"); a single-resource Read names
	// the resource in bn and leaves n out.
	allBase := true
	for i := range recs {
		if recs[i].Path != base {
			allBase = false
			break
		}
	}
	size := 16
	for i := range recs {
		size += 24 + len(recs[i].Value.Str()) + len(recs[i].Value.Bytes())*4/3
	}
	out := make([]byte, 0, size)
	out = append(out, `{"bn":"`...)
	if base.IsRoot() {
		out = append(out, '/')
	} else {
		out = appendPathBytes(out, base)
		if !allBase {
			out = append(out, '/')
		}
	}
	out = append(out, '"')
	if pl.useBT {
		out = append(out, `,"bt":`...)
		out, _ = appendJSONNumber(out, absTimeNumber(pl.bt))
	}
	out = append(out, `,"e":[`...)
	for i := range recs {
		r := &recs[i]
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '{')
		if !allBase {
			out = append(out, `"n":"`...)
			for j := base.Len(); j < r.Path.Len(); j++ {
				if j > base.Len() {
					out = append(out, '/')
				}
				out = strconv.AppendUint(out, uint64(r.Path.ids[j]), 10)
			}
			out = append(out, `",`...)
		}
		if out, err = appendLwM2MJSONValue(out, r.Value); err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", i, r.Path, err)
		}
		if t, ok := pl.recordTime(r); ok {
			out = append(out, `,"t":`...)
			out, _ = appendJSONNumber(out, t)
		}
		out = append(out, '}')
	}
	return append(out, "]}"...), nil
}

func appendLwM2MJSONValue(out []byte, v Value) ([]byte, error) {
	switch v.Type() {
	case TypeString, TypeCorelnk:
		return appendJSONString(append(out, `"sv":`...), v.Str()), nil
	case TypeOpaque:
		out = append(out, `"sv":"`...)
		out = base64.StdEncoding.AppendEncode(out, v.Bytes())
		return append(out, '"'), nil
	case TypeBoolean:
		if v.Bool() {
			return append(out, `"bv":true`...), nil
		}
		return append(out, `"bv":false`...), nil
	case TypeObjlnk:
		return appendJSONString(append(out, `"ov":`...), v.Objlnk().String()), nil
	case TypeInteger, TypeUnsigned, TypeFloat, TypeTime:
		out = append(out, `"v":`...)
		out, ok := appendJSONNumber(out, valueNumber(v))
		if !ok {
			return nil, fmt.Errorf("%w: %s has no JSON form", ErrType, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: an entry needs a value, got %s", ErrType, v)
}
