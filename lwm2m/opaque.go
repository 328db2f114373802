package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeOpaque(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: opaque", ErrUnsupportedFormat)
}
func decodeOpaque(base Path, data []byte) ([]Record, error) {
	return nil, fmt.Errorf("%w: opaque", ErrUnsupportedFormat)
}
