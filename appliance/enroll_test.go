package appliance

import (
	"archive/zip"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/store"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/enroll")

// goldenCert is a fixed stand-in for an issued certificate so the golden
// files stay stable; the enrollment code copies these bytes, it does not
// parse them.
func goldenCert() *DeviceCertificate {
	return &DeviceCertificate{
		Endpoint: "urn:imei:350457790000002",
		Serial:   "5a3c",
		NotAfter: time.Date(2036, 11, 24, 0, 0, 0, 0, time.UTC),
		CertPEM:  []byte("-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n"),
		CertDER:  []byte("CERT"),
		KeyPEM:   []byte("-----BEGIN EC PRIVATE KEY-----\nS0VZ\n-----END EC PRIVATE KEY-----\n"),
		KeyDER:   []byte("KEY"),
		CAPEM:    []byte("-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"),
		CADER:    []byte("CA"),
	}
}

func goldenEnrollments() map[string]Enrollment {
	key := []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}
	return map[string]Enrollment{
		"psk": {Endpoint: "urn:imei:350457790000001", Mode: store.ModePSK, Host: "flownexus.local",
			PSKIdentity: "urn:imei:350457790000001", PSK: key, QueueMode: true},
		"psk32": {Endpoint: "sensor-7", Mode: store.ModePSK, Host: "192.168.1.10", Lifetime: 3600 * time.Second,
			PSKIdentity: "sensor-7-id", PSK: bytes.Repeat([]byte{0xab}, 32)},
		"x509": {Endpoint: "urn:imei:350457790000002", Mode: store.ModeX509, Host: "flownexus.local",
			Certificate: goldenCert()},
		"bootstrap": {Endpoint: "urn:imei:350457790000003", Mode: store.ModeBootstrap, Host: "fd00::1",
			PSKIdentity: "factory-3", PSK: key},
		"nosec": {Endpoint: "lab-1", Mode: store.ModeNoSec, Host: "10.0.0.2"},
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "enroll", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestEnrollmentGolden(t *testing.T) {
	for name, e := range goldenEnrollments() {
		t.Run(name, func(t *testing.T) {
			kc, err := KconfigFragment(e)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+".conf", []byte(kc))
			at, err := ModemCommands(e)
			if e.Mode == store.ModeNoSec {
				if !errors.Is(err, ErrEnrollment) {
					t.Fatalf("nosec modem commands: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, name+".at", []byte(at))
			}
			rd, err := EnrollmentReadme(e)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+".readme", []byte(rd))
		})
	}
}

func TestEnrollmentKconfigFacts(t *testing.T) {
	e := goldenEnrollments()
	x, _ := KconfigFragment(e["x509"])
	for _, want := range []string{"CONFIG_LWM2M_DTLS_SUPPORT=y", `CONFIG_LWM2M_APP_SERVER="coaps://flownexus.local:5684"`,
		"CONFIG_LWM2M_SECURITY_KEY_SIZE=2048", "CONFIG_MBEDTLS_PEM_CERTIFICATE_FORMAT=y", "Zephyr 3.7", "NCS 2.6"} {
		if !strings.Contains(x, want) {
			t.Errorf("x509 fragment lacks %s", want)
		}
	}
	b, _ := KconfigFragment(e["bootstrap"])
	for _, want := range []string{"CONFIG_LWM2M_RD_CLIENT_SUPPORT_BOOTSTRAP=y", `"coaps://[fd00::1]:5784"`} {
		if !strings.Contains(b, want) {
			t.Errorf("bootstrap fragment lacks %s", want)
		}
	}
	p, _ := KconfigFragment(e["psk"])
	if strings.Contains(p, "KEY_SIZE") || !strings.Contains(p, `CONFIG_LWM2M_APP_PSK="000102030405060708090a0b0c0d0e0f"`) {
		t.Errorf("16-byte PSK fragment:\n%s", p)
	}
	at, _ := ModemCommands(e["bootstrap"])
	if !strings.Contains(at, "AT%CMNG=0,35724862,4,\"factory-3\"") {
		t.Errorf("bootstrap AT commands use the wrong tag:\n%s", at)
	}
}

func TestEnrollmentBundle(t *testing.T) {
	e := goldenEnrollments()["x509"]
	z, err := EnrollmentBundle(e)
	if err != nil {
		t.Fatal(err)
	}
	z2, _ := EnrollmentBundle(e)
	if !bytes.Equal(z, z2) {
		t.Fatal("bundle not reproducible")
	}
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		got[f.Name] = b
	}
	kc, _ := KconfigFragment(e)
	at, _ := ModemCommands(e)
	c := e.Certificate
	want := map[string][]byte{
		"zephyr.conf": []byte(kc), "modem-credentials.txt": []byte(at),
		"ca.pem": c.CAPEM, "ca.der": c.CADER, "client.pem": c.CertPEM, "client.der": c.CertDER,
		"client-key.pem": c.KeyPEM, "client-key.der": c.KeyDER,
	}
	for name, data := range want {
		if g, ok := got["urn_imei_350457790000002/"+name]; !ok || !bytes.Equal(g, data) {
			t.Errorf("%s: %q", name, g)
		}
	}
	if _, ok := got["urn_imei_350457790000002/README.txt"]; !ok {
		t.Error("no README")
	}
}

func TestEnrollmentRefusals(t *testing.T) {
	base := goldenEnrollments()["psk"]
	cases := map[string]func(e *Enrollment){
		"no endpoint":      func(e *Enrollment) { e.Endpoint = "" },
		"quote in name":    func(e *Enrollment) { e.Endpoint = `a"b` },
		"no host":          func(e *Enrollment) { e.Host = "" },
		"no key":           func(e *Enrollment) { e.PSK = nil },
		"unknown mode":     func(e *Enrollment) { e.Mode = "oscore" },
		"x509 without key": func(e *Enrollment) { e.Mode = store.ModeX509 },
		"quote in id":      func(e *Enrollment) { e.PSKIdentity = `x"` },
	}
	for name, mut := range cases {
		e := base
		mut(&e)
		if _, err := EnrollmentBundle(e); !errors.Is(err, ErrEnrollment) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
