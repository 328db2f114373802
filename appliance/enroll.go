package appliance

import (
	"archive/zip"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/store"
)

// ErrEnrollment is returned for an Enrollment that cannot produce output.
var ErrEnrollment = errors.New("enrollment")

// nRF91 modem security tags the nRF Connect SDK LwM2M client uses: one for
// the LwM2M server, one for the bootstrap server.
const (
	SecTagServer    = 35724861
	SecTagBootstrap = 35724862
)

// Ports of the appliance's device-facing listeners
// (OMA-TS-LightweightM2M-Transport 1.1 §5.1: 5683/5684; the bootstrap ports
// follow Zephyr's sample, 5783/5784).
const (
	PortCoAP           = 5683
	PortCoAPS          = 5684
	PortBootstrap      = 5783
	PortBootstrapCoAPS = 5784
)

// Enrollment is everything a device needs to reach the appliance. Build it
// right after provisioning: the PSK and the certificate key are only known
// then.
type Enrollment struct {
	Endpoint string
	// Mode is store.ModePSK, store.ModeX509, store.ModeBootstrap (factory
	// bootstrap PSK; the operational credentials come from the bootstrap
	// server) or store.ModeNoSec.
	Mode string
	// Host is the appliance's name or address as devices reach it.
	Host string
	// Port overrides the listener port of the mode (5684, 5784, 5683).
	Port int
	// PSKIdentity and PSK are the device's key (psk), or its factory
	// bootstrap key (bootstrap).
	PSKIdentity string
	PSK         []byte
	// Certificate is the device certificate and key (x509).
	Certificate *DeviceCertificate
	// Lifetime is the registration lifetime; zero means 600 s.
	Lifetime time.Duration
	// QueueMode enables queue mode with QueueUptime seconds of listening
	// after each uplink (zero means 20 s).
	QueueMode   bool
	QueueUptime time.Duration
}

func (e *Enrollment) check() error {
	if err := checkEndpointName(e.Endpoint); err != nil {
		return fmt.Errorf("%w: %w", ErrEnrollment, err)
	}
	if e.Host == "" || strings.ContainsAny(e.Host, "\"\\ /") {
		return fmt.Errorf("%w: bad host %q", ErrEnrollment, e.Host)
	}
	switch e.Mode {
	case store.ModePSK, store.ModeBootstrap:
		if e.PSKIdentity == "" || len(e.PSK) == 0 {
			return fmt.Errorf("%w: %s mode needs a PSK identity and key", ErrEnrollment, e.Mode)
		}
		if strings.ContainsAny(e.PSKIdentity, "\"\\") {
			return fmt.Errorf("%w: PSK identity %q has quotes or backslashes", ErrEnrollment, e.PSKIdentity)
		}
	case store.ModeX509:
		if e.Certificate == nil || len(e.Certificate.CertPEM) == 0 || len(e.Certificate.KeyPEM) == 0 {
			return fmt.Errorf("%w: x509 mode needs the device certificate and key", ErrEnrollment)
		}
	case store.ModeNoSec:
	default:
		return fmt.Errorf("%w: unknown mode %q", ErrEnrollment, e.Mode)
	}
	return nil
}

// ServerURI is the URI the device is given: the LwM2M server's, or the
// bootstrap server's in bootstrap mode.
func (e *Enrollment) ServerURI() string {
	scheme, port := "coaps", PortCoAPS
	switch e.Mode {
	case store.ModeNoSec:
		scheme, port = "coap", PortCoAP
	case store.ModeBootstrap:
		port = PortBootstrapCoAPS
	}
	if e.Port != 0 {
		port = e.Port
	}
	return scheme + "://" + net.JoinHostPort(e.Host, strconv.Itoa(port))
}

func (e *Enrollment) lifetimeSeconds() int {
	if e.Lifetime <= 0 {
		return 600
	}
	return int(e.Lifetime / time.Second)
}

func (e *Enrollment) queueUptimeSeconds() int {
	if e.QueueUptime <= 0 {
		return 20
	}
	return int(e.QueueUptime / time.Second)
}

// KconfigFragment returns the prj.conf fragment for Zephyr's LwM2M client
// sample (samples/net/lwm2m_client) on Zephyr 3.7 / NCS 2.6.
func KconfigFragment(e Enrollment) (string, error) {
	if err := e.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# FlowNexus enrollment for endpoint %q (%s mode)", e.Endpoint, e.Mode)
	w("# Target: Zephyr 3.7 / NCS 2.6 (nRF Connect SDK), Zephyr's LwM2M client sample; option names differ in other versions.")
	w("CONFIG_LWM2M=y")
	w("CONFIG_LWM2M_VERSION_1_1=y")
	w("CONFIG_LWM2M_APP_SERVER=%q", e.ServerURI())
	w("CONFIG_LWM2M_APP_ID=%q", e.Endpoint)
	w("CONFIG_LWM2M_ENGINE_DEFAULT_LIFETIME=%d", e.lifetimeSeconds())
	switch e.Mode {
	case store.ModeNoSec:
		w("# No security: the appliance accepts this device over plain CoAP only.")
		w("CONFIG_LWM2M_DTLS_SUPPORT=n")
	case store.ModePSK, store.ModeBootstrap:
		w("CONFIG_LWM2M_DTLS_SUPPORT=y")
		w("# TLS_PSK_WITH_AES_128_CCM_8 (as in the sample's overlay-dtls.conf)")
		if e.PSKIdentity != e.Endpoint {
			w("# The PSK identity differs from the endpoint name; set it in the Security object (/0/0/3).")
			w("# PSK identity: %s", e.PSKIdentity)
		}
		w("CONFIG_LWM2M_APP_PSK=%q", hex.EncodeToString(e.PSK))
		if len(e.PSK) > 16 {
			w("CONFIG_LWM2M_SECURITY_KEY_SIZE=%d", max(64, len(e.PSK)))
		}
	case store.ModeX509:
		w("CONFIG_LWM2M_DTLS_SUPPORT=y")
		w("# TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 on P-256 (as in the sample's overlay-dtls-cert.conf)")
		w("# Certificates and keys do not fit the default 16-byte credential buffers.")
		w("CONFIG_LWM2M_SECURITY_KEY_SIZE=2048")
		w("# The bundle has PEM and DER files; PEM needs this option, DER does not.")
		w("CONFIG_MBEDTLS_PEM_CERTIFICATE_FORMAT=y")
		w("# /0/0/3 = client.pem (or client.der), /0/0/5 = client-key.pem, /0/0/4 = ca.pem")
	}
	if e.Mode != store.ModeNoSec {
		w("# Keep the DTLS session across NAT rebinding (RFC 9146; nRF91 modem firmware >= 1.3.5).")
		w("CONFIG_LWM2M_DTLS_CID=y")
	}
	if e.Mode == store.ModeBootstrap {
		w("# Bootstrap: the device fetches its operational credentials from the appliance.")
		w("CONFIG_LWM2M_RD_CLIENT_SUPPORT_BOOTSTRAP=y")
	}
	if e.QueueMode {
		w("CONFIG_LWM2M_QUEUE_MODE_ENABLED=y")
		w("CONFIG_LWM2M_QUEUE_MODE_UPTIME=%d", e.queueUptimeSeconds())
		w("CONFIG_LWM2M_RD_CLIENT_STOP_POLLING_AT_IDLE=y")
	}
	w("# nRF Connect SDK (lwm2m_client_utils): the server URI goes here instead, and the")
	w("# credentials into the modem with the AT commands of modem-credentials.txt:")
	w("# CONFIG_LWM2M_CLIENT_UTILS_SERVER=%q", e.ServerURI())
	return b.String(), nil
}

// ModemCommands returns the nRF91 AT commands that store the device's
// credentials in the modem (nRF91 AT command reference, %CMNG): modem
// offline, delete the old entries of the security tag, write the new ones,
// modem online. Types: 0 CA certificate, 1 client certificate, 2 private
// key, 3 PSK (hex), 4 PSK identity.
func ModemCommands(e Enrollment) (string, error) {
	if err := e.check(); err != nil {
		return "", err
	}
	if e.Mode == store.ModeNoSec {
		return "", fmt.Errorf("%w: no credentials to store in NoSec mode", ErrEnrollment)
	}
	tag := SecTagServer
	if e.Mode == store.ModeBootstrap {
		tag = SecTagBootstrap
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("AT+CFUN=4")
	switch e.Mode {
	case store.ModePSK, store.ModeBootstrap:
		w("AT%%CMNG=3,%d,3", tag)
		w("AT%%CMNG=3,%d,4", tag)
		w("AT%%CMNG=0,%d,4,\"%s\"", tag, e.PSKIdentity)
		w("AT%%CMNG=0,%d,3,\"%s\"", tag, hex.EncodeToString(e.PSK))
	case store.ModeX509:
		for _, typ := range []int{0, 1, 2} {
			w("AT%%CMNG=3,%d,%d", tag, typ)
		}
		w("AT%%CMNG=0,%d,0,\"%s\"", tag, strings.TrimSpace(string(e.Certificate.CAPEM)))
		w("AT%%CMNG=0,%d,1,\"%s\"", tag, strings.TrimSpace(string(e.Certificate.CertPEM)))
		w("AT%%CMNG=0,%d,2,\"%s\"", tag, strings.TrimSpace(string(e.Certificate.KeyPEM)))
	}
	w("AT+CFUN=1")
	return b.String(), nil
}

// EnrollmentReadme is the bundle's README.txt.
func EnrollmentReadme(e Enrollment) (string, error) {
	if err := e.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("FlowNexus enrollment: %s", e.Endpoint)
	w("")
	w("Mode:       %s", e.Mode)
	w("Server URI: %s", e.ServerURI())
	if e.PSKIdentity != "" {
		w("PSK identity: %s", e.PSKIdentity)
		w("PSK (hex):    %s", hex.EncodeToString(e.PSK))
	}
	if e.Certificate != nil {
		w("Certificate serial: %s, valid until %s", e.Certificate.Serial, e.Certificate.NotAfter.UTC().Format(time.DateOnly))
	}
	w("")
	w("Files:")
	w("  zephyr.conf             Kconfig fragment for Zephyr 3.7 / NCS 2.6 (append to prj.conf)")
	if e.Mode != store.ModeNoSec {
		w("  modem-credentials.txt   nRF91 AT commands for security tag %d", map[bool]int{true: SecTagBootstrap, false: SecTagServer}[e.Mode == store.ModeBootstrap])
	}
	if e.Certificate != nil {
		w("  ca.pem, ca.der           the appliance CA (Security object /0/0/4)")
		w("  client.pem, client.der   the device certificate (/0/0/3)")
		w("  client-key.pem, client-key.der  the device private key (/0/0/5); keep it secret")
	}
	w("")
	switch e.Mode {
	case store.ModePSK, store.ModeBootstrap:
		w("This bundle holds secrets. FlowNexus keeps the PSK too (it checks the device's")
		w("handshakes with it) but shows it only in the enrollment wizard; a lost key is")
		w("replaced by re-keying the device (device page -> Credentials -> Re-key).")
	case store.ModeX509:
		w("This bundle holds secrets. FlowNexus keeps the device certificate, not its private")
		w("key: a lost key is replaced by re-keying the device (device page -> Credentials).")
	}
	w("")
	w("device.json holds the same for tools: flownexus-sim --bundle <this zip> connects as")
	w("this device.")
	return b.String(), nil
}

// EnrollmentBundle is the one download for a provisioned device: a zip of
// the README, the Kconfig fragment, the modem commands and, in certificate
// mode, the PEM and DER files.
func EnrollmentBundle(e Enrollment) ([]byte, error) {
	readme, err := EnrollmentReadme(e)
	if err != nil {
		return nil, err
	}
	kconf, err := KconfigFragment(e)
	if err != nil {
		return nil, err
	}
	dev, err := deviceJSON(e)
	if err != nil {
		return nil, err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"README.txt", []byte(readme)},
		{"zephyr.conf", []byte(kconf)},
		{"device.json", dev},
	}
	if e.Mode != store.ModeNoSec {
		at, err := ModemCommands(e)
		if err != nil {
			return nil, err
		}
		files = append(files, struct {
			name string
			data []byte
		}{"modem-credentials.txt", []byte(at)})
	}
	if c := e.Certificate; c != nil {
		for _, f := range []struct {
			name string
			data []byte
		}{
			{"ca.pem", c.CAPEM}, {"ca.der", c.CADER},
			{"client.pem", c.CertPEM}, {"client.der", c.CertDER},
			{"client-key.pem", c.KeyPEM}, {"client-key.der", c.KeyDER},
		} {
			files = append(files, f)
		}
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	dir := zipDirName(e.Endpoint)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: dir + "/" + f.name, Method: zip.Deflate}
		// A fixed time keeps bundles reproducible (golden tests).
		hdr.Modified = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		hdr.SetMode(0o600)
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("%w: zip: %w", ErrEnrollment, err)
		}
		if _, err := fw.Write(f.data); err != nil {
			return nil, fmt.Errorf("%w: zip: %w", ErrEnrollment, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("%w: zip: %w", ErrEnrollment, err)
	}
	return buf.Bytes(), nil
}

// deviceJSON is the bundle's device.json: the endpoint, its server and
// its PSK, for tools such as flownexus-sim --bundle (the certificate and
// key are the bundle's PEM files).
func deviceJSON(e Enrollment) ([]byte, error) {
	d := struct {
		Endpoint    string `json:"endpoint"`
		Mode        string `json:"mode"`
		ServerURI   string `json:"serverUri"`
		PSKIdentity string `json:"pskIdentity,omitempty"`
		PSKKey      string `json:"pskKey,omitempty"`
	}{Endpoint: e.Endpoint, Mode: e.Mode, ServerURI: e.ServerURI(), PSKIdentity: e.PSKIdentity}
	if len(e.PSK) > 0 {
		d.PSKKey = hex.EncodeToString(e.PSK)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: device.json: %w", ErrEnrollment, err)
	}
	return append(b, '\n'), nil
}

// zipDirName makes an endpoint name safe as a directory name
// ("urn:imei:1" → "urn_imei_1").
func zipDirName(ep string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '_'
	}, ep)
}
