package lwm2m

import "fmt"

// Opaque, application/octet-stream (42): Core §7.4.2. The payload is the raw
// bytes of one Opaque resource or resource instance (a firmware package, a
// certificate).

func encodeOpaque(base Path, recs []Record) ([]byte, error) {
	r, err := singleRecord(FormatOpaque, base, recs)
	if err != nil {
		return nil, err
	}
	if r.Value.Type() != TypeOpaque {
		return nil, fmt.Errorf("%w: %s: the opaque format carries opaque values, not %s", ErrType, r.Path, r.Value.Type())
	}
	return append([]byte{}, r.Value.Bytes()...), nil
}

// decodeOpaque copies the payload, so the caller may reuse its buffer.
func decodeOpaque(base Path, data []byte) ([]Record, error) {
	if err := singlePath(FormatOpaque, base); err != nil {
		return nil, err
	}
	return []Record{{Path: base, Value: Opaque(append([]byte{}, data...))}}, nil
}
