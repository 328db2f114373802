package simulation

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

// Credentials are what a simulated device presents in the DTLS handshake:
// a PSK (identity: PSKIdentity, else PSKPrefix + endpoint name) or a
// certificate with its key and the CA that signed the server's
// certificate.
type Credentials struct {
	PSKIdentity string
	PSKPrefix   string
	PSK         []byte
	CertPEM     []byte
	KeyPEM      []byte
	CAPEM       []byte
	// HandshakeTimeout bounds one handshake (default 10 s): a server that
	// drops a wrong key silently is reported as a timeout.
	HandshakeTimeout time.Duration
}

// Bundle is one device as the appliance's enrollment wizard hands it out
// in its zip bundle (device.json, and client.pem, client-key.pem, ca.pem
// in certificate mode).
type Bundle struct {
	Endpoint  string
	Mode      string // psk, x509, nosec or bootstrap
	ServerURI string
	Credentials
}

// bundleJSON is device.json.
type bundleJSON struct {
	Endpoint    string `json:"endpoint"`
	Mode        string `json:"mode"`
	ServerURI   string `json:"serverUri"`
	PSKIdentity string `json:"pskIdentity"`
	PSKKey      string `json:"pskKey"`
}

// MaxBundle bounds a bundle and each of its files.
const MaxBundle = 1 << 20

// ErrBundle: a file is not a usable enrollment bundle.
var ErrBundle = errors.New("not a usable enrollment bundle")

// ReadBundle reads the wizard's zip bundle.
func ReadBundle(r io.Reader) (Bundle, error) {
	var b Bundle
	raw, err := io.ReadAll(io.LimitReader(r, MaxBundle+1))
	if err != nil {
		return b, err
	}
	if len(raw) > MaxBundle {
		return b, fmt.Errorf("%w: larger than %d bytes", ErrBundle, MaxBundle)
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return b, fmt.Errorf("%w: not a zip archive: %v", ErrBundle, err)
	}
	files := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			return b, fmt.Errorf("%w: %s: %v", ErrBundle, zf.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, MaxBundle))
		rc.Close()
		if err != nil {
			return b, fmt.Errorf("%w: %s: %v", ErrBundle, zf.Name, err)
		}
		files[path.Base(zf.Name)] = data
	}
	dj, ok := files["device.json"]
	if !ok {
		return b, fmt.Errorf("%w: no device.json (download the bundle again from the enrollment wizard)", ErrBundle)
	}
	var j bundleJSON
	if err := json.Unmarshal(dj, &j); err != nil {
		return b, fmt.Errorf("%w: device.json: %v", ErrBundle, err)
	}
	if j.Endpoint == "" || j.ServerURI == "" {
		return b, fmt.Errorf("%w: device.json names no endpoint or server", ErrBundle)
	}
	b.Endpoint, b.Mode, b.ServerURI, b.PSKIdentity = j.Endpoint, j.Mode, j.ServerURI, j.PSKIdentity
	switch j.Mode {
	case "psk", "bootstrap":
		if b.PSK, err = hex.DecodeString(j.PSKKey); err != nil || len(b.PSK) == 0 {
			return b, fmt.Errorf("%w: device.json: pskKey is not hex", ErrBundle)
		}
	case "x509":
		b.CertPEM, b.KeyPEM, b.CAPEM = files["client.pem"], files["client-key.pem"], files["ca.pem"]
		if b.CertPEM == nil || b.KeyPEM == nil || b.CAPEM == nil {
			return b, fmt.Errorf("%w: a certificate bundle needs client.pem, client-key.pem and ca.pem", ErrBundle)
		}
	case "nosec":
	default:
		return b, fmt.Errorf("%w: mode %q", ErrBundle, j.Mode)
	}
	return b, nil
}

// DTLSDialer returns a DialFunc that opens each device's DTLS session to
// the coaps:// server with creds. A failed handshake is logged once per
// device and reason, with a hint at what to check: a device that cannot
// connect says why instead of staying silently unregistered.
func DTLSDialer(server string, creds Credentials, log *slog.Logger) (DialFunc, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || u.Scheme != "coaps" {
		return nil, fmt.Errorf("server %q is not coaps://host:port", server)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = strconv.Itoa(5684)
	}
	dial, err := dtlsDialer(host, creds, log)
	if err != nil {
		return nil, err
	}
	hostport := net.JoinHostPort(host, port)
	return func(ctx context.Context, endpoint, _ string) (coap.Transport, coap.Peer, error) {
		return dial(ctx, endpoint, hostport)
	}, nil
}

// DTLSDialerTo dials the host:port it is given with a device's
// credentials: a coaps:// firmware download opens a session of its own, as
// Zephyr's pull client does.
func DTLSDialerTo(creds Credentials, log *slog.Logger) (func(ctx context.Context, endpoint, hostport string) (coap.Transport, coap.Peer, error), error) {
	return dtlsDialer("", creds, log)
}

// dtlsDialer makes the dial function both use; host names the server a
// certificate must match ("" takes it from the address dialled).
func dtlsDialer(host string, creds Credentials, log *slog.Logger) (func(ctx context.Context, endpoint, hostport string) (coap.Transport, coap.Peer, error), error) {
	base := dtls.ClientConfig{HandshakeTimeout: creds.HandshakeTimeout}
	if base.HandshakeTimeout <= 0 {
		base.HandshakeTimeout = 10 * time.Second
	}
	switch {
	case creds.CertPEM != nil:
		pair, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("certificate and key: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(creds.CAPEM) {
			return nil, errors.New("the CA file holds no PEM certificate")
		}
		base.Certificate, base.RootCAs, base.ServerName = &pair, roots, host
	case creds.PSK != nil:
	default:
		return nil, errors.New("a coaps:// server needs a PSK or a certificate")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var mu sync.Mutex
	last := map[string]string{}
	return func(ctx context.Context, endpoint, hostport string) (coap.Transport, coap.Peer, error) {
		cfg := base
		if cfg.Certificate != nil && cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(hostport)
		}
		if creds.PSK != nil {
			cfg.PSK, cfg.PSKIdentity = creds.PSK, creds.PSKPrefix+endpoint
			if creds.PSKIdentity != "" {
				cfg.PSKIdentity = creds.PSKIdentity
			}
		}
		c, err := dtls.Dial(ctx, hostport, cfg)
		if err != nil {
			if ctx.Err() == nil {
				mu.Lock()
				repeat := last[endpoint] == err.Error()
				last[endpoint] = err.Error()
				mu.Unlock()
				if !repeat {
					log.Warn("DTLS handshake failed", "endpoint", endpoint, "server", hostport, "identity", cfg.PSKIdentity, "err", err, "hint", handshakeHint(cfg))
				}
			}
			return nil, coap.Peer{}, err
		}
		return c, c.Peer(), nil
	}, nil
}

func handshakeHint(cfg dtls.ClientConfig) string {
	if cfg.Certificate != nil {
		return "check that the device is enrolled with this certificate (not revoked or re-keyed) and that the CA is this appliance's"
	}
	return "check the PSK key and identity: the wizard provisions identity = endpoint name (no --psk-identity-prefix); the device must be enrolled in psk mode, not revoked or re-keyed"
}
