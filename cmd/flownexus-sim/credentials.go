package main

import (
	"fmt"
	"os"

	"github.com/flownexus/flownexus/simulation"
)

// applyBundle sets what --bundle holds: one device with its name, the
// server URI and its credentials. --server given as well wins (to reach
// the appliance by another address).
func applyBundle(o *options, file string, serverSet bool) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := simulation.ReadBundle(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if b.Mode == "bootstrap" {
		return fmt.Errorf("%s: a bootstrap bundle: the simulator takes psk, x509 and nosec bundles", file)
	}
	o.fleet.Endpoints = []string{b.Endpoint}
	o.fleet.Devices = 1
	if !serverSet {
		o.fleet.Server = b.ServerURI
	}
	o.creds = b.Credentials
	return nil
}

// loadCertFiles reads --cert, --key and --ca.
func loadCertFiles(o *options, cert, key, ca string) error {
	files := []struct {
		name, file string
		dst        *[]byte
	}{{"--cert", cert, &o.creds.CertPEM}, {"--key", key, &o.creds.KeyPEM}, {"--ca", ca, &o.creds.CAPEM}}
	for _, f := range files {
		if f.file == "" {
			return fmt.Errorf("--cert, --key and --ca go together; %s is missing", f.name)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f.file)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = b
	}
	return nil
}
