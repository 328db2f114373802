package coap

import (
	"errors"
	"fmt"
)

// Errors of outgoing exchanges. Compare with errors.Is.
var (
	// ErrTimeout: a confirmable message was not acknowledged after
	// MAX_RETRANSMIT retransmissions, or no response came before the
	// deadline.
	ErrTimeout = errors.New("coap: timeout")
	// ErrReset: the peer answered with RST (RFC 7252 §4.2).
	ErrReset = errors.New("coap: reset by peer")
	// ErrClosed: the endpoint has stopped.
	ErrClosed = errors.New("coap: endpoint closed")
	// ErrBlockTransfer: a block-wise transfer failed (the body changed
	// between blocks, blocks came out of order, or it grew past
	// MaxBodySize).
	ErrBlockTransfer = errors.New("coap: block-wise transfer failed")
	// ErrPeerBusy: Config.MaxWaiting requests already wait for the peer
	// (NSTART, RFC 7252 §4.7); the request was not sent.
	ErrPeerBusy = errors.New("coap: too many requests waiting for the peer")
	// ErrNotObserved: the peer answered an observe request without an
	// Observe option, so no observation was established (RFC 7641 §3.1).
	ErrNotObserved = errors.New("coap: observation not established")
	// ErrObservationExists: Resume was given a token this endpoint already
	// observes with.
	ErrObservationExists = errors.New("coap: observation token in use")
)

// blockErr wraps ErrBlockTransfer with context.
func blockErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBlockTransfer, fmt.Sprintf(format, args...))
}
