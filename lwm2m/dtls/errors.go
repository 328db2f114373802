package dtls

import "errors"

var (
	// ErrUnknownIdentity is what a PSK lookup returns (wrapped) for an
	// identity the appliance does not know; the handshake then fails.
	ErrUnknownIdentity = errors.New("dtls: unknown PSK identity")
	// ErrKeyMismatch is the reason an EventFailed gives when a client
	// offered a known PSK identity and its handshake did not finish: with
	// PSK that is almost always a key that differs from the provisioned
	// one (the Finished messages do not verify, RFC 6347 §4.2.6).
	ErrKeyMismatch = errors.New("dtls: handshake of a known PSK identity failed; its key most likely does not match")
	// ErrNoSession is returned by WriteTo for a peer whose session is gone.
	ErrNoSession = errors.New("dtls: no such session")
	// ErrNoCredentials means a configuration offers neither PSK nor a
	// certificate.
	ErrNoCredentials = errors.New("dtls: no PSK callback and no certificate configured")
	// ErrNotEstablished is returned by Client methods that need a finished
	// handshake.
	ErrNotEstablished = errors.New("dtls: session not established")
	// ErrBadState means a parked or suspended session state could not be
	// decoded.
	ErrBadState = errors.New("dtls: bad session state")
	// ErrNoCommonName means a peer certificate has an empty subject CN and
	// so cannot name a device.
	ErrNoCommonName = errors.New("dtls: peer certificate has no subject common name")
)
