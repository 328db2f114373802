package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeText(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: text", ErrUnsupportedFormat)
}
func decodeText(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: text", ErrUnsupportedFormat)
}
