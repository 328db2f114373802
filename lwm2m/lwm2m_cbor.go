package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeLwM2MCBOR(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: lwm2m-cbor", ErrUnsupportedFormat)
}
func decodeLwM2MCBOR(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: lwm2m-cbor", ErrUnsupportedFormat)
}
func encodeLwM2MCBORPaths(paths []Path) ([]byte, error) {
	return nil, fmt.Errorf("%w: lwm2m-cbor", ErrUnsupportedFormat)
}
func decodeLwM2MCBORPaths(data []byte) ([]Path, error) {
	return nil, fmt.Errorf("%w: lwm2m-cbor", ErrUnsupportedFormat)
}
