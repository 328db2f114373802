package lwm2m

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"
)

// This file holds what SenML JSON and SenML CBOR share: the record as the
// wire carries it, resolution of base fields (RFC 8428 §4.6), the LwM2M
// reading of names as paths and of values as typed resources (Core 1.1
// §7.4.4, §7.4.5), and the choices the encoders make.

// senmlFields marks which fields a record carries.
type senmlFields uint32

const (
	sfBN senmlFields = 1 << iota
	sfBT
	sfBU
	sfBV
	sfBS
	sfBver
	sfN
	sfU
	sfV
	sfVS
	sfVB
	sfVD
	sfVLO
	sfS
	sfT
	sfUT
)

const sfValues = sfV | sfVS | sfVB | sfVD | sfVLO

// senmlRecord is one SenML record as written on the wire. Byte slices may
// alias the input and are only valid until the next record is read.
type senmlRecord struct {
	has  senmlFields
	bn   []byte
	bt   cborNumber
	bu   []byte
	bv   cborNumber
	bver int64
	n    []byte
	u    []byte
	v    cborNumber
	vs   []byte
	vb   bool
	vd   []byte // decoded bytes
	vlo  []byte
	s    cborNumber
	t    cborNumber
	ut   cborNumber

	// Set by resolution: the resolved time in seconds.
	tf float64
	// Set by encoders: a string value written as vs when vs is nil.
	vsStr string
}

// initialRecords caps the records a decoder reserves room for up front.
const initialRecords = 256

// senmlTimeAbsolute is 2**28: resolved times below it are relative to "now"
// (RFC 8428 §4.5.3).
const senmlTimeAbsolute = 1 << 28

// senmlResolver carries the base fields from record to record
// (RFC 8428 §4.6: a base field applies until the next one replaces it).
type senmlResolver struct {
	bn    []byte
	bt    float64
	bv    cborNumber
	hasBV bool
	bu    []byte
}

// resolve applies the base fields to r: r.bn becomes the base name in
// effect, so that the full name is r.bn followed by r.n (see
// parseNamePath and fullName; not concatenated, to avoid a copy), r.tf
// the resolved time (absolute, or relative to now when below 2**28), r.v
// the value with the base value added and r.u the unit. It reports whether
// the record or a base time gave a time at all.
func (st *senmlResolver) resolve(r *senmlRecord) (timed bool) {
	if r.has&sfBN != 0 {
		// Aliasing is safe: the input is not modified while it is read.
		st.bn = r.bn
	}
	if r.has&sfBT != 0 {
		st.bt = r.bt.float()
	}
	if r.has&sfBV != 0 {
		st.bv, st.hasBV = r.bv, true
	}
	if r.has&sfBU != 0 {
		st.bu = r.bu
	}
	r.bn = st.bn
	if r.has&sfU == 0 {
		r.u = st.bu
	}
	timed = r.has&sfT != 0 || st.bt != 0
	r.tf = st.bt
	if r.has&sfT != 0 {
		r.tf += r.t.float()
	}
	if r.has&sfV != 0 && st.hasBV {
		r.v = addNumbers(st.bv, r.v)
	}
	return timed
}

func addNumbers(a, b cborNumber) cborNumber {
	if a.kind == numInt && b.kind == numInt {
		s := a.i + b.i
		if (s > a.i) == (b.i > 0) {
			return cborNumber{kind: numInt, i: s}
		}
	}
	return cborNumber{kind: numFloat, f: a.float() + b.float()}
}

// senmlMaxTime bounds resolved times (about ±35000 years) so that every
// accepted time converts to time.Time and back without overflow.
const senmlMaxTime = 1 << 40

// senmlTime turns a resolved SenML time into a record time. Zero means the
// payload gave no time (or "now"), which callers stamp with the receive
// time; values below 2**28, negative ones included, are relative to now
// (RFC 8428 §4.5.3). Times are kept to the microsecond: a float64 holds an
// epoch time to about 0.2 µs, so "…076.001" comes back as 1 ms, not 999 927
// ns.
func senmlTime(t float64, timed bool, now time.Time) (time.Time, bool) {
	if !timed || t == 0 {
		return time.Time{}, true
	}
	if math.IsNaN(t) || math.Abs(t) > senmlMaxTime {
		return time.Time{}, false
	}
	us := math.Round(t * 1e6)
	if t < senmlTimeAbsolute {
		return now.Add(time.Duration(us) * time.Microsecond).Truncate(time.Microsecond).UTC(), true
	}
	sec := math.Floor(us / 1e6)
	return time.Unix(int64(sec), int64(us-sec*1e6)*1000).UTC(), true
}

// fullName is the resolved name of a resolved record, for messages.
func (r *senmlRecord) fullName() string { return string(r.bn) + string(r.n) }

// parseNamePath parses the resolved SenML name a+b (base name and name) as
// an LwM2M path ("/3/0/1", Core §7.4.4) without concatenating or
// allocating. A leading and a trailing slash are optional.
func parseNamePath(a, b []byte) (Path, bool) {
	n := len(a) + len(b)
	at := func(i int) byte {
		if i < len(a) {
			return a[i]
		}
		return b[i-len(a)]
	}
	var p Path
	i := 0
	if i < n && at(i) == '/' {
		i++
	}
	if n > i && at(n-1) == '/' {
		n--
	}
	if i == n {
		return p, true // the root
	}
	for {
		if p.n == 4 {
			return Path{}, false
		}
		start := i
		v := 0
		for i < n && at(i) != '/' {
			c := at(i)
			if c < '0' || c > '9' {
				return Path{}, false
			}
			v = v*10 + int(c-'0')
			if v > MaxID {
				return Path{}, false
			}
			i++
		}
		if i == start || (i-start > 1 && at(start) == '0') {
			return Path{}, false
		}
		p.ids[p.n] = uint16(v)
		p.n++
		if i == n {
			return p, true
		}
		i++ // the slash
		if i == n {
			return Path{}, false
		}
	}
}

// senmlDecoder turns wire records into LwM2M records.
type senmlDecoder struct {
	f    Format
	base Path
	reg  *Registry
	st   senmlResolver
	now  func() time.Time
	nowT time.Time
	out  []Record
}

// add resolves one wire record and appends the LwM2M record it carries.
func (d *senmlDecoder) add(r *senmlRecord, idx, off int) error {
	timed := d.st.resolve(r)
	if r.has&sfValues == 0 {
		if r.has&(sfN|sfS) == 0 {
			return nil // a record that only sets base fields
		}
		return decodeErr(d.f, off, idx, "v", "record %q has no value", r.fullName())
	}
	if bits := r.has & sfValues; bits&(bits-1) != 0 {
		return decodeErr(d.f, off, idx, "v", "record %q has more than one value field", r.fullName())
	}
	p, ok := parseNamePath(r.bn, r.n)
	if !ok {
		return &DecodeError{Format: d.f, Offset: off, Record: idx, Field: "n",
			Err: fmt.Errorf("%w: name %q is not an LwM2M path", ErrInvalidPath, r.fullName())}
	}
	if p.Len() < 3 {
		return &DecodeError{Format: d.f, Offset: off, Record: idx, Field: "n",
			Err: fmt.Errorf("%w: value at %s, not at a resource or resource instance", ErrInvalidPath, p)}
	}
	if !d.base.Contains(p) {
		return &DecodeError{Format: d.f, Offset: off, Record: idx, Field: "n",
			Err: fmt.Errorf("%w: %s is not under the requested %s", ErrInvalidPath, p, d.base)}
	}
	v, field, err := senmlValue(r, p, d.reg)
	if err != nil {
		return typeErr(d.f, off, idx, field, err)
	}
	if len(d.out) >= MaxRecords {
		return limitErr(d.f, off, idx, "", "more than %d records", MaxRecords)
	}
	rec := Record{Path: p, Value: v}
	if timed {
		if r.tf < senmlTimeAbsolute && r.tf != 0 && d.nowT.IsZero() {
			d.nowT = d.now() // read the clock once, and only when needed
		}
		var ok bool
		if rec.Time, ok = senmlTime(r.tf, timed, d.nowT); !ok {
			return decodeErr(d.f, off, idx, "t", "time %v out of range", r.tf)
		}
	}
	d.out = append(d.out, rec)
	return nil
}

// senmlValue types a record's value: the model's type when the registry
// knows the resource, otherwise the type the field shows (Core §7.4.4:
// v number, vs string, vb boolean, vd opaque, vlo object link).
func senmlValue(r *senmlRecord, p Path, reg *Registry) (Value, string, error) {
	var v Value
	var field string
	switch {
	case r.has&sfV != 0:
		v, field = r.v.value(), "v"
	case r.has&sfVS != 0:
		v, field = String(string(r.vs)), "vs"
	case r.has&sfVB != 0:
		v, field = Bool(r.vb), "vb"
	case r.has&sfVD != 0:
		v, field = Opaque(append([]byte(nil), r.vd...)), "vd"
	case r.has&sfVLO != 0:
		vlo := r.vlo
		if len(vlo) > 0 && vlo[len(vlo)-1] == 0 {
			// Zephyr's encoder counts the C string's terminating NUL.
			vlo = vlo[:len(vlo)-1]
		}
		l, err := ParseObjlnk(string(vlo))
		if err != nil {
			return Value{}, "vlo", err
		}
		v, field = ObjlnkValue(l), "vlo"
	}
	return applyModel(v, field, p, reg)
}

// applyModel gives v the type the object model declares for p, when the
// registry knows it. field names the wire form the value came in ("v" a
// number, "vs" text, "vb" a boolean, "vd" bytes, "vlo" an object link);
// it limits the conversions to those that form allows.
func applyModel(v Value, field string, p Path, reg *Registry) (Value, string, error) {
	mt, known := typeOf(reg, p)
	if !known || mt == TypeNone || mt == v.Type() {
		return v, field, nil
	}
	switch field {
	case "v":
		if mt == TypeString || mt == TypeOpaque || mt == TypeObjlnk || mt == TypeCorelnk {
			return Value{}, field, fmt.Errorf("%w: %s is %s in the model, the payload has a number", ErrType, p, mt)
		}
	case "vb":
		if mt != TypeBoolean {
			return Value{}, field, fmt.Errorf("%w: %s is %s in the model, the payload has a boolean", ErrType, p, mt)
		}
	case "vd":
		if mt != TypeString && mt != TypeCorelnk {
			return Value{}, field, fmt.Errorf("%w: %s is %s in the model, the payload has opaque data", ErrType, p, mt)
		}
	case "vlo":
		return Value{}, field, fmt.Errorf("%w: %s is %s in the model, the payload has an object link", ErrType, p, mt)
	}
	w, err := v.As(mt)
	if err != nil {
		return Value{}, field, fmt.Errorf("%s: %w", p, err)
	}
	return w, field, nil
}

// senmlPlan holds the encoder's choice of base name and base time.
type senmlPlan struct {
	bn    Path // common prefix written once as bn, when useBN
	useBN bool
	whole bool      // every record has the path bn: names are left out
	bt    time.Time // base time, when useBT
	useBT bool
}

// planSenML chooses a base name when it saves bytes and a base time when
// every record carries a time (Zephyr's cached time series, Send): then
// each record only writes the offset from the first.
func planSenML(recs []Record, forJSON bool) (senmlPlan, error) {
	var pl senmlPlan
	if len(recs) == 0 {
		return pl, nil
	}
	common := recs[0].Path
	minLen, maxLen := common.Len(), common.Len()
	allTimed := true
	for i := range recs {
		p := recs[i].Path
		if p.Len() < 3 {
			return pl, fmt.Errorf("%w: record %d: %s is not a resource or resource instance", ErrInvalidPath, i, p)
		}
		common = commonPrefix(common, p)
		minLen, maxLen = min(minLen, p.Len()), max(maxLen, p.Len())
		if t := recs[i].Time; !t.IsZero() {
			if err := checkSenMLTime(t); err != nil {
				return pl, fmt.Errorf("record %d: %w", i, err)
			}
		} else {
			allTimed = false
		}
	}
	// Otherwise every record keeps a non-empty name: the base stops above
	// the shortest path.
	if len(recs) > 1 && common.Len() == maxLen {
		// One path throughout (a time series): bn names it, records
		// carry no name at all (RFC 8428 §4.5.1: the name is bn + n).
		pl.useBN, pl.whole, pl.bn = true, true, common
	}
	common = common.Truncate(minLen - 1)
	if !pl.whole && common.Len() > 0 && len(recs) > 1 {
		pfx := len(common.String()) + 1 // "/3/0/"
		// Without bn each name carries the prefix; with bn it is written
		// once, with its key: "bn":"…", (8 bytes of JSON syntax) or the
		// CBOR key and text head (2 bytes; longer heads are not reached
		// by paths of at most 24 bytes).
		overhead := 2
		if forJSON {
			overhead = 8
		}
		pl.useBN = len(recs)*pfx > pfx+overhead
		pl.bn = common
	}
	if allTimed && len(recs) > 1 {
		pl.useBT, pl.bt = true, recs[0].Time
	}
	return pl, nil
}

func checkSenMLTime(t time.Time) error {
	if s := t.Unix(); s < senmlTimeAbsolute {
		return fmt.Errorf("%w: time %s is before 1978-07-04 and would read as relative in SenML (RFC 8428 §4.5.3)", ErrType, t.UTC().Format(time.RFC3339))
	}
	return nil
}

func commonPrefix(a, b Path) Path {
	n := min(a.Len(), b.Len())
	for i := 0; i < n; i++ {
		if a.ids[i] != b.ids[i] {
			return a.Truncate(i)
		}
	}
	return a.Truncate(n)
}

// appendName writes the record name: the path relative to the plan's base
// name, or the full path.
func (pl *senmlPlan) appendName(dst []byte, p Path) []byte {
	start := 0
	if pl.useBN {
		start = pl.bn.Len()
	}
	for i := start; i < p.Len(); i++ {
		if i > start || !pl.useBN {
			dst = append(dst, '/')
		}
		dst = strconv.AppendUint(dst, uint64(p.ids[i]), 10)
	}
	return dst
}

// appendBaseName writes the base name "/3/0/".
func (pl *senmlPlan) appendBaseName(dst []byte) []byte {
	dst = appendPathBytes(dst, pl.bn)
	if pl.whole {
		return dst
	}
	return append(dst, '/')
}

// senmlTimeNumber is a time (or a time offset) as a SenML number: whole
// seconds as an integer, otherwise float seconds.
func senmlTimeNumber(d time.Duration) cborNumber {
	if d%time.Second == 0 {
		return cborNumber{kind: numInt, i: int64(d / time.Second)}
	}
	return cborNumber{kind: numFloat, f: d.Seconds()}
}

// recordTime is the t field of record r under plan pl, and whether to
// write it.
func (pl *senmlPlan) recordTime(r *Record) (cborNumber, bool) {
	if r.Time.IsZero() {
		return cborNumber{}, false
	}
	if pl.useBT {
		d := r.Time.Sub(pl.bt)
		if d == 0 {
			return cborNumber{}, false
		}
		return senmlTimeNumber(d), true
	}
	return absTimeNumber(r.Time), true
}

func absTimeNumber(t time.Time) cborNumber {
	if t.Nanosecond() == 0 {
		return cborNumber{kind: numInt, i: t.Unix()}
	}
	return cborNumber{kind: numFloat, f: float64(t.Unix()) + float64(t.Nanosecond())/1e9}
}

// senmlField is the value field an encoder writes for a value type.
func senmlField(v Value) (string, error) {
	switch v.Type() {
	case TypeString, TypeCorelnk:
		return "vs", nil
	case TypeInteger, TypeUnsigned, TypeFloat, TypeTime:
		return "v", nil
	case TypeBoolean:
		return "vb", nil
	case TypeOpaque:
		return "vd", nil
	case TypeObjlnk:
		return "vlo", nil
	}
	return "", fmt.Errorf("%w: a record needs a value, got %s", ErrType, v)
}

// valueNumber is the number v carries for the "v" field.
func valueNumber(v Value) cborNumber {
	switch v.Type() {
	case TypeUnsigned:
		if v.Uint() > math.MaxInt64 {
			return cborNumber{kind: numUint, u: v.Uint()}
		}
		return cborNumber{kind: numInt, i: int64(v.Uint())}
	case TypeFloat:
		return cborNumber{kind: numFloat, f: v.Float()}
	}
	return cborNumber{kind: numInt, i: v.Int()}
}

// decodeBase64Lenient accepts the base64url of RFC 8428 and, because some
// clients write it, the standard alphabet and padding.
func decodeBase64Lenient(s []byte) ([]byte, error) {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(s)))
	std := false
	for _, c := range s {
		if c == '+' || c == '/' {
			std = true
			break
		}
	}
	enc := base64.RawURLEncoding
	if std {
		enc = base64.RawStdEncoding
	}
	n, err := enc.Decode(out, s)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}
