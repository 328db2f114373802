package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --help is not an error: it says what the tool is and exits 0.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{arg}, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if s := out.String(); !strings.Contains(s, "simulated LwM2M devices") || !strings.Contains(s, "--bundle") {
			t.Fatalf("%s says:\n%s", arg, s)
		}
	}
}

// The coaps:// hint matches the wizard: identity = endpoint name.
func TestCoapsHintMatchesWizard(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--server", "coaps://127.0.0.1:5684"}, &out)
	if !errors.Is(err, errUsage) || !strings.Contains(out.String(), "identity is the endpoint name") || !strings.Contains(out.String(), "--bundle") {
		t.Fatalf("%v: %s", err, out.String())
	}
}

func writeZip(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, c := range files {
		w, _ := zw.Create(n)
		w.Write([]byte(c))
	}
	zw.Close()
	p := filepath.Join(t.TempDir(), "bundle.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBundleAndCertFlags(t *testing.T) {
	psk := writeZip(t, map[string]string{"dev/device.json": `{"endpoint":"urn:imei:1","mode":"psk","serverUri":"coaps://127.0.0.1:5684","pskIdentity":"urn:imei:1","pskKey":"000102030405060708090a0b0c0d0e0f"}`})
	o, err := parseArgs([]string{"--bundle", psk}, &bytes.Buffer{})
	if err != nil || o.fleet.Server != "coaps://127.0.0.1:5684" || len(o.fleet.Endpoints) != 1 || o.fleet.Endpoints[0] != "urn:imei:1" || o.creds.PSKIdentity != "urn:imei:1" || len(o.creds.PSK) != 16 {
		t.Fatalf("psk bundle: %+v %v", o, err)
	}
	// --server overrides the bundle's address.
	if o, err := parseArgs([]string{"--bundle", psk, "--server", "coaps://127.0.0.2:5684"}, &bytes.Buffer{}); err != nil || o.fleet.Server != "coaps://127.0.0.2:5684" {
		t.Fatalf("--server with --bundle: %v %v", o.fleet.Server, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", filepath.Join(t.TempDir(), "none.zip")}, "no such file"},
		{[]string{"--bundle", writeZip(t, map[string]string{"README.txt": "x"})}, "no device.json"},
		{[]string{"--bundle", writeZip(t, map[string]string{"d/device.json": `{"endpoint":"e","mode":"x509","serverUri":"coaps://127.0.0.1:1"}`})}, "client.pem"},
		{[]string{"--bundle", writeZip(t, map[string]string{"d/device.json": `{"endpoint":"e","mode":"psk","serverUri":"coaps://127.0.0.1:1","pskKey":"zz"}`})}, "not hex"},
		{[]string{"--bundle", psk, "--psk-key", "00"}, "leave out"},
		{[]string{"--cert", "c.pem", "--server", "coaps://127.0.0.1:5684"}, "go together"},
		{[]string{"--cert", "c.pem", "--key", "k.pem", "--ca", "ca.pem", "--server", "coaps://127.0.0.1:5684"}, "--cert"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), c.args, &out)
		if !errors.Is(err, errUsage) || !strings.Contains(out.String(), c.want) {
			t.Errorf("%q: %v, %q; want a usage error mentioning %q", c.args, err, out.String(), c.want)
		}
	}
}
