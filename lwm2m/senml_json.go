package lwm2m

// Placeholder until the codec lands; replaced by its owner.

import "fmt"

func encodeSenMLJSON(base Path, recs []Record) ([]byte, error) {
	return nil, fmt.Errorf("%w: senml-json", ErrUnsupportedFormat)
}
func decodeSenMLJSON(base Path, data []byte, reg *Registry) ([]Record, error) {
	return nil, fmt.Errorf("%w: senml-json", ErrUnsupportedFormat)
}
func encodeSenMLJSONPaths(paths []Path) ([]byte, error) {
	return nil, fmt.Errorf("%w: senml-json", ErrUnsupportedFormat)
}
func decodeSenMLJSONPaths(data []byte) ([]Path, error) {
	return nil, fmt.Errorf("%w: senml-json", ErrUnsupportedFormat)
}
