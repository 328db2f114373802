package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Registration is a snapshot of one device's registration (Core §6.2.1).
// The server hands out copies; changing one changes nothing. The copies
// given to Notified, Sent and their deferred forms, once per message,
// share Objects, their Instances and ContentFormats with the server, which
// never changes them in place: read them, do not modify them.
type Registration struct {
	// ID is the registration id, the last segment of Location-Path rd/<id>.
	ID string
	// Endpoint is the client's endpoint name (ep=).
	Endpoint string
	// Lifetime (lt=, default 86400 s).
	Lifetime time.Duration
	// LwM2MVersion is lwm2m= ("1.0" when absent).
	LwM2MVersion string
	// Binding is b= ("U" when absent); for 1.0 clients it may contain Q.
	Binding string
	// QueueMode is b=UQ (1.0) or the Q parameter (1.1+): the device sleeps
	// and takes requests only shortly after an uplink (Core §6.5).
	QueueMode bool
	// SMSNumber is sms= (MSISDN), empty when absent.
	SMSNumber string
	// Peer is where the device's last uplink came from (Identity set for
	// DTLS).
	Peer coap.Peer
	// Listener is the local address of the transport the device talks
	// to (which of the server's listeners, plain CoAP or DTLS).
	Listener string
	// RootPath is the alternate path from </…>;rt="oma.lwm2m", "/" by
	// default (Core §6.2.1.1, Transport §6.4).
	RootPath string
	// Objects are the objects (with version and instances) the device
	// announced, in ascending id order.
	Objects []lwm2m.RegisteredObject
	// ContentFormats are the formats the device announced with ct= on the
	// root link (1.1+); empty when it said nothing.
	ContentFormats []lwm2m.Format
	// Links is the raw link-format payload of the last Register or Update
	// that carried one.
	Links string
	// RegisteredAt, LastUpdate and ExpiresAt are the registration's times;
	// ExpiresAt is LastUpdate + Lifetime (the server's grace period comes on
	// top before it expires the registration).
	RegisteredAt time.Time
	LastUpdate   time.Time
	ExpiresAt    time.Time
}

// DeregisterReason says why a registration ended.
type DeregisterReason int

// Reasons for Deregistered.
const (
	ReasonExplicit DeregisterReason = iota // the device sent De-register
	ReasonExpired                          // its lifetime (plus grace) passed
	ReasonReplaced                         // it registered again
	ReasonEvicted                          // the server ended it (Evict)
)

// String names the reason: explicit, expired, replaced.
func (r DeregisterReason) String() string {
	switch r {
	case ReasonExplicit:
		return "explicit"
	case ReasonExpired:
		return "expired"
	case ReasonReplaced:
		return "replaced"
	case ReasonEvicted:
		return "evicted"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Handler receives the server's events; the appliance implements it. Its
// methods run on the CoAP endpoint's workers: they may write to a queue or
// a database, but long work belongs elsewhere. Requests to the device must
// not be awaited from Registered or Updated (the device only gets its
// response afterwards); start them in a goroutine — a queue-mode device is
// awake right after the response.
type Handler interface {
	// Registered is called before a Register is answered. A non-nil error
	// refuses it: wrap ErrForbidden (4.03), ErrUnauthorized (4.01) or
	// ErrBadRequest (4.00). This is where endpoint name vs Peer.Identity,
	// provisioning and "allow unknown" are checked.
	Registered(ctx context.Context, r *Registration) error
	// Updated follows an accepted Update.
	Updated(ctx context.Context, r *Registration)
	// Deregistered ends a registration. For ReasonReplaced it comes after
	// Registered of the replacing registration: compare registration IDs
	// before marking the device offline.
	Deregistered(ctx context.Context, r *Registration, reason DeregisterReason)
	// Notified delivers a notification's values. An error (a full queue)
	// leaves a confirmable notification unacknowledged, so the device
	// retransmits it. A Handler that also implements DeferredHandler gets
	// NotifiedDeferred and SentDeferred instead.
	Notified(ctx context.Context, r *Registration, o *Observation, recs []lwm2m.Record) error
	// Sent delivers a Send (/dp) payload (Core §6.4.2); an error → 5.03.
	Sent(ctx context.Context, r *Registration, recs []lwm2m.Record) error
}

// DeferredHandler is implemented by a Handler that stores values
// asynchronously and must not have them acknowledged before they are
// stored (acknowledged means stored). The server then calls these
// instead of Notified and Sent, and answers the device only when stored
// is called — without holding the device's CoAP worker meanwhile, so
// other devices are served while a commit runs.
type DeferredHandler interface {
	// NotifiedDeferred takes a notification's values. A nil return
	// promises exactly one call of stored, from any goroutine: nil
	// acknowledges the notification; an error leaves it unacknowledged so
	// the device retransmits it (a notification is a response, RFC 7641
	// §1.2: there is no error answer to it, an ACK says "received" and an
	// RST ends the observation). An error return refuses it at once.
	NotifiedDeferred(ctx context.Context, r *Registration, o *Observation, recs []lwm2m.Record, stored func(error)) error
	// SentDeferred takes a Send (/dp) payload likewise: stored(nil)
	// answers 2.04, an error (returned or passed to stored) 5.03.
	SentDeferred(ctx context.Context, r *Registration, recs []lwm2m.Record, stored func(error)) error
}

// StaleHandler is implemented by a DeferredHandler that tells readings
// of the past from the current state. A notification older than the last
// one delivered on its observation (RFC 7641 §3.4: reordered on the way,
// its Observe number behind) must not be taken as the resource's current
// state, but it is not a duplicate: it carries values of its own, and the
// device is acknowledged for it once they are stored. The server hands
// such a notification to NotifiedStale instead of NotifiedDeferred, with
// the same contract (stored exactly once after a nil return; an error
// leaves it unacknowledged). A Handler without it gets stale
// notifications through NotifiedDeferred or Notified like any other.
type StaleHandler interface {
	NotifiedStale(ctx context.Context, r *Registration, o *Observation, recs []lwm2m.Record, stored func(error)) error
}

// NopHandler accepts every registration and drops every value. Embed it to
// implement only some methods.
type NopHandler struct{}

// Registered accepts.
func (NopHandler) Registered(context.Context, *Registration) error { return nil }

// Updated does nothing.
func (NopHandler) Updated(context.Context, *Registration) {}

// Deregistered does nothing.
func (NopHandler) Deregistered(context.Context, *Registration, DeregisterReason) {}

// Notified drops the values.
func (NopHandler) Notified(context.Context, *Registration, *Observation, []lwm2m.Record) error {
	return nil
}

// Sent drops the values.
func (NopHandler) Sent(context.Context, *Registration, []lwm2m.Record) error { return nil }

// regParams are the Register/Update query parameters (Core §6.2.1, §6.2.2;
// Transport §6.2.1 Table 6.2.1.1-1).
type regParams struct {
	ep, lwm2m, binding, sms string
	lt                      time.Duration
	hasLt, hasB, hasSMS, q  bool
}

// maxEndpointName bounds ep= (names are URNs such as urn:imei:…).
const maxEndpointName = 255

// parseRegParams parses the Uri-Query options of a Register (register
// true) or an Update. Unknown parameters are ignored, as the TS allows
// additions; repeated or malformed known ones are refused.
func parseRegParams(queries []string, register bool) (regParams, error) {
	var p regParams
	seen := make(map[string]bool, len(queries))
	for _, q := range queries {
		k, v, hasV := strings.Cut(q, "=")
		if seen[k] {
			return p, fmt.Errorf("%w: parameter %q repeated", ErrBadRequest, k)
		}
		seen[k] = true
		switch k {
		case "ep":
			if !register {
				return p, fmt.Errorf("%w: ep is not an Update parameter", ErrBadRequest)
			}
			if v == "" || len(v) > maxEndpointName || strings.ContainsAny(v, "/\x00") {
				return p, fmt.Errorf("%w: endpoint name %q", ErrBadRequest, v)
			}
			p.ep = v
		case "lt":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return p, fmt.Errorf("%w: lifetime %q is not a positive number of seconds", ErrBadRequest, v)
			}
			p.lt, p.hasLt = time.Duration(n)*time.Second, true
		case "lwm2m":
			switch v {
			case "1.0", "1.1", "1.2":
			default:
				return p, fmt.Errorf("%w: LwM2M version %q not supported (1.0, 1.1, 1.2)", ErrBadRequest, v)
			}
			if !register {
				return p, fmt.Errorf("%w: lwm2m is not an Update parameter", ErrBadRequest)
			}
			p.lwm2m = v
		case "b":
			if err := checkBinding(v); err != nil {
				return p, err
			}
			p.binding, p.hasB = v, true
		case "sms":
			p.sms, p.hasSMS = v, true
		case "Q":
			if hasV {
				return p, fmt.Errorf("%w: Q takes no value", ErrBadRequest)
			}
			p.q = true
		}
	}
	if register && p.ep == "" {
		return p, fmt.Errorf("%w: missing endpoint name (ep=)", ErrBadRequest)
	}
	return p, nil
}

// checkBinding accepts the binding modes of 1.0 (U, UQ, S, SQ, US, UQS) and
// 1.1+ (letters U, M, H, T, S, N; Core §5.3.1.1 and the Server object's
// resource 7), each letter at most once.
func checkBinding(b string) error {
	if b == "" {
		return fmt.Errorf("%w: empty binding", ErrBadRequest)
	}
	var seen [256]bool
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !strings.ContainsRune("UMHTSNQ", rune(c)) || seen[c] {
			return fmt.Errorf("%w: binding %q (letters U, M, H, T, S, N, Q, each once)", ErrBadRequest, b)
		}
		seen[c] = true
	}
	return nil
}

// parseLinks reads the Register/Update payload, a CoRE link-format list of
// objects and instances (Core §6.2.1.1, RFC 6690), with lwm2m's parser.
func parseLinks(payload []byte) (lwm2m.RegisterPayload, error) {
	rp, err := lwm2m.ParseRegisterPayload(payload)
	if err != nil {
		return rp, fmt.Errorf("%w: object list: %w", ErrBadRequest, err)
	}
	return rp, nil
}
