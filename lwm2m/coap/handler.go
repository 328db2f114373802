package coap

import (
	"context"
	"io"
	"sync"
)

// Handler serves requests that arrive at an Endpoint. ServeCoAP runs on one
// of the endpoint's workers: it may block (a database write, an outgoing
// request to another peer), but while it does, other requests of the same
// peer wait. It returns the response to send, or nil to send none (a
// confirmable request then gets an empty ACK).
//
// The request body is complete: Block1 transfers are reassembled before
// ServeCoAP is called (RFC 7959 §2.3), and a response payload larger than
// the block size is sent in Block2 blocks, the handler being called again for
// every block the peer asks for (RFC 7959 §2.4) — so it must return the
// same content each time, or set an ETag that changes with it.
type Handler interface {
	ServeCoAP(ctx context.Context, r *Request) *Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r *Request) *Response

// ServeCoAP calls f.
func (f HandlerFunc) ServeCoAP(ctx context.Context, r *Request) *Response { return f(ctx, r) }

// Request is an incoming request.
type Request struct {
	// Peer sent the request; Peer.Identity is set for DTLS.
	Peer Peer
	// Message is the request. Its Payload is the whole body. The handler
	// may keep it; it shares nothing with the endpoint's buffers.
	Message *Message
	// Endpoint received the request; handlers use it to send requests or
	// notifications back to the peer.
	Endpoint *Endpoint

	answer   func(*Response) // set by the endpoint that received it
	deferred bool
	once     sync.Once
}

// Defer lets the handler answer later without holding the peer's worker:
// what ServeCoAP returns is then ignored, and respond sends the response
// (nil: none, an empty ACK for a confirmable request), exactly once, from
// any goroutine. A confirmable request not answered within the endpoint's
// ProcessingDelay gets an empty ACK and its response goes separately (RFC
// 7252 §5.2.2). For a Request made outside an endpoint, respond does
// nothing.
func (r *Request) Defer() (respond func(*Response)) {
	r.deferred = true
	return func(resp *Response) {
		r.once.Do(func() {
			if r.answer != nil {
				r.answer(resp)
			}
		})
	}
}

// Response is what a Handler returns. Set Code, options through the
// embedded Message's helpers (SetContentFormat, SetObserve, AddOption …)
// and either Payload or, for large bodies served in blocks (a firmware
// image), Body and BodySize: then only the requested block is read.
// Type, MessageID and Token are filled in by the endpoint.
type Response struct {
	Message
	// Body, when set, replaces Payload: BodySize bytes readable at any
	// offset. Such a response should carry an ETag.
	Body     io.ReaderAt
	BodySize int64
	// Then, if set, runs after the response has been handed to the
	// transport — for work that must follow the response, like sending
	// queued requests to a device that just registered.
	Then func()
}

// NewResponse returns a response with the given code.
func NewResponse(code Code) *Response {
	return &Response{Message: Message{Code: code}}
}

// ErrorResponse returns a response with a code and a diagnostic payload
// (RFC 7252 §5.5.2: UTF-8 text for humans).
func ErrorResponse(code Code, diagnostic string) *Response {
	r := NewResponse(code)
	if diagnostic != "" {
		r.Payload = []byte(diagnostic)
	}
	return r
}
