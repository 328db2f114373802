package server

import (
	"errors"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Sentinel errors. Device responses with an error code come back as a
// *ResponseError that unwraps to one of them, so callers can write
// errors.Is(err, server.ErrNotFound). Handler methods return ErrForbidden,
// ErrBadRequest or ErrUnauthorized (wrapped) to refuse a registration.
var (
	ErrBadRequest               = errors.New("bad request")                // 4.00
	ErrUnauthorized             = errors.New("unauthorized")               // 4.01
	ErrBadOption                = errors.New("bad option")                 // 4.02
	ErrForbidden                = errors.New("forbidden")                  // 4.03
	ErrNotFound                 = errors.New("not found")                  // 4.04
	ErrMethodNotAllowed         = errors.New("method not allowed")         // 4.05
	ErrNotAcceptable            = errors.New("not acceptable")             // 4.06
	ErrRequestIncomplete        = errors.New("request entity incomplete")  // 4.08
	ErrConflict                 = errors.New("conflict")                   // 4.09
	ErrPreconditionFailed       = errors.New("precondition failed")        // 4.12
	ErrTooLarge                 = errors.New("request entity too large")   // 4.13
	ErrUnsupportedContentFormat = errors.New("unsupported content format") // 4.15
	ErrDeviceError              = errors.New("device error")               // 5.xx
	ErrUnexpectedResponse       = errors.New("unexpected response")        // any other code

	// ErrTimeout: the device did not answer in time (retransmissions
	// exhausted, the context deadline passed, or a queue-mode device did
	// not wake up before it).
	ErrTimeout = errors.New("device did not answer in time")
	// ErrNotRegistered: no current registration for the endpoint.
	ErrNotRegistered = errors.New("endpoint not registered")
	// ErrRegistrationEnded: the registration a request was made for ended
	// (replaced by a new Register, de-registered, expired or evicted)
	// before the request completed, or before it was sent. It wraps
	// ErrNotRegistered: the device has forgotten what was asked of it.
	ErrRegistrationEnded = fmt.Errorf("registration ended: %w", ErrNotRegistered)
	// ErrDeviceBusy: too many requests already wait for the device
	// (coap.Config.MaxWaiting); the request was not sent.
	ErrDeviceBusy = errors.New("too many requests waiting for the device")
	// ErrReset: the device rejected the request with RST.
	ErrReset = errors.New("device reset the exchange")
	// ErrDecode: the device's payload could not be decoded.
	ErrDecode = errors.New("cannot decode the device's payload")
	// ErrClosed: the server has stopped.
	ErrClosed = errors.New("server closed")
	// ErrNotObserved: the device answered without establishing the
	// observation (no Observe option, RFC 7641 §3.1).
	ErrNotObserved = errors.New("device did not establish the observation")
)

// ResponseError is a CoAP error response from a device: its code and the
// diagnostic payload, if any.
type ResponseError struct {
	Code    coap.Code
	Message string
}

// Error formats the code and the diagnostic.
func (e *ResponseError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("device answered %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("device answered %s", e.Code)
}

// Unwrap maps the code to its sentinel.
func (e *ResponseError) Unwrap() error { return codeErr(e.Code) }

func codeErr(c coap.Code) error {
	switch c {
	case coap.BadRequest:
		return ErrBadRequest
	case coap.Unauthorized:
		return ErrUnauthorized
	case coap.BadOption:
		return ErrBadOption
	case coap.Forbidden:
		return ErrForbidden
	case coap.NotFound:
		return ErrNotFound
	case coap.MethodNotAllowed:
		return ErrMethodNotAllowed
	case coap.NotAcceptable:
		return ErrNotAcceptable
	case coap.RequestEntityIncomplete:
		return ErrRequestIncomplete
	case coap.Conflict:
		return ErrConflict
	case coap.PreconditionFailed:
		return ErrPreconditionFailed
	case coap.RequestEntityTooLarge:
		return ErrTooLarge
	case coap.UnsupportedContentFormat:
		return ErrUnsupportedContentFormat
	}
	if c.Class() == 5 {
		return ErrDeviceError
	}
	return ErrUnexpectedResponse
}

// refusalCode turns a Handler's refusal into the CoAP code sent back.
func refusalCode(err error) coap.Code {
	switch {
	case errors.Is(err, ErrForbidden):
		return coap.Forbidden
	case errors.Is(err, ErrBadRequest):
		return coap.BadRequest
	case errors.Is(err, ErrUnauthorized):
		return coap.Unauthorized
	case errors.Is(err, ErrNotFound):
		return coap.NotFound
	}
	return coap.InternalServerError
}

// transportErr maps lwm2m/coap errors to this package's sentinels.
func transportErr(ep string, err error) error {
	switch {
	case errors.Is(err, coap.ErrTimeout):
		return fmt.Errorf("server: %s: %w: %w", ep, ErrTimeout, err)
	case errors.Is(err, coap.ErrReset):
		return fmt.Errorf("server: %s: %w", ep, ErrReset)
	case errors.Is(err, coap.ErrClosed):
		return fmt.Errorf("server: %s: %w", ep, ErrClosed)
	case errors.Is(err, coap.ErrPeerBusy):
		return fmt.Errorf("server: %s: %w: %w", ep, ErrDeviceBusy, err)
	}
	return fmt.Errorf("server: %s: %w", ep, err)
}
