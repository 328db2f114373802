package appliance

import (
	"context"
	"fmt"
	"strings"

	"github.com/flownexus/flownexus/store"
)

// CredentialWriter is the store side of provisioning (*store.DB).
type CredentialWriter interface {
	ProvisionEndpoint(ctx context.Context, c store.Credential) (store.Endpoint, error)
	SetCredential(ctx context.Context, c store.Credential) error
}

// ProvisionRequest is what POST /api/v1/devices asks for.
type ProvisionRequest struct {
	Endpoint string
	// Mode is store.ModeNoSec, ModePSK, ModeX509 or ModeBootstrap.
	Mode string
	// PSKIdentity defaults to the endpoint name (what Zephyr's sample
	// sends); PSKKey is generated (PSKSize bytes, DefaultPSKSize by
	// default) when empty.
	PSKIdentity string
	PSKKey      []byte
	PSKSize     int
}

// Provisioned is the result, to show once: the PSK or the certificate with
// its private key. Only Credential (with the certificate, never the key)
// is stored.
type Provisioned struct {
	Credential  store.Credential
	Certificate *DeviceCertificate
}

// Provision creates the endpoint with fresh credentials in the store:
// a generated PSK, a certificate from this CA (store keeps the certificate
// and its serial), or a factory bootstrap PSK. It refuses an endpoint that
// exists (store.ErrConflict); use Reissue for new credentials.
func (p *PKI) Provision(ctx context.Context, w CredentialWriter, req ProvisionRequest) (Provisioned, error) {
	c, dc, err := p.newCredential(req)
	if err != nil {
		return Provisioned{}, err
	}
	if _, err := w.ProvisionEndpoint(ctx, c); err != nil {
		return Provisioned{}, fmt.Errorf("provision %q: %w", req.Endpoint, err)
	}
	return Provisioned{Credential: c, Certificate: dc}, nil
}

// Reissue replaces an endpoint's credential (a lost key, a compromised
// device): the old PSK stops working at once, and the old certificate is
// refused at the handshake because it is no longer the endpoint's current
// one (VerifyDevice).
func (p *PKI) Reissue(ctx context.Context, w CredentialWriter, req ProvisionRequest) (Provisioned, error) {
	c, dc, err := p.newCredential(req)
	if err != nil {
		return Provisioned{}, err
	}
	if err := w.SetCredential(ctx, c); err != nil {
		return Provisioned{}, fmt.Errorf("reissue %q: %w", req.Endpoint, err)
	}
	return Provisioned{Credential: c, Certificate: dc}, nil
}

func (p *PKI) newCredential(req ProvisionRequest) (store.Credential, *DeviceCertificate, error) {
	ep := strings.TrimSpace(req.Endpoint)
	if err := checkEndpointName(ep); err != nil {
		return store.Credential{}, nil, err
	}
	c := store.Credential{Endpoint: ep, Mode: req.Mode}
	switch req.Mode {
	case store.ModeNoSec:
		return c, nil, nil
	case store.ModePSK, store.ModeBootstrap:
		c.PSKIdentity = req.PSKIdentity
		if c.PSKIdentity == "" {
			c.PSKIdentity = ep
		}
		c.PSKKey = req.PSKKey
		if len(c.PSKKey) == 0 {
			k, err := GeneratePSK(req.PSKSize)
			if err != nil {
				return store.Credential{}, nil, err
			}
			c.PSKKey = k
		}
		return c, nil, nil
	case store.ModeX509:
		dc, err := p.IssueDevice(ep)
		if err != nil {
			return store.Credential{}, nil, err
		}
		c.CertPEM, c.CertSerial = string(dc.CertPEM), dc.Serial
		return c, &dc, nil
	}
	return store.Credential{}, nil, fmt.Errorf("%w: unknown security mode %q", store.ErrInvalid, req.Mode)
}

// Enrollment is the enrollment output of a fresh provisioning, for host
// (the appliance's name or address as devices reach it).
func (pr Provisioned) Enrollment(host string) Enrollment {
	return Enrollment{
		Endpoint:    pr.Credential.Endpoint,
		Mode:        pr.Credential.Mode,
		Host:        host,
		PSKIdentity: pr.Credential.PSKIdentity,
		PSK:         pr.Credential.PSKKey,
		Certificate: pr.Certificate,
	}
}
