package bootstrap

import "errors"

var (
	// ErrRefused is returned (wrapped) when the Provision callback refuses a
	// device; the Bootstrap-Request is answered 4.03 Forbidden or 4.00.
	ErrRefused = errors.New("bootstrap: refused")
	// ErrBadRequest is a malformed Bootstrap-Request (no ep=).
	ErrBadRequest = errors.New("bootstrap: bad request")
	// ErrDevice is returned when the device answers a bootstrap operation
	// with an error code.
	ErrDevice = errors.New("bootstrap: device refused an operation")
	// ErrNoAccount means Bootstrap-Finish arrived but the device holds no
	// usable LwM2M server account.
	ErrNoAccount = errors.New("bootstrap: no LwM2M server account after bootstrap")
)
