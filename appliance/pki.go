package appliance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// PKI errors.
var (
	// ErrPKI wraps failures to create, read or write the CA material.
	ErrPKI = errors.New("pki")
	// ErrBadCA is returned when an imported CA certificate is unusable.
	ErrBadCA = errors.New("pki: not a usable CA certificate")
	// ErrBadEndpointName is returned for an endpoint name that cannot be a
	// certificate subject.
	ErrBadEndpointName = lwm2m.ErrBadEndpointName
)

// Files under the PKI directory. Keys and certificates are 0600, the
// directories 0700: the CA key can mint device identities.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca.key"
	serverCertFile = "server.pem"
	serverKeyFile  = "server.key"
	importedDir    = "imported"
)

// PKIConfig configures the appliance's certificate authority.
type PKIConfig struct {
	// Dir holds the CA and server keys (Config.PKIDir()).
	Dir string
	// Names are extra DNS names or IP addresses the server certificate
	// must carry, besides the host name, localhost and interface addresses.
	Names []string
	// CAValidity, ServerValidity and DeviceValidity are certificate
	// lifetimes. Device certificates live long by default: many devices
	// have no reliable clock and re-enrolling a fleet is costly.
	CAValidity     time.Duration
	ServerValidity time.Duration
	DeviceValidity time.Duration
	// Now is the clock (tests).
	Now func() time.Time
	// Hostname and InterfaceAddrs default to the host's (tests override).
	Hostname       func() (string, error)
	InterfaceAddrs func() ([]net.Addr, error)
}

// DefaultPKIConfig returns the lifetimes the appliance uses.
func DefaultPKIConfig(dir string) PKIConfig {
	return PKIConfig{
		Dir:            dir,
		CAValidity:     10 * 365 * 24 * time.Hour,
		ServerValidity: 2 * 365 * 24 * time.Hour,
		DeviceValidity: 10 * 365 * 24 * time.Hour,
	}
}

// PKI is the appliance's own certificate authority: it signs the server
// certificate of the CoAPS, bootstrap and HTTPS listeners and the device
// certificates, and it holds the foreign CAs imported for device
// certificates.
type PKI struct {
	cfg PKIConfig

	mu       sync.RWMutex
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	server   tls.Certificate
	imported []*x509.Certificate
}

// DeviceCertificate is what issuing a device certificate returns, once:
// the appliance keeps only the certificate (the key is never stored).
type DeviceCertificate struct {
	Endpoint string
	Serial   string // lowercase hex, as stored in store.Credential.CertSerial
	NotAfter time.Time
	CertPEM  []byte
	CertDER  []byte
	KeyPEM   []byte // SEC 1 "EC PRIVATE KEY", what mbedTLS and nRF modems read
	KeyDER   []byte
	CAPEM    []byte
	CADER    []byte
}

// OpenPKI loads the CA and server certificate from cfg.Dir, creating them on
// first start, and renews the server certificate when it nears expiry or
// lacks one of the host's current names.
func OpenPKI(cfg PKIConfig) (*PKI, error) {
	d := DefaultPKIConfig(cfg.Dir)
	if cfg.CAValidity <= 0 {
		cfg.CAValidity = d.CAValidity
	}
	if cfg.ServerValidity <= 0 {
		cfg.ServerValidity = d.ServerValidity
	}
	if cfg.DeviceValidity <= 0 {
		cfg.DeviceValidity = d.DeviceValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hostname == nil {
		cfg.Hostname = os.Hostname
	}
	if cfg.InterfaceAddrs == nil {
		cfg.InterfaceAddrs = net.InterfaceAddrs
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: no directory", ErrPKI)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, importedDir), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	p := &PKI{cfg: cfg}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateServer(); err != nil {
		return nil, err
	}
	if err := p.loadImported(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PKI) path(name string) string { return filepath.Join(p.cfg.Dir, name) }

func (p *PKI) loadOrCreateCA() error {
	cert, key, err := readPair(p.path(caCertFile), p.path(caKeyFile))
	if err == nil {
		p.ca, p.caKey = cert, key
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("%w: CA key: %w", ErrPKI, err)
	}
	now := p.cfg.Now()
	host, _ := p.cfg.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "FlowNexus CA " + host, Organization: []string{"FlowNexus"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(p.cfg.CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("%w: CA certificate: %w", ErrPKI, err)
	}
	cert, _ = x509.ParseCertificate(der)
	if err := writePair(p.path(caCertFile), p.path(caKeyFile), der, key); err != nil {
		return err
	}
	p.ca, p.caKey = cert, key
	return nil
}

// serverNames lists what the server certificate must name: the host name
// (and its .local mDNS form), localhost, every interface address and the
// configured names.
func (p *PKI) serverNames() (dns []string, ips []net.IP) {
	add := func(n string) {
		n = strings.TrimSpace(n)
		if n == "" {
			return
		}
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			return
		}
		n = strings.ToLower(n)
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	if h, err := p.cfg.Hostname(); err == nil && h != "" {
		add(h)
		if !strings.Contains(h, ".") {
			add(h + ".local")
		}
	}
	add("localhost")
	add("127.0.0.1")
	add("::1")
	if addrs, err := p.cfg.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
				add(ipn.IP.String())
			}
		}
	}
	for _, n := range p.cfg.Names {
		add(n)
	}
	return dns, ips
}

func (p *PKI) loadOrCreateServer() error {
	dns, ips := p.serverNames()
	cert, key, err := readPair(p.path(serverCertFile), p.path(serverKeyFile))
	if err == nil && p.serverStillGood(cert, dns, ips) {
		p.server = tls.Certificate{Certificate: [][]byte{cert.Raw, p.ca.Raw}, PrivateKey: key, Leaf: cert}
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return p.issueServer(dns, ips)
}

// serverStillGood: signed by the current CA, more than 30 days left, and
// naming everything it must.
func (p *PKI) serverStillGood(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	if cert.CheckSignatureFrom(p.ca) != nil || p.cfg.Now().Add(30*24*time.Hour).After(cert.NotAfter) {
		return false
	}
	for _, n := range dns {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (p *PKI) issueServer(dns []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("%w: server key: %w", ErrPKI, err)
	}
	now := p.cfg.Now()
	cn := "flownexus"
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"FlowNexus"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     minTime(now.Add(p.cfg.ServerValidity), p.ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return fmt.Errorf("%w: server certificate: %w", ErrPKI, err)
	}
	if err := writePair(p.path(serverCertFile), p.path(serverKeyFile), der, key); err != nil {
		return err
	}
	cert, _ := x509.ParseCertificate(der)
	p.server = tls.Certificate{Certificate: [][]byte{der, p.ca.Raw}, PrivateKey: key, Leaf: cert}
	return nil
}

// IssueDevice makes a device certificate with CN = endpoint, signed by the
// appliance CA. The key is returned here and nowhere else.
func (p *PKI) IssueDevice(endpoint string) (DeviceCertificate, error) {
	if err := checkEndpointName(endpoint); err != nil {
		return DeviceCertificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return DeviceCertificate{}, fmt.Errorf("%w: device key: %w", ErrPKI, err)
	}
	p.mu.RLock()
	ca, caKey := p.ca, p.caKey
	p.mu.RUnlock()
	now := p.cfg.Now()
	serial := newSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: endpoint},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     minTime(now.Add(p.cfg.DeviceValidity), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return DeviceCertificate{}, fmt.Errorf("%w: device certificate: %w", ErrPKI, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return DeviceCertificate{}, fmt.Errorf("%w: device key: %w", ErrPKI, err)
	}
	return DeviceCertificate{
		Endpoint: endpoint,
		Serial:   SerialString(serial),
		NotAfter: tmpl.NotAfter,
		CertDER:  der,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyDER:   keyDER,
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		CADER:    ca.Raw,
		CAPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
	}, nil
}

// checkEndpointName keeps names that are usable as a CN and in a Kconfig
// string: non-empty, printable, at most 64 bytes (X.520 ub-common-name).
func checkEndpointName(ep string) error { return lwm2m.CheckEndpointName(ep) }

// SerialString formats a certificate serial as store.Credential.CertSerial
// holds it.
func SerialString(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ImportCA adds a foreign CA whose certificates devices may present. It is
// kept under <pki>/imported/<sha256>.pem.
func (p *PKI) ImportCA(pemBytes []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	var der []byte
	if block != nil && block.Type == "CERTIFICATE" {
		der = block.Bytes
	} else {
		der = pemBytes // accept DER too
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCA, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%w: %q is not a CA (basic constraints)", ErrBadCA, cert.Subject.CommonName)
	}
	if now := p.cfg.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: %q expired on %s", ErrBadCA, cert.Subject.CommonName, cert.NotAfter.Format(time.DateOnly))
	}
	sum := sha256.Sum256(cert.Raw)
	name := filepath.Join(p.cfg.Dir, importedDir, hex.EncodeToString(sum[:])+".pem")
	if err := writeFile0600(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.imported, cert.Equal) {
		p.imported = append(p.imported, cert)
	}
	return cert, nil
}

// RemoveImportedCA forgets an imported CA by its SHA-256 fingerprint (hex).
func (p *PKI) RemoveImportedCA(fingerprint string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.imported {
		sum := sha256.Sum256(c.Raw)
		if hex.EncodeToString(sum[:]) == strings.ToLower(fingerprint) {
			if err := os.Remove(filepath.Join(p.cfg.Dir, importedDir, fingerprint+".pem")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w: %w", ErrPKI, err)
			}
			p.imported = slices.Delete(p.imported, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("%w: no imported CA %s", ErrBadCA, fingerprint)
}

func (p *PKI) loadImported() error {
	entries, err := os.ReadDir(filepath.Join(p.cfg.Dir, importedDir))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.cfg.Dir, importedDir, e.Name()))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPKI, err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			return fmt.Errorf("%w: %s is not PEM", ErrPKI, e.Name())
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPKI, e.Name(), err)
		}
		p.imported = append(p.imported, c)
	}
	return nil
}

// ImportedCAs lists the imported CA certificates.
func (p *PKI) ImportedCAs() []*x509.Certificate {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.imported)
}

// IsOwnCertificate reports whether cert was signed by the appliance CA.
func (p *PKI) IsOwnCertificate(cert *x509.Certificate) bool {
	return cert.CheckSignatureFrom(p.ca) == nil
}

// ClientCAs is the pool device certificates must chain to: the appliance CA
// and every imported CA.
func (p *PKI) ClientCAs() *x509.CertPool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	for _, c := range p.imported {
		pool.AddCert(c)
	}
	return pool
}

// CACertificate returns the appliance CA certificate.
func (p *PKI) CACertificate() *x509.Certificate { return p.ca }

// CACertPEM exports the CA certificate in PEM.
func (p *PKI) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw})
}

// CACertDER exports the CA certificate in DER.
func (p *PKI) CACertDER() []byte { return slices.Clone(p.ca.Raw) }

// ServerCertificate is the chain and key of the appliance's listeners.
func (p *PKI) ServerCertificate() *tls.Certificate {
	p.mu.RLock()
	defer p.mu.RUnlock()
	c := p.server
	return &c
}

// ServerCertPEM exports the server certificate (what devices in
// certificate mode may pin as /0/x/4 instead of the CA).
func (p *PKI) ServerCertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ServerCertificate().Certificate[0]})
}

func newSerial() *big.Int {
	// 127 random bits: positive, unique, unguessable (RFC 5280 §4.1.2.2
	// allows up to 20 octets).
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil || n.Sign() == 0 {
		n = big.NewInt(time.Now().UnixNano())
	}
	return n
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func readPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("%w: %s or %s is not PEM", ErrPKI, certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrPKI, certPath, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrPKI, keyPath, err)
	}
	return cert, key, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if err := writeFile0600(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	return writeFile0600(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeFile0600 replaces a file atomically (write, sync, rename) so a crash
// never leaves half a key.
func writeFile0600(name string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("%w: %w", ErrPKI, err)
	}
	return nil
}
