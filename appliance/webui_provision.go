package appliance

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// provisioner creates devices with credentials from the appliance's PKI and
// renders their enrollment output (webui.Provisioner and webui.Enrollment).
type provisioner struct {
	db    *store.DB
	pki   *PKI
	host  string
	ports map[string]int // mode → port devices use
	// evict ends a registration made with the old credential (re-key).
	evict func(ctx context.Context, endpoint string) bool
}

var (
	_ webui.Provisioner = (*provisioner)(nil)
	_ webui.Enrollment  = (*provisioner)(nil)
	_ webui.Rekeyer     = (*provisioner)(nil)
)

func (p *provisioner) Provision(ctx context.Context, req webui.ProvisionRequest) (webui.Credentials, error) {
	return p.issue(ctx, req, p.pki.Provision)
}

// Rekey gives an existing device new credentials (a lost key, a
// compromised device, a mode change): the old ones stop working at once
// and its current registration ends.
func (p *provisioner) Rekey(ctx context.Context, req webui.ProvisionRequest) (webui.Credentials, error) {
	if _, err := p.db.Endpoint(ctx, req.Endpoint); err != nil {
		return webui.Credentials{}, err
	}
	c, err := p.issue(ctx, req, p.pki.Reissue)
	if err != nil {
		return c, err
	}
	if p.evict != nil {
		p.evict(ctx, req.Endpoint)
	}
	return c, nil
}

func (p *provisioner) issue(ctx context.Context, req webui.ProvisionRequest,
	do func(context.Context, CredentialWriter, ProvisionRequest) (Provisioned, error)) (webui.Credentials, error) {
	if err := checkEndpointName(req.Endpoint); err != nil {
		return webui.Credentials{}, fmt.Errorf("%w: %v", webui.ErrInvalid, err)
	}
	switch req.Mode {
	case store.ModeNoSec, store.ModePSK, store.ModeX509, store.ModeBootstrap:
	default:
		return webui.Credentials{}, fmt.Errorf("%w: security mode %q (want nosec, psk, x509 or bootstrap)", webui.ErrInvalid, req.Mode)
	}
	pr, err := do(ctx, p.db, ProvisionRequest{Endpoint: req.Endpoint, Mode: req.Mode,
		PSKIdentity: req.PSKIdentity, PSKKey: req.PSKKey})
	if err != nil {
		return webui.Credentials{}, err
	}
	out := webui.Credentials{Endpoint: pr.Credential.Endpoint, Mode: pr.Credential.Mode,
		PSKIdentity: pr.Credential.PSKIdentity, PSKKey: pr.Credential.PSKKey,
		CACertificate: string(p.pki.CACertPEM())}
	if pr.Certificate != nil {
		out.Certificate, out.PrivateKey = string(pr.Certificate.CertPEM), string(pr.Certificate.KeyPEM)
	}
	e := p.enrollment(out)
	out.ServerURI = e.ServerURI()
	// Provisioned now: its earlier refusals are history.
	_ = p.db.ClearRefusal(ctx, req.Endpoint)
	return out, nil
}

func (p *provisioner) enrollment(c webui.Credentials) Enrollment {
	e := Enrollment{Endpoint: c.Endpoint, Mode: c.Mode, Host: p.host, Port: p.ports[c.Mode],
		PSKIdentity: c.PSKIdentity, PSK: c.PSKKey}
	if c.Mode == store.ModeX509 {
		e.Certificate = &DeviceCertificate{Endpoint: c.Endpoint,
			CertPEM: []byte(c.Certificate), CertDER: pemBody(c.Certificate),
			KeyPEM: []byte(c.PrivateKey), KeyDER: pemBody(c.PrivateKey),
			CAPEM: []byte(c.CACertificate), CADER: pemBody(c.CACertificate)}
	}
	return e
}

func (p *provisioner) Kconfig(c webui.Credentials) (string, error) {
	return KconfigFragment(p.enrollment(c))
}

func (p *provisioner) ATCommands(c webui.Credentials) (string, error) {
	e := p.enrollment(c)
	if c.Mode == store.ModeNoSec {
		// Nothing goes into the modem; say so instead of failing the
		// wizard (NoSec devices only need the server URI).
		return "# NoSec mode: no credentials to write into the modem.\r\n# The device connects to " + e.ServerURI() + " without DTLS.\r\n", nil
	}
	return ModemCommands(e)
}

func (p *provisioner) Bundle(c webui.Credentials, w io.Writer) error {
	b, err := EnrollmentBundle(p.enrollment(c))
	if err != nil {
		return err
	}
	_, err = bytes.NewReader(b).WriteTo(w)
	return err
}

// pemBody returns the DER inside the first PEM block of s (nil if none):
// devices without PEM support take DER files (ZEPHYR.md).
func pemBody(s string) []byte {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil
	}
	return b.Bytes
}

// advertisedHost is the name devices are told to reach the appliance at:
// the configured CoAP listen host when it is a specific address, else the
// first non-loopback IPv4 address, else the host name.
func advertisedHost(listen string) string {
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			return h
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
