package appliance

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// refusal is one refused registration or handshake, on its way to the
// store (the Devices page lists them with a count per name).
type refusal struct {
	endpoint, reason, addr string
}

// refusalQueue is how many refusals may wait for the store; beyond it a
// flood of refusals is counted in the log only, never slowing the
// handshake or registration path.
const refusalQueue = 256

// refuse queues a refusal without blocking.
func (l *lifecycle) refuse(endpoint, reason, addr string) {
	select {
	case l.refusals <- refusal{endpoint, reason, addr}:
	default:
		l.log.Debug("refusal not recorded: queue full", "endpoint", endpoint)
	}
}

// recordRefusals writes queued refusals until ctx ends.
func (l *lifecycle) recordRefusals(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-l.refusals:
			if err := l.db.RecordRefusal(ctx, r.endpoint, r.reason, r.addr); err != nil && ctx.Err() == nil {
				l.log.Warn("refusal not recorded", "endpoint", r.endpoint, "err", err)
			}
		}
	}
}

// refusalReason is the short reason the Devices page shows.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, lwm2m.ErrBadEndpointName):
		return "malformed name: " + err.Error()
	case errors.Is(err, ErrNotProvisioned):
		return "unknown: not provisioned, and unknown devices are not allowed (Settings)"
	case errors.Is(err, ErrSecurityRequired):
		return "wrong mode: provisioned for DTLS, came over plain CoAP"
	case errors.Is(err, ErrIdentityMismatch):
		return "wrong credential: " + err.Error()
	case errors.Is(err, ErrRevoked):
		return "wrong credential: revoked"
	case errors.Is(err, ErrUnknownCertificate):
		return "wrong credential: certificate not issued to a provisioned device"
	}
	return err.Error()
}

// checkName refuses a registration whose endpoint name breaks the one
// rule (lwm2m.CheckEndpointName) that provisioning applies too.
func (l *lifecycle) checkName(r *server.Registration) error {
	err := lwm2m.CheckEndpointName(r.Endpoint)
	if err == nil {
		return nil
	}
	l.log.Warn("registration refused", "endpoint", r.Endpoint, "addr", r.Peer.Addr, "err", err)
	l.refuse(r.Endpoint, refusalReason(err), r.Peer.Addr.String())
	return fmt.Errorf("%w: %v", server.ErrBadRequest, err)
}

// recordHandshakeRefusals wraps the DTLS credential lookups so that an
// unknown PSK identity or a refused certificate shows up among the
// refusals too, and listens for handshakes of a known identity that fail
// later, inside the handshake: a wrong key.
func (l *lifecycle) recordHandshakeRefusals(cfg *dtls.Config) {
	next := cfg.OnEvent
	cfg.OnEvent = func(ev dtls.Event) {
		if ev.Kind == dtls.EventFailed && errors.Is(ev.Err, dtls.ErrKeyMismatch) {
			addr := ""
			if ev.Peer.Addr.IsValid() {
				addr = ev.Peer.Addr.String()
			}
			l.refuse(ev.Peer.Identity, "wrong credential: the device's PSK does not match the one provisioned for it", addr)
		}
		if next != nil {
			next(ev)
		}
	}
	if psk := cfg.PSK; psk != nil {
		cfg.PSK = func(identity string) ([]byte, error) {
			k, err := psk(identity)
			if err != nil {
				l.refuse(identity, "DTLS handshake: "+err.Error(), "")
			}
			return k, err
		}
	}
	if verify := cfg.VerifyPeer; verify != nil {
		cfg.VerifyPeer = func(cert *x509.Certificate) error {
			err := verify(cert)
			if err != nil {
				l.refuse(cert.Subject.CommonName, "DTLS handshake: "+refusalReason(err), "")
			}
			return err
		}
	}
}
