package lwm2m

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalidAttributes marks Write-Attributes parameters that are unknown,
// malformed or inconsistent; a client answers them with 4.00 Bad Request.
var ErrInvalidAttributes = errors.New("invalid attributes")

// AttrState says what a Write-Attributes request does with one attribute.
type AttrState uint8

const (
	// AttrAbsent: the request does not mention the attribute; it keeps its value.
	AttrAbsent AttrState = iota
	// AttrSet: "name=value" sets it.
	AttrSet
	// AttrUnset: "name" without a value removes it (Core §5.1.2).
	AttrUnset
)

// UintAttr is an attribute with a non-negative integer value (periods in
// seconds, edge, con, hqmax).
type UintAttr struct {
	State AttrState
	Value uint64
}

// FloatAttr is an attribute with a numeric value (gt, lt, st).
type FloatAttr struct {
	State AttrState
	Value float64
}

// AttrUint and AttrFloat return attributes set to v.
func AttrUint(v uint64) UintAttr    { return UintAttr{State: AttrSet, Value: v} }
func AttrFloat(v float64) FloatAttr { return FloatAttr{State: AttrSet, Value: v} }

// IsSet reports whether the attribute has a value.
func (a UintAttr) IsSet() bool  { return a.State == AttrSet }
func (a FloatAttr) IsSet() bool { return a.State == AttrSet }

// Attributes are the notification attributes of Core §5.1.2 that
// Write-Attributes (Core §6.3.4) sets on an object, instance, resource or
// resource instance, and that Discover reports:
//
//	pmin, pmax    minimum and maximum period between notifications, seconds
//	gt, lt, st    greater than, less than, step (numeric resources)
//	epmin, epmax  minimum and maximum evaluation period, seconds (1.1)
//	edge          0 falling, 1 rising edge of a boolean resource (1.2)
//	con           0 non-confirmable, 1 confirmable notifications (1.2)
//	hqmax         maximum historical queue, number of notifications (1.2)
//
// The zero Attributes mentions nothing.
type Attributes struct {
	PMin, PMax   UintAttr
	GT, LT, ST   FloatAttr
	EPMin, EPMax UintAttr
	Edge         UintAttr
	Con          UintAttr
	HQMax        UintAttr
}

// attrNames lists the attributes in the order Queries writes them.
var attrNames = [...]string{"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax"}

// uintAttr and floatAttr return the field for a name; nil when the name is
// of the other kind or unknown.
func (a *Attributes) uintAttr(name string) *UintAttr {
	switch name {
	case "pmin":
		return &a.PMin
	case "pmax":
		return &a.PMax
	case "epmin":
		return &a.EPMin
	case "epmax":
		return &a.EPMax
	case "edge":
		return &a.Edge
	case "con":
		return &a.Con
	case "hqmax":
		return &a.HQMax
	}
	return nil
}

func (a *Attributes) floatAttr(name string) *FloatAttr {
	switch name {
	case "gt":
		return &a.GT
	case "lt":
		return &a.LT
	case "st":
		return &a.ST
	}
	return nil
}

// isAttrName reports whether name is one of the Attributes.
func isAttrName(name string) bool {
	var a Attributes
	return a.uintAttr(name) != nil || a.floatAttr(name) != nil
}

// set applies one "name[=value]" parameter. It reports false for a name that
// is not an attribute.
func (a *Attributes) set(name, value string, hasValue bool) (bool, error) {
	if u := a.uintAttr(name); u != nil {
		if u.State != AttrAbsent {
			return true, fmt.Errorf("%w: %s given twice", ErrInvalidAttributes, name)
		}
		if !hasValue {
			u.State = AttrUnset
			return true, nil
		}
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil || value == "" || value[0] == '+' {
			return true, fmt.Errorf("%w: %s=%q is not a non-negative integer", ErrInvalidAttributes, name, value)
		}
		*u = AttrUint(v)
		return true, nil
	}
	if f := a.floatAttr(name); f != nil {
		if f.State != AttrAbsent {
			return true, fmt.Errorf("%w: %s given twice", ErrInvalidAttributes, name)
		}
		if !hasValue {
			f.State = AttrUnset
			return true, nil
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || !isDecimal(value) {
			return true, fmt.Errorf("%w: %s=%q is not a decimal number", ErrInvalidAttributes, name, value)
		}
		*f = AttrFloat(v)
		return true, nil
	}
	return false, nil
}

// isDecimal accepts [-]digits[.digits][e[±]digits], the number forms servers
// write; ParseFloat alone would also take "0x1p3", "Inf" or "1_000".
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	n := digits()
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	} else if n == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// ParseAttributes reads the Uri-Query options of a Write-Attributes request,
// one "name=value" or "name" per element, and validates the result.
// Unknown attribute names are errors (Core §6.3.4: the client answers
// 4.00 Bad Request).
func ParseAttributes(queries []string) (Attributes, error) {
	var a Attributes
	for _, q := range queries {
		name, value, hasValue := strings.Cut(q, "=")
		known, err := a.set(name, value, hasValue)
		if err != nil {
			return Attributes{}, err
		}
		if !known {
			return Attributes{}, fmt.Errorf("%w: unknown attribute %q", ErrInvalidAttributes, name)
		}
	}
	if err := a.Validate(); err != nil {
		return Attributes{}, err
	}
	return a, nil
}

// ParseAttributesQuery reads a query string, "pmin=10&pmax=60&gt" (with or
// without the leading "?"), as ParseAttributes does.
func ParseAttributesQuery(q string) (Attributes, error) {
	q = strings.TrimPrefix(q, "?")
	if q == "" {
		return Attributes{}, nil
	}
	return ParseAttributes(strings.Split(q, "&"))
}

// Queries formats the attributes as Uri-Query options in the order pmin,
// pmax, gt, lt, st, epmin, epmax, edge, con, hqmax; unset attributes are
// written as the bare name.
func (a Attributes) Queries() []string {
	var out []string
	a.each(func(name string, state AttrState, value string) {
		if state == AttrUnset {
			out = append(out, name)
		} else {
			out = append(out, name+"="+value)
		}
	})
	return out
}

// String formats the attributes as a query string, "pmin=10&pmax=60".
func (a Attributes) String() string { return strings.Join(a.Queries(), "&") }

// each calls fn for every attribute that is set or unset, in canonical order.
func (a Attributes) each(fn func(name string, state AttrState, value string)) {
	for _, name := range attrNames {
		if u := a.uintAttr(name); u != nil {
			if u.State != AttrAbsent {
				fn(name, u.State, strconv.FormatUint(u.Value, 10))
			}
			continue
		}
		f := a.floatAttr(name)
		if f.State != AttrAbsent {
			fn(name, f.State, formatAttrFloat(f.Value))
		}
	}
}

// formatAttrFloat writes a plain decimal, never an exponent, which constrained
// clients' parsers may not take.
func formatAttrFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// IsZero reports whether the attributes mention nothing.
func (a Attributes) IsZero() bool { return a == Attributes{} }

// Validate checks the attributes that are set against each other
// (Core §5.1.2): pmin ≤ pmax, epmin ≤ epmax, st ≥ 0, lt < gt and, with a
// step, lt + 2·st < gt; edge and con are 0 or 1; numbers are finite.
func (a Attributes) Validate() error {
	for _, f := range [...]struct {
		name string
		v    FloatAttr
	}{{"gt", a.GT}, {"lt", a.LT}, {"st", a.ST}} {
		if f.v.IsSet() && (math.IsNaN(f.v.Value) || math.IsInf(f.v.Value, 0)) {
			return fmt.Errorf("%w: %s is not a finite number", ErrInvalidAttributes, f.name)
		}
	}
	if a.PMin.IsSet() && a.PMax.IsSet() && a.PMin.Value > a.PMax.Value {
		return fmt.Errorf("%w: pmin %d > pmax %d", ErrInvalidAttributes, a.PMin.Value, a.PMax.Value)
	}
	if a.EPMin.IsSet() && a.EPMax.IsSet() && a.EPMin.Value > a.EPMax.Value {
		return fmt.Errorf("%w: epmin %d > epmax %d", ErrInvalidAttributes, a.EPMin.Value, a.EPMax.Value)
	}
	if a.ST.IsSet() && a.ST.Value < 0 {
		return fmt.Errorf("%w: st %s is negative", ErrInvalidAttributes, formatAttrFloat(a.ST.Value))
	}
	if a.LT.IsSet() && a.GT.IsSet() {
		if a.LT.Value >= a.GT.Value {
			return fmt.Errorf("%w: lt %s is not below gt %s", ErrInvalidAttributes, formatAttrFloat(a.LT.Value), formatAttrFloat(a.GT.Value))
		}
		if a.ST.IsSet() && a.LT.Value+2*a.ST.Value >= a.GT.Value {
			return fmt.Errorf("%w: lt + 2*st must be below gt (lt %s, st %s, gt %s)", ErrInvalidAttributes,
				formatAttrFloat(a.LT.Value), formatAttrFloat(a.ST.Value), formatAttrFloat(a.GT.Value))
		}
	}
	if a.Edge.IsSet() && a.Edge.Value > 1 {
		return fmt.Errorf("%w: edge %d is not 0 or 1", ErrInvalidAttributes, a.Edge.Value)
	}
	if a.Con.IsSet() && a.Con.Value > 1 {
		return fmt.Errorf("%w: con %d is not 0 or 1", ErrInvalidAttributes, a.Con.Value)
	}
	return nil
}

// ValidateFor checks that the attributes fit their target (Core §5.1.2):
// none on the root; gt, lt and st only on a resource or resource instance of
// a numeric type; edge only on a boolean resource or resource instance.
// known says whether t comes from a model; when it does not, the type checks
// are skipped.
func (a Attributes) ValidateFor(p Path, t DataType, known bool) error {
	if p.IsRoot() && !a.IsZero() {
		return fmt.Errorf("%w: attributes cannot be written on the root", ErrInvalidAttributes)
	}
	if a.GT.State != AttrAbsent || a.LT.State != AttrAbsent || a.ST.State != AttrAbsent {
		if p.Len() < 3 {
			return fmt.Errorf("%w: gt, lt and st apply to resources, not %s", ErrInvalidAttributes, p)
		}
		if known && t != TypeInteger && t != TypeUnsigned && t != TypeFloat {
			return fmt.Errorf("%w: gt, lt and st apply to numeric resources; %s is %s", ErrInvalidAttributes, p, t)
		}
	}
	if a.Edge.State != AttrAbsent {
		if p.Len() < 3 {
			return fmt.Errorf("%w: edge applies to resources, not %s", ErrInvalidAttributes, p)
		}
		if known && t != TypeBoolean {
			return fmt.Errorf("%w: edge applies to boolean resources; %s is %s", ErrInvalidAttributes, p, t)
		}
	}
	return nil
}

// Merge applies an update to the attributes a target has: attributes the
// update sets replace, those it unsets are removed, the others stay.
func (a Attributes) Merge(update Attributes) Attributes {
	for _, name := range attrNames {
		if u := update.uintAttr(name); u != nil {
			dst := a.uintAttr(name)
			switch u.State {
			case AttrSet:
				*dst = *u
			case AttrUnset:
				*dst = UintAttr{}
			}
			continue
		}
		f := update.floatAttr(name)
		dst := a.floatAttr(name)
		switch f.State {
		case AttrSet:
			*dst = *f
		case AttrUnset:
			*dst = FloatAttr{}
		}
	}
	return a
}
