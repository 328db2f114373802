package lwm2m

import (
	"errors"
	"fmt"
)

// Sentinel errors of the protocol core. Callers compare with errors.Is; the
// CoAP and HTTP edges turn them into response codes.
var (
	ErrInvalidPath       = errors.New("invalid path")
	ErrMalformed         = errors.New("malformed payload")
	ErrUnsupportedFormat = errors.New("unsupported content format")
	ErrLimit             = errors.New("payload exceeds a decoder limit")
	ErrType              = errors.New("value does not fit the data type")
	ErrUnknownObject     = errors.New("unknown object")
	ErrUnknownResource   = errors.New("unknown resource")
)

// Decoder limits. They bound the work and memory any payload can cause.
const (
	// MaxRecords is the largest number of values one payload may decode to.
	MaxRecords = 10000
	// MaxDepth is the deepest nesting a structured decoder follows (CBOR
	// maps/arrays, TLV instances inside instances).
	MaxDepth = 16
)

// DecodeError says where a payload went wrong: the format, the byte offset
// (or record index for formats without useful offsets), and the field.
type DecodeError struct {
	Format Format
	Offset int    // byte offset, or -1 when unknown
	Record int    // record index for record-based formats, or -1
	Field  string // the field or element being decoded, may be empty
	Err    error  // wraps ErrMalformed, ErrLimit, ErrType …
}

func (e *DecodeError) Error() string {
	s := e.Format.String()
	if e.Offset >= 0 {
		s += fmt.Sprintf(": offset %d", e.Offset)
	}
	if e.Record >= 0 {
		s += fmt.Sprintf(": record %d", e.Record)
	}
	if e.Field != "" {
		s += fmt.Sprintf(": %s", e.Field)
	}
	return s + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decodeErr builds a *DecodeError wrapping ErrMalformed with a message.
func decodeErr(f Format, offset, record int, field, format string, args ...any) error {
	return &DecodeError{Format: f, Offset: offset, Record: record, Field: field,
		Err: fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))}
}
