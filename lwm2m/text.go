package lwm2m

import (
	"fmt"
	"unicode/utf8"
)

// Plain text, text/plain;charset=utf-8 (0): Core §7.4.1. It carries one
// value of a resource or resource instance: strings as they are, numbers in
// decimal, booleans as "0"/"1", time as Unix seconds, object links as
// "O:I" and opaque values in base64 (Value.Text and ParseText).

func encodeText(base Path, recs []Record) ([]byte, error) {
	r, err := singleRecord(FormatText, base, recs)
	if err != nil {
		return nil, err
	}
	if r.Value.IsNone() {
		return nil, fmt.Errorf("%w: %s: no value to write as text", ErrType, r.Path)
	}
	return []byte(r.Value.Text()), nil
}

// decodeText types the text by the model; without one the value is a string.
func decodeText(base Path, data []byte, reg *Registry) ([]Record, error) {
	if err := singlePath(FormatText, base); err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		return nil, decodeErr(FormatText, firstInvalidUTF8(data), -1, base.String(), "text is not UTF-8")
	}
	t, ok := typeOf(reg, base)
	if !ok {
		t = TypeString
	}
	v, err := ParseText(t, string(data))
	if err != nil {
		return nil, &DecodeError{Format: FormatText, Offset: 0, Record: -1, Field: base.String(), Err: err}
	}
	return []Record{{Path: base, Value: v}}, nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// singlePath checks that a single-value format addresses a resource or a
// resource instance.
func singlePath(f Format, base Path) error {
	if base.Len() < 3 {
		return &DecodeError{Format: f, Offset: -1, Record: -1, Field: "path",
			Err: fmt.Errorf("%w: %s carries one value; %s is not a resource or resource instance", ErrInvalidPath, f, base)}
	}
	return nil
}

// singleRecord returns the one record a single-value format can carry: the
// value at base, which is a resource or resource instance.
func singleRecord(f Format, base Path, recs []Record) (Record, error) {
	if base.Len() < 3 {
		return Record{}, fmt.Errorf("%w: %s carries one value; %s is not a resource or resource instance", ErrUnsupportedFormat, f, base)
	}
	if len(recs) != 1 {
		return Record{}, fmt.Errorf("%w: %s carries exactly one value, got %d", ErrUnsupportedFormat, f, len(recs))
	}
	if recs[0].Path != base {
		return Record{}, fmt.Errorf("%w: %s carries the value of %s itself, not of %s", ErrUnsupportedFormat, f, base, recs[0].Path)
	}
	return recs[0], nil
}
