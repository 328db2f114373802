package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeTLV(base Path, recs []Record, reg *Registry) ([]byte, error) {
	return nil, fmt.Errorf("%w: tlv", ErrUnsupportedFormat)
}
func decodeTLV(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: tlv", ErrUnsupportedFormat)
}
