package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeSenMLCBOR(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: senml-cbor", ErrUnsupportedFormat)
}
func decodeSenMLCBOR(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: senml-cbor", ErrUnsupportedFormat)
}
func encodeSenMLCBORPaths(paths []Path) ([]byte, error) {
	return nil, fmt.Errorf("%w: senml-cbor", ErrUnsupportedFormat)
}
func decodeSenMLCBORPaths(data []byte) ([]Path, error) {
	return nil, fmt.Errorf("%w: senml-cbor", ErrUnsupportedFormat)
}
