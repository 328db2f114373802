package lwm2m

import (
	"errors"
	"fmt"
)

// ErrBadEndpointName: an endpoint name outside the rule of
// CheckEndpointName.
var ErrBadEndpointName = errors.New("bad endpoint name")

// MaxEndpointName is the longest endpoint name taken: it must fit a
// certificate's CommonName (RFC 5280 ub-common-name, 64) and a PSK
// identity on small devices.
const MaxEndpointName = 64

// EndpointNameRule says in words what CheckEndpointName accepts; every
// refusal quotes it, so registration and provisioning answer alike.
const EndpointNameRule = "1 to 64 characters of printable ASCII (letters, digits and punctuation such as : - . _ @), without spaces, quotes, backslashes or / ? # & %"

// CheckEndpointName is FlowNexus's one rule for endpoint names, applied
// when a device registers (Core §6.2.1, the "ep" parameter) and when it is
// provisioned. Core §6.2.1 leaves the characters open; the rule keeps a
// name usable as a PSK identity, a certificate CommonName, a URI path
// segment and a query value without escaping (urn:imei:…, urn:uuid:…,
// serial numbers).
func CheckEndpointName(ep string) error {
	ok := ep != "" && len(ep) <= MaxEndpointName
	for i := 0; ok && i < len(ep); i++ {
		switch c := ep[i]; {
		case c < 0x21 || c > 0x7e:
			ok = false
		case c == '"' || c == '\\' || c == '/' || c == '?' || c == '#' || c == '&' || c == '%':
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%w %q: want %s", ErrBadEndpointName, ep, EndpointNameRule)
	}
	return nil
}
