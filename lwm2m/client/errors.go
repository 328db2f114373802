package client

import (
	"errors"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Sentinel errors. Objects return them (wrapped with context) from their
// methods; the CoAP edge turns them into response codes (Core §6, Table
// "Response codes" per operation).
var (
	// ErrNotFound: the path does not exist in the tree (4.04).
	ErrNotFound = errors.New("not found")
	// ErrMethodNotAllowed: the model does not allow the operation on that
	// path, e.g. Write on a read-only resource (4.05).
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrBadRequest: the request or payload does not make sense (4.00).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: the server may not access the path, e.g. the
	// Security object outside bootstrap (4.01, Core §6.3 and E.1).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotAcceptable: the requested Accept format cannot carry the answer (4.06).
	ErrNotAcceptable = errors.New("not acceptable")
	// ErrUnsupportedFormat: the payload's Content-Format is not supported (4.15).
	ErrUnsupportedFormat = errors.New("unsupported content format")
	// ErrNotRegistered: an operation needs a registration the client does not have.
	ErrNotRegistered = errors.New("not registered")
	// ErrServer: the server answered a client request with an error code.
	ErrServer = errors.New("server refused")
	// ErrClosed: the client has stopped.
	ErrClosed = errors.New("client closed")
)

// CodeOf maps an error returned by the tree or an object to the CoAP
// response code the client answers with (Core §6, the response codes of
// each operation).
func CodeOf(err error) coap.Code {
	switch {
	case err == nil:
		return coap.Content
	case errors.Is(err, ErrNotFound):
		return coap.NotFound
	case errors.Is(err, ErrMethodNotAllowed):
		return coap.MethodNotAllowed
	case errors.Is(err, ErrUnauthorized):
		return coap.Unauthorized
	case errors.Is(err, ErrNotAcceptable):
		return coap.NotAcceptable
	case errors.Is(err, ErrUnsupportedFormat):
		return coap.UnsupportedContentFormat
	case errors.Is(err, ErrBadRequest):
		return coap.BadRequest
	}
	return coap.InternalServerError
}

// ServerError is a client request (Register, Update, Send …) that the server
// answered with an error code. It wraps ErrServer.
type ServerError struct {
	Op      string
	Code    coap.Code
	Message string
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("%s: server answered %s", e.Op, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *ServerError) Unwrap() error { return ErrServer }
