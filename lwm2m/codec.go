package lwm2m

import "fmt"

// Encode writes records in format f. base is the path the request addressed
// (the object, instance, resource or resource instance of a Read or Write);
// formats that name paths relative to a base use it, composite payloads pass
// the root. Every record path must lie under base. reg types values where a
// format needs the model (TLV, text); it may be nil.
func Encode(f Format, base Path, recs []Record, reg *Registry) ([]byte, error) {
	for _, r := range recs {
		if !base.Contains(r.Path) {
			return nil, fmt.Errorf("%w: record %s is not under %s", ErrInvalidPath, r.Path, base)
		}
	}
	switch f {
	case FormatText:
		return encodeText(base, recs)
	case FormatOpaque:
		return encodeOpaque(base, recs)
	case FormatCBOR:
		return encodeCBOR(base, recs)
	case FormatTLV:
		return encodeTLV(base, recs, reg)
	case FormatSenMLJSON:
		return encodeSenMLJSON(base, recs)
	case FormatSenMLCBOR:
		return encodeSenMLCBOR(base, recs)
	case FormatLwM2MJSON:
		return encodeLwM2MJSON(base, recs)
	case FormatLwM2MCBOR:
		return encodeLwM2MCBOR(base, recs)
	}
	return nil, fmt.Errorf("%w: cannot encode values as %s", ErrUnsupportedFormat, f)
}

// Decode reads a payload in format f that answers a request on base (or is a
// Write to base). It returns records at resource or resource-instance level
// with full paths. reg gives values the types of their object model; with a
// nil reg, or for resources it does not know, self-describing formats keep
// the type the payload shows and TLV/text/opaque/CBOR give opaque, string or
// the CBOR type. Limits: MaxRecords values, MaxDepth nesting.
func Decode(f Format, base Path, data []byte, reg *Registry) ([]Record, error) {
	switch f {
	case FormatText:
		return decodeText(base, data, reg)
	case FormatOpaque:
		return decodeOpaque(base, data)
	case FormatCBOR:
		return decodeCBOR(base, data, reg)
	case FormatTLV:
		return decodeTLV(base, data, reg)
	case FormatSenMLJSON:
		return decodeSenMLJSON(base, data, reg)
	case FormatSenMLCBOR:
		return decodeSenMLCBOR(base, data, reg)
	case FormatLwM2MJSON:
		return decodeLwM2MJSON(base, data, reg)
	case FormatLwM2MCBOR:
		return decodeLwM2MCBOR(base, data, reg)
	}
	return nil, fmt.Errorf("%w: cannot decode %s", ErrUnsupportedFormat, f)
}

// EncodePaths writes the request payload of Read-Composite, Observe-Composite
// and the Cancel of the latter: a list of paths without values (Core §6.3.8,
// Transport §7.4), in SenML JSON, SenML CBOR or LwM2M CBOR.
func EncodePaths(f Format, paths []Path) ([]byte, error) {
	switch f {
	case FormatSenMLJSON:
		return encodeSenMLJSONPaths(paths)
	case FormatSenMLCBOR:
		return encodeSenMLCBORPaths(paths)
	case FormatLwM2MCBOR:
		return encodeLwM2MCBORPaths(paths)
	}
	return nil, fmt.Errorf("%w: %s cannot carry a path list", ErrUnsupportedFormat, f)
}

// DecodePaths reads a path list as EncodePaths writes it.
func DecodePaths(f Format, data []byte) ([]Path, error) {
	switch f {
	case FormatSenMLJSON:
		return decodeSenMLJSONPaths(data)
	case FormatSenMLCBOR:
		return decodeSenMLCBORPaths(data)
	case FormatLwM2MCBOR:
		return decodeLwM2MCBORPaths(data)
	}
	return nil, fmt.Errorf("%w: %s cannot carry a path list", ErrUnsupportedFormat, f)
}

// typeOf returns the model's data type for a resource path, and whether the
// model knows it. A nil registry knows nothing.
func typeOf(reg *Registry, p Path) (DataType, bool) {
	if reg == nil || p.Len() < 3 {
		return TypeNone, false
	}
	r, ok := reg.Resource(p.ObjectID(), p.ResourceID())
	if !ok {
		return TypeNone, false
	}
	return r.Type, true
}
