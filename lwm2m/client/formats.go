package client

import (
	"errors"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
)

// Version is the LwM2M enabler version the client registers with
// ("lwm2m=" in Register, Core §6.2.1).
type Version string

// Supported versions.
const (
	Version10 Version = "1.0"
	Version11 Version = "1.1"
	Version12 Version = "1.2"
)

func (v Version) valid() bool { return v == Version10 || v == Version11 || v == Version12 }

// readFormats is the order in which the client tries formats for a Read
// without Accept. LwM2M 1.1+ clients answer SenML CBOR, falling back to SenML
// JSON, as Zephyr does (its default writer for 1.1); a 1.0 client answers
// TLV (Core 1.0 §6.4: TLV is mandatory there). Plain text, a format every
// version has, is the last resort for single values.
func readFormats(v Version) []lwm2m.Format {
	if v == Version10 {
		return []lwm2m.Format{lwm2m.FormatTLV, lwm2m.FormatText}
	}
	return []lwm2m.Format{lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatTLV, lwm2m.FormatText}
}

// acceptable reports whether the client offers format f for answers.
func acceptable(f lwm2m.Format) bool {
	switch f {
	case lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatCBOR, lwm2m.FormatTLV,
		lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR, lwm2m.FormatLwM2MJSON, lwm2m.FormatLwM2MCBOR:
		return true
	}
	return false
}

// encodeAnswer encodes records that answer a request on base. accept is the
// request's Accept option (FormatNone without one). Only the formats able
// to carry the answer are tried: a single-value format for one resource, a
// multi-value one otherwise (Core §7.4).
func encodeAnswer(v Version, accept lwm2m.Format, base lwm2m.Path, recs []lwm2m.Record, reg *lwm2m.Registry) ([]byte, lwm2m.Format, error) {
	single := len(recs) == 1 && recs[0].Path == base && base.Len() >= 3
	if accept != lwm2m.FormatNone {
		if !acceptable(accept) {
			return nil, accept, fmt.Errorf("client: %w: %s", ErrNotAcceptable, accept)
		}
		if !single && !accept.MultiValue() {
			return nil, accept, fmt.Errorf("client: %w: %s cannot carry %d values", ErrNotAcceptable, accept, len(recs))
		}
		if accept == lwm2m.FormatOpaque && (!single || recs[0].Value.Type() != lwm2m.TypeOpaque) {
			return nil, accept, fmt.Errorf("client: %w: opaque format is for opaque resources", ErrNotAcceptable)
		}
		b, err := lwm2m.Encode(accept, base, recs, reg)
		if err != nil {
			return nil, accept, fmt.Errorf("client: encode %s: %w: %w", accept, ErrNotAcceptable, err)
		}
		return b, accept, nil
	}
	var firstErr error
	for _, f := range readFormats(v) {
		if !single && !f.MultiValue() {
			continue
		}
		b, err := lwm2m.Encode(f, base, recs, reg)
		if err == nil {
			return b, f, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if !errors.Is(err, lwm2m.ErrUnsupportedFormat) {
			break
		}
	}
	return nil, lwm2m.FormatNone, fmt.Errorf("client: encode answer for %s: %w", base, firstErr)
}

// compositeFormat picks the format of a composite answer or notification: the
// Accept when given and able to, else SenML CBOR then SenML JSON.
func encodeComposite(accept lwm2m.Format, recs []lwm2m.Record, reg *lwm2m.Registry) ([]byte, lwm2m.Format, error) {
	if accept != lwm2m.FormatNone {
		if !accept.Composite() {
			return nil, accept, fmt.Errorf("client: %w: %s cannot carry a composite answer", ErrNotAcceptable, accept)
		}
		b, err := lwm2m.Encode(accept, lwm2m.Path{}, recs, reg)
		if err != nil {
			return nil, accept, fmt.Errorf("client: encode %s: %w: %w", accept, ErrNotAcceptable, err)
		}
		return b, accept, nil
	}
	var firstErr error
	for _, f := range []lwm2m.Format{lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON} {
		b, err := lwm2m.Encode(f, lwm2m.Path{}, recs, reg)
		if err == nil {
			return b, f, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, lwm2m.FormatNone, fmt.Errorf("client: encode composite: %w", firstErr)
}

// decodeRequest decodes a request payload (Write, Create, Write-Composite)
// and maps codec errors to the client's: an unknown format is 4.15, a
// malformed payload 4.00.
func decodeRequest(f lwm2m.Format, base lwm2m.Path, data []byte, reg *lwm2m.Registry) ([]lwm2m.Record, error) {
	if f == lwm2m.FormatNone {
		return nil, fmt.Errorf("client: %w: payload without Content-Format", ErrBadRequest)
	}
	recs, err := lwm2m.Decode(f, base, data, reg)
	if err != nil {
		if errors.Is(err, lwm2m.ErrUnsupportedFormat) {
			return nil, fmt.Errorf("client: %w: %w", ErrUnsupportedFormat, err)
		}
		return nil, fmt.Errorf("client: %w: %w", ErrBadRequest, err)
	}
	return recs, nil
}

// decodePathList decodes the path list of Read-Composite and
// Observe-Composite (Core §6.3.8, §6.4.3).
func decodePathList(f lwm2m.Format, data []byte) ([]lwm2m.Path, error) {
	if f == lwm2m.FormatNone {
		return nil, fmt.Errorf("client: %w: path list without Content-Format", ErrBadRequest)
	}
	paths, err := lwm2m.DecodePaths(f, data)
	if err != nil {
		if errors.Is(err, lwm2m.ErrUnsupportedFormat) {
			return nil, fmt.Errorf("client: %w: %w", ErrUnsupportedFormat, err)
		}
		return nil, fmt.Errorf("client: %w: %w", ErrBadRequest, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("client: %w: empty path list", ErrBadRequest)
	}
	return paths, nil
}
