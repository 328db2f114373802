package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flownexus/flownexus/lwm2m/bootstrap"
	"github.com/flownexus/flownexus/store"
)

// BootstrapPolicy decides what the bootstrap server hands out
// (lwm2m/bootstrap Config.Provision):
//
//   - a bootstrap-mode endpoint (factory PSK in the store) must come over
//     CoAPS with its factory identity, and receives a PSK account for the
//     LwM2M server: identity = endpoint name, key = OperationalPSK;
//   - a nosec endpoint may bootstrap over plain CoAP and receives a NoSec
//     account for coap://…:5683;
//   - every other endpoint, a revoked one, or an identity that is not the
//     endpoint's is refused (4.03).
type BootstrapPolicy struct {
	Creds CredentialStore
	// ServerURI is the LwM2M server's CoAPS URI ("coaps://gw.local:5684").
	ServerURI string
	// PlainServerURI is its CoAP URI, for nosec endpoints.
	PlainServerURI string
	// Lifetime and Binding go into the Server object (/1/0/1, /1/0/7).
	Lifetime time.Duration
	Binding  string
	// Certificates, when set, makes bootstrap-mode endpoints receive a
	// certificate account instead of a PSK one: a device certificate from
	// this CA (CN = endpoint name) with its key, and the CA certificate
	// as the server trust anchor (/0/x/4).
	Certificates *PKI
}

// Provision implements bootstrap.Config.Provision.
func (bp BootstrapPolicy) Provision(ctx context.Context, req bootstrap.Request) (bootstrap.Account, error) {
	c, err := bp.Creds.Credential(ctx, req.Endpoint)
	if errors.Is(err, store.ErrNotFound) {
		return bootstrap.Account{}, fmt.Errorf("endpoint %q not provisioned: %w", req.Endpoint, bootstrap.ErrRefused)
	}
	if err != nil {
		return bootstrap.Account{}, fmt.Errorf("bootstrap of %q: %w", req.Endpoint, err)
	}
	if c.Revoked {
		return bootstrap.Account{}, fmt.Errorf("endpoint %q: %w: %w", req.Endpoint, ErrRevoked, bootstrap.ErrRefused)
	}
	acct := bootstrap.Account{
		Lifetime:            bp.Lifetime,
		Binding:             bp.Binding,
		ShortServerID:       bootstrap.DefaultShortServerID,
		NotificationStoring: true,
	}
	switch c.Mode {
	case store.ModeBootstrap:
		if !req.Peer.Secure() {
			return bootstrap.Account{}, fmt.Errorf("endpoint %q over plain CoAP: %w: %w", req.Endpoint, ErrSecurityRequired, bootstrap.ErrRefused)
		}
		if req.Peer.Identity != c.PSKIdentity {
			return bootstrap.Account{}, fmt.Errorf("endpoint %q from identity %q: %w: %w", req.Endpoint, req.Peer.Identity, ErrIdentityMismatch, bootstrap.ErrRefused)
		}
		acct.ServerURI = bp.ServerURI
		if bp.Certificates != nil {
			dc, err := bp.Certificates.IssueDevice(c.Endpoint)
			if err != nil {
				return bootstrap.Account{}, fmt.Errorf("bootstrap of %q: %w", req.Endpoint, err)
			}
			acct.Mode = bootstrap.ModeCertificate
			acct.Identity, acct.SecretKey, acct.ServerPublicKey = dc.CertDER, dc.KeyDER, dc.CADER
			break
		}
		id, key := OperationalPSK(c)
		acct.Mode = bootstrap.ModePSK
		acct.Identity = []byte(id)
		acct.SecretKey = key
	case store.ModeNoSec:
		if req.Peer.Secure() && req.Peer.Identity != req.Endpoint {
			return bootstrap.Account{}, fmt.Errorf("endpoint %q from identity %q: %w: %w", req.Endpoint, req.Peer.Identity, ErrIdentityMismatch, bootstrap.ErrRefused)
		}
		acct.ServerURI = bp.PlainServerURI
		acct.Mode = bootstrap.ModeNoSec
	default:
		return bootstrap.Account{}, fmt.Errorf("endpoint %q is provisioned in %s mode, not for bootstrap: %w", req.Endpoint, c.Mode, bootstrap.ErrRefused)
	}
	if acct.ServerURI == "" {
		return bootstrap.Account{}, fmt.Errorf("bootstrap of %q: no LwM2M server URI configured", req.Endpoint)
	}
	return acct, nil
}
