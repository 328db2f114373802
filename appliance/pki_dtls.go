package appliance

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/store"
)

// Identity errors: why a handshake or a registration is refused.
var (
	// ErrRevoked: the device's credential or certificate is revoked.
	ErrRevoked = errors.New("credential revoked")
	// ErrUnknownCertificate: a certificate from the appliance CA that is not
	// the device's current one (superseded by a re-issue, or deleted).
	ErrUnknownCertificate = errors.New("certificate not issued to any provisioned device")
	// ErrIdentityMismatch: the endpoint name does not belong to the DTLS
	// identity that registers it.
	ErrIdentityMismatch = errors.New("endpoint name does not match the DTLS identity")
	// ErrSecurityRequired: an endpoint provisioned for DTLS came over plain
	// CoAP.
	ErrSecurityRequired = errors.New("endpoint is provisioned for DTLS")
	// ErrNotProvisioned: no credential for the endpoint and unknown
	// endpoints are not allowed.
	ErrNotProvisioned = errors.New("endpoint not provisioned")
)

// DefaultPSKSize is 16 bytes: Zephyr's default
// CONFIG_LWM2M_SECURITY_KEY_SIZE fits a 16-byte key without changes.
const DefaultPSKSize = 16

// GeneratePSK returns a random PSK of n bytes (DefaultPSKSize when n <= 0).
// n is capped at 64 bytes (RFC 4279 §5.3 asks for up to 64 octets).
func GeneratePSK(n int) ([]byte, error) {
	if n <= 0 {
		n = DefaultPSKSize
	}
	if n > 64 {
		return nil, fmt.Errorf("%w: PSK of %d bytes, at most 64", ErrPKI, n)
	}
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	return k, nil
}

// CredentialStore is what the DTLS callbacks and identity checks read
// (*store.DB implements it).
type CredentialStore interface {
	Credential(ctx context.Context, endpoint string) (store.Credential, error)
	CredentialByPSKIdentity(ctx context.Context, identity string) (store.Credential, error)
	CredentialByCertSerial(ctx context.Context, serial string) (store.Credential, error)
}

// lookupTimeout bounds a credential query made inside a handshake.
const lookupTimeout = 2 * time.Second

// PSKLookup returns the LwM2M server's dtls.Config.PSK callback: the key
// of a provisioned, unrevoked psk credential, or the operational key of a
// bootstrap-mode device (see OperationalPSK); an error wrapping
// dtls.ErrUnknownIdentity otherwise.
func PSKLookup(creds CredentialStore) func(identity string) ([]byte, error) {
	return func(identity string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		c, err := creds.CredentialByPSKIdentity(ctx, identity)
		if errors.Is(err, store.ErrNotFound) || err == nil && c.Mode == store.ModeBootstrap {
			// A bootstrapped device's operational identity is its
			// endpoint name.
			c, err = creds.Credential(ctx, identity)
			if err == nil && c.Mode != store.ModeBootstrap {
				err = store.ErrNotFound
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("psk identity %q: %w", identity, dtls.ErrUnknownIdentity)
		}
		if err != nil {
			return nil, fmt.Errorf("psk identity %q: %w", identity, err)
		}
		if c.Revoked {
			return nil, fmt.Errorf("psk identity %q of %q: %w", identity, c.Endpoint, ErrRevoked)
		}
		switch c.Mode {
		case store.ModePSK:
			return c.PSKKey, nil
		case store.ModeBootstrap:
			_, key := OperationalPSK(c)
			return key, nil
		}
		return nil, fmt.Errorf("psk identity %q: endpoint %q is in %s mode: %w", identity, c.Endpoint, c.Mode, dtls.ErrUnknownIdentity)
	}
}

// BootstrapPSKLookup is the bootstrap server's dtls.Config.PSK callback:
// the factory key of a bootstrap-mode credential.
func BootstrapPSKLookup(creds CredentialStore) func(identity string) ([]byte, error) {
	return func(identity string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		c, err := creds.CredentialByPSKIdentity(ctx, identity)
		if errors.Is(err, store.ErrNotFound) || err == nil && c.Mode != store.ModeBootstrap {
			return nil, fmt.Errorf("bootstrap psk identity %q: %w", identity, dtls.ErrUnknownIdentity)
		}
		if err != nil {
			return nil, fmt.Errorf("bootstrap psk identity %q: %w", identity, err)
		}
		if c.Revoked {
			return nil, fmt.Errorf("bootstrap psk identity %q of %q: %w", identity, c.Endpoint, ErrRevoked)
		}
		return c.PSKKey, nil
	}
}

// OperationalPSK derives the PSK identity and key a bootstrap-mode device
// receives from the bootstrap server. The store keeps one credential per
// endpoint, the factory bootstrap one; deriving the operational key from
// it (HMAC-SHA-256 keyed with the factory key, truncated to 16 bytes) means
// nothing else needs storing, the device gets the same key at every
// re-bootstrap, and revoking or replacing the factory credential retires
// both. The identity is the endpoint name.
func OperationalPSK(c store.Credential) (identity string, key []byte) {
	m := hmac.New(sha256.New, c.PSKKey)
	m.Write([]byte("flownexus operational psk\x00"))
	m.Write([]byte(c.Endpoint))
	return c.Endpoint, m.Sum(nil)[:DefaultPSKSize]
}

// VerifyDevice returns the dtls.Config.VerifyPeer callback, run after the
// chain was verified against ClientCAs: the revocation list is the store's
// revoked credentials (store.RevokeCredential). A certificate from the
// appliance CA must be its endpoint's current one (so a re-issue retires
// the old certificate), or belong to a bootstrap-mode endpoint (issued by
// the bootstrap server); a certificate from an imported CA is refused when
// the endpoint named by its CN has a revoked credential.
func (p *PKI) VerifyDevice(creds CredentialStore) func(*x509.Certificate) error {
	return func(cert *x509.Certificate) error {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		serial := SerialString(cert.SerialNumber)
		c, err := creds.CredentialByCertSerial(ctx, serial)
		switch {
		case err == nil:
			if c.Revoked {
				return fmt.Errorf("certificate %s of %q: %w", serial, c.Endpoint, ErrRevoked)
			}
			if c.Endpoint != cert.Subject.CommonName {
				return fmt.Errorf("certificate %s names %q but belongs to %q: %w", serial, cert.Subject.CommonName, c.Endpoint, ErrIdentityMismatch)
			}
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("certificate %s: %w", serial, err)
		}
		c, err = creds.Credential(ctx, cert.Subject.CommonName)
		if p.IsOwnCertificate(cert) {
			// Certificates handed out by the bootstrap server are not
			// stored (the endpoint keeps its factory credential); they
			// are valid while that credential is.
			if err == nil && c.Mode == store.ModeBootstrap && !c.Revoked {
				return nil
			}
			if err == nil && c.Revoked {
				return fmt.Errorf("certificate %s: endpoint %q: %w", serial, c.Endpoint, ErrRevoked)
			}
			return fmt.Errorf("certificate %s for %q: %w", serial, cert.Subject.CommonName, ErrUnknownCertificate)
		}
		if err == nil && c.Revoked {
			return fmt.Errorf("certificate %s: endpoint %q: %w", serial, c.Endpoint, ErrRevoked)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("certificate %s: %w", serial, err)
		}
		return nil
	}
}

// DTLSConfig builds the configuration of the CoAPS listener (lwm2m/dtls):
// PSK credentials of mode psk from the store, the server certificate from
// this CA, device certificates chaining to this CA or an imported one and
// not revoked. The returned config starts from dtls.DefaultConfig.
func (p *PKI) DTLSConfig(creds CredentialStore, log *slog.Logger) dtls.Config {
	cfg := dtls.DefaultConfig()
	cfg.PSK = PSKLookup(creds)
	cfg.Certificate = p.ServerCertificate()
	cfg.ClientCAs = p.ClientCAs()
	cfg.VerifyPeer = p.VerifyDevice(creds)
	cfg.Logger = log
	return cfg
}

// BootstrapDTLSConfig is the CoAPS bootstrap listener's configuration:
// the factory (mode bootstrap) PSK credentials. Certificate devices may
// bootstrap too, with certificates from this CA or an imported CA.
func (p *PKI) BootstrapDTLSConfig(creds CredentialStore, log *slog.Logger) dtls.Config {
	cfg := p.DTLSConfig(creds, log)
	cfg.PSK = BootstrapPSKLookup(creds)
	return cfg
}

// CheckIdentity decides whether peer may register (or update) endpoint, the
// registration hook the LwM2M server calls (OMA-TS-LightweightM2M-Core 1.2
// §7.3.1: the server must check that the endpoint name belongs to the
// authenticated identity). cred is the endpoint's credential, nil if it has
// none; allowUnknown is LwM2MConfig.AllowUnknownEndpoints.
//
//   - a DTLS peer must be the endpoint's PSK identity or have a certificate
//     with CN = endpoint; anything else is an attempt to take over another
//     endpoint's registration;
//   - an endpoint provisioned for DTLS (psk, x509, bootstrap) may not
//     register over plain CoAP;
//   - a revoked credential is refused;
//   - an endpoint without a credential registers only over plain CoAP and
//     only when unknown endpoints are allowed.
func CheckIdentity(endpoint string, peer coap.Peer, cred *store.Credential, allowUnknown bool) error {
	if cred == nil {
		if peer.Secure() {
			return fmt.Errorf("endpoint %q from DTLS identity %q: %w", endpoint, peer.Identity, ErrIdentityMismatch)
		}
		if !allowUnknown {
			return fmt.Errorf("endpoint %q: %w", endpoint, ErrNotProvisioned)
		}
		return nil
	}
	if cred.Revoked {
		return fmt.Errorf("endpoint %q: %w", endpoint, ErrRevoked)
	}
	switch cred.Mode {
	case store.ModeNoSec:
		if peer.Secure() && peer.Identity != endpoint {
			return fmt.Errorf("endpoint %q from DTLS identity %q: %w", endpoint, peer.Identity, ErrIdentityMismatch)
		}
		return nil
	case store.ModePSK:
		if !peer.Secure() {
			return fmt.Errorf("endpoint %q over plain CoAP: %w", endpoint, ErrSecurityRequired)
		}
		if peer.Identity != cred.PSKIdentity {
			return fmt.Errorf("endpoint %q (psk identity %q) from DTLS identity %q: %w", endpoint, cred.PSKIdentity, peer.Identity, ErrIdentityMismatch)
		}
		return nil
	case store.ModeX509:
		if !peer.Secure() {
			return fmt.Errorf("endpoint %q over plain CoAP: %w", endpoint, ErrSecurityRequired)
		}
		if peer.Identity != endpoint {
			return fmt.Errorf("endpoint %q from certificate CN %q: %w", endpoint, peer.Identity, ErrIdentityMismatch)
		}
		return nil
	case store.ModeBootstrap:
		// After bootstrap the device holds OperationalPSK: identity =
		// endpoint name.
		if !peer.Secure() {
			return fmt.Errorf("endpoint %q over plain CoAP: %w", endpoint, ErrSecurityRequired)
		}
		if peer.Identity != endpoint {
			return fmt.Errorf("endpoint %q from DTLS identity %q: %w", endpoint, peer.Identity, ErrIdentityMismatch)
		}
		return nil
	}
	return fmt.Errorf("endpoint %q: unknown security mode %q: %w", endpoint, cred.Mode, ErrIdentityMismatch)
}

// IdentityChecker is CheckIdentity with the credential looked up in the
// store, for the LwM2M server's registration hook.
type IdentityChecker struct {
	Creds        CredentialStore
	AllowUnknown bool
}

// Check looks up endpoint's credential and applies CheckIdentity.
func (ic IdentityChecker) Check(ctx context.Context, endpoint string, peer coap.Peer) error {
	c, err := ic.Creds.Credential(ctx, endpoint)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return CheckIdentity(endpoint, peer, nil, ic.AllowUnknown)
	case err != nil:
		return fmt.Errorf("identity check of %q: %w", endpoint, err)
	}
	return CheckIdentity(endpoint, peer, &c, ic.AllowUnknown)
}
