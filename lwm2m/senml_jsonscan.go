package lwm2m

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the small JSON (RFC 8259) scanner that SenML JSON and
// LwM2M JSON share. Both formats are flat (an array of objects, or one
// object with an array), so a hand-written scanner reads them without
// reflection, without copying strings that carry no escapes, and with the
// byte offset of every error. Unknown members are skipped, nested at most
// MaxDepth deep.

type jsonScanner struct {
	b   []byte
	off int
	f   Format
}

func (s *jsonScanner) errAt(off int, format string, args ...any) error {
	return decodeErr(s.f, off, -1, "", format, args...)
}

func (s *jsonScanner) ws() {
	for s.off < len(s.b) {
		switch s.b[s.off] {
		case ' ', '\t', '\n', '\r':
			s.off++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it (0 at the end).
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.off >= len(s.b) {
		return 0
	}
	return s.b[s.off]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		if s.off >= len(s.b) {
			return s.errAt(s.off, "unexpected end of data, want %q", c)
		}
		return s.errAt(s.off, "want %q, got %q", c, s.b[s.off])
	}
	s.off++
	return nil
}

// more is called after an element of an array or a member of an object: it
// consumes a comma and reports true, or consumes the closing byte and
// reports false.
func (s *jsonScanner) more(closing byte) (bool, error) {
	switch s.peek() {
	case ',':
		s.off++
		return true, nil
	case closing:
		s.off++
		return false, nil
	}
	if s.off >= len(s.b) {
		return false, s.errAt(s.off, "unexpected end of data, want ',' or %q", closing)
	}
	return false, s.errAt(s.off, "want ',' or %q, got %q", closing, s.b[s.off])
}

// str reads a string. Without escapes it returns a sub-slice of the input;
// with escapes a new slice.
func (s *jsonScanner) str() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.off
	for i := s.off; i < len(s.b); i++ {
		c := s.b[i]
		if c == '"' {
			s.off = i + 1
			out := s.b[start:i]
			if !utf8.Valid(out) {
				return nil, s.errAt(start, "string is not valid UTF-8")
			}
			return out, nil
		}
		if c == '\\' {
			return s.strEscaped(start)
		}
		if c < 0x20 {
			return nil, s.errAt(i, "control character in string")
		}
	}
	return nil, s.errAt(start-1, "unterminated string")
}

func (s *jsonScanner) strEscaped(start int) ([]byte, error) {
	out := make([]byte, 0, 32)
	i := start
	for i < len(s.b) {
		c := s.b[i]
		switch {
		case c == '"':
			s.off = i + 1
			if !utf8.Valid(out) {
				return nil, s.errAt(start, "string is not valid UTF-8")
			}
			return out, nil
		case c < 0x20:
			return nil, s.errAt(i, "control character in string")
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s.b) {
			break
		}
		e := s.b[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s.b, i)
			if !ok {
				return nil, s.errAt(i-2, "bad \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+6 <= len(s.b) && s.b[i] == '\\' && s.b[i+1] == 'u' {
					r2, ok = hex4(s.b, i+2)
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, s.errAt(i-2, "bad escape \\%c", e)
		}
	}
	return nil, s.errAt(start-1, "unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads a JSON number. One written without fraction or exponent
// is an integer (int64, or uint64 above MaxInt64); any other is a float.
func (s *jsonScanner) number() (cborNumber, error) {
	s.ws()
	start := s.off
	i := s.off
	if i < len(s.b) && s.b[i] == '-' {
		i++
	}
	digits := i
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	if i == digits || (s.b[digits] == '0' && i-digits > 1) {
		return cborNumber{}, s.errAt(start, "malformed number")
	}
	isFloat := false
	if i < len(s.b) && s.b[i] == '.' {
		isFloat = true
		i++
		d := i
		for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
			i++
		}
		if i == d {
			return cborNumber{}, s.errAt(start, "malformed number")
		}
	}
	if i < len(s.b) && (s.b[i] == 'e' || s.b[i] == 'E') {
		isFloat = true
		i++
		if i < len(s.b) && (s.b[i] == '+' || s.b[i] == '-') {
			i++
		}
		d := i
		for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
			i++
		}
		if i == d {
			return cborNumber{}, s.errAt(start, "malformed number")
		}
	}
	s.off = i
	text := s.b[start:i]
	if !isFloat {
		neg := text[0] == '-'
		var u uint64
		overflow := false
		for _, c := range text[digits-start:] {
			d := uint64(c - '0')
			if u > (math.MaxUint64-d)/10 {
				overflow = true
				break
			}
			u = u*10 + d
		}
		switch {
		case overflow:
		case !neg && u <= math.MaxInt64:
			return cborNumber{kind: numInt, i: int64(u)}, nil
		case !neg:
			return cborNumber{kind: numUint, u: u}, nil
		case u <= 1<<63:
			return cborNumber{kind: numInt, i: -int64(u-1) - 1}, nil
		}
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil && !math.IsInf(f, 0) {
		return cborNumber{}, s.errAt(start, "malformed number")
	}
	if math.IsInf(f, 0) {
		return cborNumber{}, s.errAt(start, "number out of range")
	}
	return cborNumber{kind: numFloat, f: f}, nil
}

// literal reads true, false or null and returns which (1, 0 or -1).
func (s *jsonScanner) literal() (int, error) {
	s.ws()
	rest := s.b[s.off:]
	for _, l := range [...]struct {
		w string
		v int
	}{{"true", 1}, {"false", 0}, {"null", -1}} {
		if len(rest) >= len(l.w) && string(rest[:len(l.w)]) == l.w {
			s.off += len(l.w)
			return l.v, nil
		}
	}
	return 0, s.errAt(s.off, "want true, false or null")
}

// skip reads and discards one value.
func (s *jsonScanner) skip(depth int) error {
	if depth > MaxDepth {
		return limitErr(s.f, s.off, -1, "", "nesting deeper than %d", MaxDepth)
	}
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := s.number()
		return err
	case c == '[' || c == '{':
		s.off++
		closing := byte(']')
		if c == '{' {
			closing = '}'
		}
		if s.peek() == closing {
			s.off++
			return nil
		}
		for {
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				if err := s.expect(':'); err != nil {
					return err
				}
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			more, err := s.more(closing)
			if err != nil || !more {
				return err
			}
		}
	}
	_, err := s.literal()
	return err
}

// end checks that only white space follows.
func (s *jsonScanner) end() error {
	if s.peek() != 0 {
		return s.errAt(s.off, "%d bytes after the payload", len(s.b)-s.off)
	}
	return nil
}

// appendJSONString writes s as a JSON string, escaping what RFC 8259 §7
// requires and nothing else.
func appendJSONString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			const hexDigits = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// appendJSONNumber writes a number; floats keep a fraction or exponent so
// that they read back as floats. Non-finite floats have no JSON form.
func appendJSONNumber(dst []byte, n cborNumber) ([]byte, bool) {
	switch n.kind {
	case numInt:
		return strconv.AppendInt(dst, n.i, 10), true
	case numUint:
		return strconv.AppendUint(dst, n.u, 10), true
	}
	if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
		return dst, false
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, n.f, 'g', -1, 64)
	for _, c := range dst[start:] {
		if c == '.' || c == 'e' {
			return dst, true
		}
	}
	return append(dst, '.', '0'), true
}
