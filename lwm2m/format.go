package lwm2m

import (
	"fmt"
	"strconv"
	"strings"
)

// Format is a CoAP Content-Format number (RFC 7252 §12.3, Core §7.4 and the
// IANA CoAP Content-Formats registry).
type Format uint16

// The content formats LwM2M 1.0–1.2 uses.
const (
	FormatText       Format = 0     // text/plain; charset=utf-8
	FormatLinkFormat Format = 40    // application/link-format (RFC 6690)
	FormatOpaque     Format = 42    // application/octet-stream
	FormatCBOR       Format = 60    // application/cbor (RFC 8949), single resource
	FormatSenMLJSON  Format = 110   // application/senml+json (RFC 8428)
	FormatSenMLCBOR  Format = 112   // application/senml+cbor (RFC 8428)
	FormatTLV        Format = 11542 // application/vnd.oma.lwm2m+tlv
	FormatLwM2MJSON  Format = 11543 // application/vnd.oma.lwm2m+json (1.0 JSON)
	FormatLwM2MCBOR  Format = 11544 // application/vnd.oma.lwm2m+cbor (1.2)
	// FormatNone marks "no Content-Format/Accept option".
	FormatNone Format = 0xFFFF
)

var formatNames = map[Format]string{
	FormatText:       "text",
	FormatLinkFormat: "link-format",
	FormatOpaque:     "opaque",
	FormatCBOR:       "cbor",
	FormatSenMLJSON:  "senml-json",
	FormatSenMLCBOR:  "senml-cbor",
	FormatTLV:        "tlv",
	FormatLwM2MJSON:  "lwm2m-json",
	FormatLwM2MCBOR:  "lwm2m-cbor",
	FormatNone:       "none",
}

// String is the short name the REST API uses ("tlv", "senml-cbor", …).
func (f Format) String() string {
	if n, ok := formatNames[f]; ok {
		return n
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// MediaType is the IANA media type for the format.
func (f Format) MediaType() string {
	switch f {
	case FormatText:
		return "text/plain;charset=utf-8"
	case FormatLinkFormat:
		return "application/link-format"
	case FormatOpaque:
		return "application/octet-stream"
	case FormatCBOR:
		return "application/cbor"
	case FormatSenMLJSON:
		return "application/senml+json"
	case FormatSenMLCBOR:
		return "application/senml+cbor"
	case FormatTLV:
		return "application/vnd.oma.lwm2m+tlv"
	case FormatLwM2MJSON:
		return "application/vnd.oma.lwm2m+json"
	case FormatLwM2MCBOR:
		return "application/vnd.oma.lwm2m+cbor"
	}
	return ""
}

// ParseFormat accepts a short name (as String writes it) or a number.
func ParseFormat(s string) (Format, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for f, n := range formatNames {
		if n == s && f != FormatNone {
			return f, nil
		}
	}
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return Format(n), nil
	}
	return FormatNone, fmt.Errorf("%w: %q (want text, tlv, senml-json, senml-cbor, lwm2m-json, lwm2m-cbor, cbor, opaque, link-format or a number)", ErrUnsupportedFormat, s)
}

// MultiValue reports whether the format can carry more than one resource
// value (and so object and instance level reads and composites).
func (f Format) MultiValue() bool {
	switch f {
	case FormatTLV, FormatSenMLJSON, FormatSenMLCBOR, FormatLwM2MJSON, FormatLwM2MCBOR:
		return true
	}
	return false
}

// Composite reports whether the format can carry values from several
// unrelated paths (Read-Composite, Write-Composite, Observe-Composite, Send;
// Core §6.3.8 and Transport §5).
func (f Format) Composite() bool {
	switch f {
	case FormatSenMLJSON, FormatSenMLCBOR, FormatLwM2MCBOR:
		return true
	}
	return false
}
