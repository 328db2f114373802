package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeLwM2MJSON(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: lwm2m-json", ErrUnsupportedFormat)
}
func decodeLwM2MJSON(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: lwm2m-json", ErrUnsupportedFormat)
}
