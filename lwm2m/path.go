package lwm2m

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxID is the largest object, instance or resource identifier; 65535 is
// reserved (Core §7.1, "MAX_ID").
const MaxID = 65534

// Path addresses an object, an object instance, a resource or a resource
// instance: /O, /O/I, /O/I/R or /O/I/R/RI (Core §6.1). The zero Path is the
// root "/". Path is a comparable value type and can be used as a map key.
type Path struct {
	ids [4]uint16
	n   uint8
}

// NewPath builds a path from up to four identifiers. It panics on more than
// four, which is a programming error, not input.
func NewPath(ids ...uint16) Path {
	if len(ids) > 4 {
		panic("lwm2m: NewPath with more than 4 ids")
	}
	var p Path
	copy(p.ids[:], ids)
	p.n = uint8(len(ids))
	return p
}

// ParsePath parses "/3/0/1", "3/0/1" or "/" (and "" for the root).
func ParsePath(s string) (Path, error) {
	t := strings.TrimPrefix(s, "/")
	t = strings.TrimSuffix(t, "/")
	if t == "" {
		return Path{}, nil
	}
	parts := strings.Split(t, "/")
	if len(parts) > 4 {
		return Path{}, fmt.Errorf("%w: %q has more than 4 segments", ErrInvalidPath, s)
	}
	var p Path
	for i, part := range parts {
		v, err := strconv.ParseUint(part, 10, 16)
		if err != nil || v > MaxID || part == "" || (len(part) > 1 && part[0] == '0') {
			return Path{}, fmt.Errorf("%w: %q: segment %d %q is not an id 0..%d", ErrInvalidPath, s, i+1, part, MaxID)
		}
		p.ids[i] = uint16(v)
	}
	p.n = uint8(len(parts))
	return p, nil
}

// MustParsePath is ParsePath for constants in code and tests.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Len is the number of identifiers: 0 root, 1 object, 2 instance,
// 3 resource, 4 resource instance.
func (p Path) Len() int { return int(p.n) }

// IsRoot reports whether p is "/".
func (p Path) IsRoot() bool { return p.n == 0 }

// ID returns the i-th identifier (0-based); it is 0 when i >= Len.
func (p Path) ID(i int) uint16 {
	if i < 0 || i >= int(p.n) {
		return 0
	}
	return p.ids[i]
}

// ObjectID, InstanceID, ResourceID and ResourceInstanceID return the
// identifiers at each level (0 when the path is shorter).
func (p Path) ObjectID() uint16           { return p.ID(0) }
func (p Path) InstanceID() uint16         { return p.ID(1) }
func (p Path) ResourceID() uint16         { return p.ID(2) }
func (p Path) ResourceInstanceID() uint16 { return p.ID(3) }

// IsObject, IsInstance, IsResource and IsResourceInstance report the level.
func (p Path) IsObject() bool           { return p.n == 1 }
func (p Path) IsInstance() bool         { return p.n == 2 }
func (p Path) IsResource() bool         { return p.n == 3 }
func (p Path) IsResourceInstance() bool { return p.n == 4 }

// Append returns p with id added one level down. It panics when p is a
// resource instance path already.
func (p Path) Append(id uint16) Path {
	if p.n >= 4 {
		panic("lwm2m: Append to a resource instance path")
	}
	p.ids[p.n] = id
	p.n++
	return p
}

// Parent returns the path one level up; the root's parent is the root.
func (p Path) Parent() Path {
	if p.n == 0 {
		return p
	}
	p.n--
	p.ids[p.n] = 0
	return p
}

// Truncate returns the first n levels of p (all of p when n >= Len).
func (p Path) Truncate(n int) Path {
	if n >= int(p.n) {
		return p
	}
	if n < 0 {
		n = 0
	}
	for i := n; i < 4; i++ {
		p.ids[i] = 0
	}
	p.n = uint8(n)
	return p
}

// Contains reports whether q is p or lies below p.
func (p Path) Contains(q Path) bool {
	if q.n < p.n {
		return false
	}
	for i := 0; i < int(p.n); i++ {
		if p.ids[i] != q.ids[i] {
			return false
		}
	}
	return true
}

// Compare orders paths depth-first: parents before children, then by id.
// It returns -1, 0 or +1.
func (p Path) Compare(q Path) int {
	for i := 0; i < 4; i++ {
		if i >= int(p.n) || i >= int(q.n) {
			switch {
			case p.n < q.n:
				return -1
			case p.n > q.n:
				return 1
			}
			return 0
		}
		if p.ids[i] != q.ids[i] {
			if p.ids[i] < q.ids[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// String formats the path as "/3/0/1" ("/" for the root).
func (p Path) String() string {
	if p.n == 0 {
		return "/"
	}
	var b [24]byte
	out := b[:0]
	for i := 0; i < int(p.n); i++ {
		out = append(out, '/')
		out = strconv.AppendUint(out, uint64(p.ids[i]), 10)
	}
	return string(out)
}

// Relative formats the path without the leading slash ("3/0/1"), as the REST
// API writes it in result maps.
func (p Path) Relative() string { return strings.TrimPrefix(p.String(), "/") }

// MarshalText implements encoding.TextMarshaler.
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Path) UnmarshalText(b []byte) error {
	q, err := ParsePath(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
