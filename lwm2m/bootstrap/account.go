package bootstrap

import (
	"fmt"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// SecurityMode is Security object resource 2 (Core Appendix E.1).
type SecurityMode int64

// Security modes.
const (
	ModePSK         SecurityMode = 0
	ModeRPK         SecurityMode = 1
	ModeCertificate SecurityMode = 2
	ModeNoSec       SecurityMode = 3
)

// DefaultShortServerID is the Short Server ID the appliance's LwM2M server
// account uses (Zephyr's default, /0/0/10 and /1/0/0).
const DefaultShortServerID = 101

// Account is one LwM2M server account: a Security object instance and its
// Server object instance (Core Appendix E.1, E.2).
type Account struct {
	// ServerURI is /0/x/0, e.g. "coaps://gw.local:5684".
	ServerURI string
	// Mode is /0/x/2.
	Mode SecurityMode
	// Identity is /0/x/3: the PSK identity, or the client certificate (DER).
	Identity []byte
	// ServerPublicKey is /0/x/4: the server or CA certificate (DER).
	ServerPublicKey []byte
	// SecretKey is /0/x/5: the PSK, or the client private key (DER).
	SecretKey []byte
	// ShortServerID is /0/x/10 and /1/y/0.
	ShortServerID uint16
	// Lifetime is /1/y/1.
	Lifetime time.Duration
	// Binding is /1/y/7 ("U", "UQ").
	Binding string
	// NotificationStoring is /1/y/6.
	NotificationStoring bool
}

func (a *Account) normalise() error {
	if a.ServerURI == "" {
		return fmt.Errorf("%w: account without a server URI", ErrRefused)
	}
	if a.ShortServerID == 0 {
		a.ShortServerID = DefaultShortServerID
	}
	if a.Lifetime <= 0 {
		a.Lifetime = 86400 * time.Second // Core Appendix E.2 default
	}
	if a.Binding == "" {
		a.Binding = "U"
	}
	return nil
}

// securityRecords is the Security instance inst of the account.
func (a *Account) securityRecords(inst uint16) []lwm2m.Record {
	p := func(res uint16) lwm2m.Path { return lwm2m.NewPath(0, inst, res) }
	return []lwm2m.Record{
		{Path: p(0), Value: lwm2m.String(a.ServerURI)},
		{Path: p(1), Value: lwm2m.Bool(false)},
		{Path: p(2), Value: lwm2m.Int(int64(a.Mode))},
		{Path: p(3), Value: lwm2m.Opaque(a.Identity)},
		{Path: p(4), Value: lwm2m.Opaque(a.ServerPublicKey)},
		{Path: p(5), Value: lwm2m.Opaque(a.SecretKey)},
		{Path: p(10), Value: lwm2m.Int(int64(a.ShortServerID))},
	}
}

// serverRecords is the Server instance inst of the account.
func (a *Account) serverRecords(inst uint16) []lwm2m.Record {
	p := func(res uint16) lwm2m.Path { return lwm2m.NewPath(1, inst, res) }
	return []lwm2m.Record{
		{Path: p(0), Value: lwm2m.Int(int64(a.ShortServerID))},
		{Path: p(1), Value: lwm2m.Int(int64(a.Lifetime / time.Second))},
		{Path: p(6), Value: lwm2m.Bool(a.NotificationStoring)},
		{Path: p(7), Value: lwm2m.String(a.Binding)},
	}
}
