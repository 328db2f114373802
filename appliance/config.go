package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// DefaultConfigFile is where the package installs the conffile; `serve` reads
// it when no --config is given and it exists.
const DefaultConfigFile = "/etc/flownexus/flownexus.toml"

// DefaultDataDir is the data dir when neither the config nor systemd's
// $STATE_DIRECTORY names one.
const DefaultDataDir = "/var/lib/flownexus"

// ErrConfig marks every configuration error: a file that does not parse, an
// unknown key or a value that fails validation.
var ErrConfig = errors.New("invalid configuration")

// Config is the whole appliance configuration. The TOML file
// /etc/flownexus/flownexus.toml holds it; settings changed at run time in the
// web UI live in the data dir and are not written back here.
type Config struct {
	// DataDir holds the database, the PKI, firmware images and update
	// packages.
	DataDir string        `toml:"data_dir"`
	Listen  ListenConfig  `toml:"listen"`
	HTTP    HTTPConfig    `toml:"http"`
	LwM2M   LwM2MConfig   `toml:"lwm2m"`
	Store   StoreConfig   `toml:"store"`
	Log     LogConfig     `toml:"log"`
	Systemd SystemdConfig `toml:"systemd"`
	Update  UpdateConfig  `toml:"update"`
	// Firmware is the OTA policy (docs/firmware.md).
	Firmware FirmwareConfig `toml:"firmware"`
}

// FirmwareConfig configures the firmware library and deployments.
type FirmwareConfig struct {
	// MaxSizeMiB bounds an uploaded image.
	MaxSizeMiB int64 `toml:"max_size_mib"`
	// AdvertiseHost is the host name or address Package URIs name; empty:
	// the address on which each device reached the appliance (set it
	// behind NAT or with several interfaces).
	AdvertiseHost string `toml:"advertise_host"`
	// DeviceTimeout fails a device whose download or update step takes
	// longer; a deployment may set its own.
	DeviceTimeout time.Duration `toml:"device_timeout"`
	// MaxConcurrent is how many devices of a deployment are under way at
	// once unless the deployment says otherwise.
	MaxConcurrent int `toml:"max_concurrent"`
	// FailureThreshold halts a deployment when the failed share of its
	// devices passes it (0.2 = 20 %); 0 never halts unless a deployment
	// sets its own.
	FailureThreshold float64 `toml:"failure_threshold"`
}

// ListenConfig holds the listen addresses. A port 0 picks a free port; an
// empty CoAPS, Bootstrap or BootstrapDTLS address turns that listener off.
type ListenConfig struct {
	HTTP string `toml:"http"`
	// HTTPS is the web UI's TLS address, used when http.https is on; the
	// plain HTTP address then only redirects to it.
	HTTPS         string `toml:"https"`
	CoAP          string `toml:"coap"`
	CoAPS         string `toml:"coaps"`
	Bootstrap     string `toml:"bootstrap"`
	BootstrapDTLS string `toml:"bootstrap_dtls"`
	// UDPReadBufferKiB is the receive buffer asked for on every CoAP and
	// DTLS socket, so a burst of datagrams waits in the kernel instead of
	// being dropped. Linux grants at most net.core.rmem_max, which the
	// package raises (/usr/lib/sysctl.d/60-flownexus.conf); the granted
	// size is logged. 0 keeps the kernel's default.
	UDPReadBufferKiB int `toml:"udp_read_buffer_kib"`
}

// HTTPConfig configures the web UI and REST API server.
type HTTPConfig struct {
	// HTTPS serves the web UI over TLS. With empty CertFile/KeyFile the
	// appliance issues its own server certificate from its CA.
	HTTPS    bool   `toml:"https"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// LwM2MConfig is the device-facing policy.
type LwM2MConfig struct {
	// AllowUnknownEndpoints lets endpoints that were never provisioned
	// register over plain CoAP. Off, they wait as "pending" for an admin.
	AllowUnknownEndpoints bool `toml:"allow_unknown_endpoints"`
	// DefaultLifetime applies when a Register carries no lt parameter
	// (OMA-TS-LightweightM2M-Core 1.2 §6.2.1: the default is 86400 s).
	DefaultLifetime time.Duration `toml:"default_lifetime"`
	// QueueAwakeWindow is how long a queue-mode device is taken to listen
	// after its last message; 93 s is CoAP's MAX_TRANSMIT_WAIT
	// (RFC 7252 §4.8.2), the Core spec's recommended default (§6.5).
	QueueAwakeWindow time.Duration `toml:"queue_awake_window"`
	// OperationAttempts is how many times an operation is sent before it is
	// marked failed.
	OperationAttempts int `toml:"operation_attempts"`
	// PeerRate is how many datagrams a second one device (an address, or
	// a DTLS session) may send to each LwM2M or bootstrap listener; more
	// are dropped, so that one device's flood cannot starve the others.
	// 0 turns the limit off.
	PeerRate float64       `toml:"peer_rate"`
	Observe  ObserveConfig `toml:"observe"`
}

// ObserveConfig is the auto-observe rule applied on every registration.
type ObserveConfig struct {
	// Single lists paths observed one by one when the device has them.
	Single []string `toml:"single"`
	// CompositeObjects lists the sensor objects whose instances the device
	// registered are observed together in one composite observation
	// (OMA-TS-LightweightM2M-Core 1.2 §6.4.3); empty turns it off.
	CompositeObjects []uint16 `toml:"composite_objects"`
}

// StoreConfig configures the telemetry store.
type StoreConfig struct {
	// Retention is how long resource history is kept.
	Retention time.Duration `toml:"retention"`
	// MaxSizeMiB caps the database file; the oldest history goes first
	// when it is reached. 0 means no cap.
	MaxSizeMiB int64 `toml:"max_size_mib"`
	// FlushInterval bounds how long ingested values wait before their
	// batch is committed.
	FlushInterval time.Duration `toml:"flush_interval"`
	// Synchronous is "full" (fsync at every commit: what a device was
	// acknowledged survives a power cut) or "normal" (faster; survives a
	// crash or kill, but a power cut can lose the last commits).
	Synchronous string `toml:"synchronous"`
	// MinFreeMiB is the free space of the data directory's file system
	// below which new telemetry is refused (devices retry) and /healthz
	// reports "degraded". 0 turns the reserve off: only a write that finds
	// no room at all refuses.
	MinFreeMiB int64 `toml:"min_free_mib"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is one of debug, info, warn, error.
	Level string `toml:"level"`
	// Format is auto, text or json; auto is json when stderr goes to the
	// journal ($JOURNAL_STREAM set by systemd) and text otherwise.
	Format string `toml:"format"`
	// DeviceLinesPerSecond bounds the lines that devices cause one at a
	// time (registered, deregistered, refusals, failed handshakes): each
	// such message writes a burst of ten seconds' worth, then this many a
	// second, and one line per message every 10 s counts the rest
	// (logsample.go). 0 writes every one; so does level debug.
	DeviceLinesPerSecond int `toml:"device_lines_per_second"`
}

// SystemdConfig configures the systemd integration.
type SystemdConfig struct {
	// Watchdog pings systemd's watchdog while the health checks pass, when
	// the unit sets WatchdogSec.
	Watchdog bool `toml:"watchdog"`
	// ShutdownTimeout bounds the graceful shutdown after SIGTERM.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// UpdateConfig configures offline self-update.
type UpdateConfig struct {
	// PublicKeyFile is the minisign public key that update packages must
	// be signed with.
	PublicKeyFile string `toml:"public_key_file"`
}

// DefaultConfig returns the embedded defaults. The data dir follows
// $STATE_DIRECTORY (set by systemd's StateDirectory=) when it is set.
func DefaultConfig() Config {
	dataDir := DefaultDataDir
	if sd := os.Getenv("STATE_DIRECTORY"); sd != "" {
		// systemd passes a colon-separated list when several are set.
		dataDir = strings.Split(sd, ":")[0]
	}
	return Config{
		DataDir: dataDir,
		Listen: ListenConfig{
			HTTP:          ":8080",
			HTTPS:         ":8443",
			CoAP:          ":5683",
			CoAPS:         ":5684",
			Bootstrap:     ":5783",
			BootstrapDTLS: ":5784",
			// coap.DefaultReadBuffer.
			UDPReadBufferKiB: 4096,
		},
		LwM2M: LwM2MConfig{
			AllowUnknownEndpoints: true,
			DefaultLifetime:       86400 * time.Second,
			QueueAwakeWindow:      93 * time.Second,
			OperationAttempts:     3,
			PeerRate:              coap.DefaultConfig().PeerRate,
			Observe: ObserveConfig{
				Single:           []string{"/3303/0/5700"},
				CompositeObjects: []uint16{3304, 3313, 3315},
			},
		},
		Store: StoreConfig{
			Retention:     30 * 24 * time.Hour,
			MaxSizeMiB:    4096,
			FlushInterval: time.Second,
			Synchronous:   "full",
			MinFreeMiB:    16,
		},
		Log: LogConfig{Level: "info", Format: "auto", DeviceLinesPerSecond: 10},
		Systemd: SystemdConfig{
			Watchdog:        true,
			ShutdownTimeout: 15 * time.Second,
		},
		Update: UpdateConfig{
			PublicKeyFile: "/usr/share/flownexus/update.pub",
		},
		Firmware: FirmwareConfig{
			MaxSizeMiB:    64,
			DeviceTimeout: 30 * time.Minute,
			MaxConcurrent: 50,
		},
	}
}

// LoadConfig reads a TOML file over the embedded defaults: keys the file
// leaves out keep their default, and an unknown key is an error naming it.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses TOML text over the embedded defaults, as LoadConfig.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	// A list in the file replaces the default list whole.
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				// Name the setting, not only the line: a duration written
				// as "soon" is a problem of queue_awake_window.
				return Config{}, fmt.Errorf("%w: line %d: %s: %s", ErrConfig, perr.Position.Line, perr.LastKey, perr.Message)
			}
			return Config{}, fmt.Errorf("%w: line %d: %s", ErrConfig, perr.Position.Line, perr.Message)
		}
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%w: unknown key %s", ErrConfig, strings.Join(keys, ", "))
	}
	return cfg, nil
}

// Validate checks every setting and names the first one that is wrong.
func (c Config) Validate() error {
	bad := func(key, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	addrs := []struct {
		key      string
		addr     string
		optional bool
	}{
		{"listen.http", c.Listen.HTTP, false},
		{"listen.coap", c.Listen.CoAP, false},
		{"listen.coaps", c.Listen.CoAPS, true},
		{"listen.bootstrap", c.Listen.Bootstrap, true},
		{"listen.bootstrap_dtls", c.Listen.BootstrapDTLS, true},
	}
	for _, a := range addrs {
		if a.addr == "" {
			if a.optional {
				continue
			}
			return bad(a.key, "must not be empty")
		}
		if err := checkListenAddr(a.addr); err != nil {
			return bad(a.key, "%v", err)
		}
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		return bad("http.cert_file", "cert_file and key_file must be set together")
	}
	if !c.HTTP.HTTPS && c.HTTP.CertFile != "" {
		return bad("http.cert_file", "set but https is off")
	}
	if c.HTTP.HTTPS {
		if c.Listen.HTTPS == "" {
			return bad("listen.https", "must not be empty when http.https is on")
		}
		if err := checkListenAddr(c.Listen.HTTPS); err != nil {
			return bad("listen.https", "%v", err)
		}
	}
	if c.LwM2M.DefaultLifetime < time.Second {
		return bad("lwm2m.default_lifetime", "%s is shorter than 1s", c.LwM2M.DefaultLifetime)
	}
	if c.LwM2M.QueueAwakeWindow <= 0 {
		return bad("lwm2m.queue_awake_window", "%s is not positive", c.LwM2M.QueueAwakeWindow)
	}
	if c.LwM2M.PeerRate < 0 || math.IsNaN(c.LwM2M.PeerRate) || math.IsInf(c.LwM2M.PeerRate, 0) {
		return bad("lwm2m.peer_rate", "%v is not a rate of 0 or more datagrams a second", c.LwM2M.PeerRate)
	}
	if c.LwM2M.OperationAttempts < 1 {
		return bad("lwm2m.operation_attempts", "%d is less than 1", c.LwM2M.OperationAttempts)
	}
	for _, p := range c.LwM2M.Observe.Single {
		path, err := lwm2m.ParsePath(p)
		if err != nil {
			return bad("lwm2m.observe.single", "%q: %v", p, err)
		}
		if path.IsRoot() {
			return bad("lwm2m.observe.single", "%q: observing the root is not allowed", p)
		}
	}
	for _, o := range c.LwM2M.Observe.CompositeObjects {
		if o == 0 || o == 1 || o == 2 {
			// Security, Server and ACL objects are not sensor data and the
			// Security object is never readable by a server
			// (OMA-TS-LightweightM2M-Core 1.2 §E.1).
			return bad("lwm2m.observe.composite_objects", "object %d is not a sensor object", o)
		}
	}
	if c.Store.Retention <= 0 {
		return bad("store.retention", "%s is not positive", c.Store.Retention)
	}
	if c.Listen.UDPReadBufferKiB < 0 || c.Listen.UDPReadBufferKiB > 1<<20 {
		return bad("listen.udp_read_buffer_kib", "%d is not between 0 and 1048576 (1 GiB)", c.Listen.UDPReadBufferKiB)
	}
	if c.Store.MaxSizeMiB < 0 {
		return bad("store.max_size_mib", "%d is negative", c.Store.MaxSizeMiB)
	}
	if c.Store.MinFreeMiB < 0 {
		return bad("store.min_free_mib", "%d is negative", c.Store.MinFreeMiB)
	}
	if c.Store.FlushInterval < time.Millisecond || c.Store.FlushInterval > time.Minute {
		return bad("store.flush_interval", "%s is outside 1ms..1m", c.Store.FlushInterval)
	}
	switch c.Store.Synchronous {
	case "", "full", "normal":
	default:
		return bad("store.synchronous", "%q is neither full nor normal", c.Store.Synchronous)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return bad("log.level", "%v", err)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return bad("log.format", "%q is not auto, text or json", c.Log.Format)
	}
	if c.Log.DeviceLinesPerSecond < 0 || c.Log.DeviceLinesPerSecond > 100000 {
		return bad("log.device_lines_per_second", "%d is outside 0..100000", c.Log.DeviceLinesPerSecond)
	}
	if c.Systemd.ShutdownTimeout <= 0 || c.Systemd.ShutdownTimeout > 10*time.Minute {
		return bad("systemd.shutdown_timeout", "%s is outside (0, 10m]", c.Systemd.ShutdownTimeout)
	}
	if c.Firmware.MaxSizeMiB < 1 || c.Firmware.MaxSizeMiB > 4096 {
		return bad("firmware.max_size_mib", "%d is outside 1..4096", c.Firmware.MaxSizeMiB)
	}
	if c.Firmware.DeviceTimeout < time.Second {
		return bad("firmware.device_timeout", "%s is shorter than 1s", c.Firmware.DeviceTimeout)
	}
	if c.Firmware.MaxConcurrent < 1 {
		return bad("firmware.max_concurrent", "%d is less than 1", c.Firmware.MaxConcurrent)
	}
	if c.Firmware.FailureThreshold < 0 || c.Firmware.FailureThreshold > 1 {
		return bad("firmware.failure_threshold", "%v is outside 0..1", c.Firmware.FailureThreshold)
	}
	if len(c.Firmware.AdvertiseHost) > 120 || strings.ContainsAny(c.Firmware.AdvertiseHost, "/ ?#@[]") {
		return bad("firmware.advertise_host", "%q is not a host name or address", c.Firmware.AdvertiseHost)
	}
	if c.Update.PublicKeyFile != "" && !filepath.IsAbs(c.Update.PublicKeyFile) {
		return bad("update.public_key_file", "%q is not an absolute path", c.Update.PublicKeyFile)
	}
	return nil
}

func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// NewLogger builds the process logger described by c, writing to w. getenv
// is consulted for JOURNAL_STREAM: under journald the format "auto" means
// JSON so that the journal keeps the fields.
func (c LogConfig) NewLogger(w io.Writer, getenv func(string) string) *slog.Logger {
	level, err := parseLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" || format == "" {
		format = "text"
		if getenv != nil && getenv("JOURNAL_STREAM") != "" {
			format = "json"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// The data dir's layout. The lead's wiring, the PKI, firmware, backup and
// self-update all find their files through these.
const (
	databaseFile = "flownexus.db"
	pkiDir       = "pki"
	firmwareDir  = "firmware"
	updatesDir   = "updates"
)

// DatabasePath is the SQLite database file in the data dir.
func (c Config) DatabasePath() string { return filepath.Join(c.DataDir, databaseFile) }

// PKIDir holds the appliance's CA and server keys (0600 files).
func (c Config) PKIDir() string { return filepath.Join(c.DataDir, pkiDir) }

// FirmwareDir holds the uploaded firmware images.
func (c Config) FirmwareDir() string { return filepath.Join(c.DataDir, firmwareDir) }

// UpdatesDir holds uploaded self-update packages and the previous package
// kept for a rollback.
func (c Config) UpdatesDir() string { return filepath.Join(c.DataDir, updatesDir) }
