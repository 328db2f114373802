package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const packagedConffile = "../packaging/flownexus.toml"

// TestPackagedConffile checks that the conffile shipped in the .deb parses
// and equals the embedded defaults except for its documented differences.
func TestPackagedConffile(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	got, err := LoadConfig(packagedConffile)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("packaged conffile does not validate: %v", err)
	}
	want := DefaultConfig()
	// The one documented difference: unknown devices wait for an admin.
	want.LwM2M.AllowUnknownEndpoints = false
	if !reflect.DeepEqual(got, want) {
		t.Errorf("packaged conffile differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	if DefaultConfig().LwM2M.AllowUnknownEndpoints != true {
		t.Error("embedded default allow_unknown_endpoints must be true")
	}
}

// TestPackagedConffileDocumentsEverySetting keeps the conffile complete: each
// key of Config must appear in it (data_dir commented out).
func TestPackagedConffileDocumentsEverySetting(t *testing.T) {
	text, err := os.ReadFile(packagedConffile)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := f.Tag.Get("toml")
			if f.Type.Kind() == reflect.Struct {
				walk(prefix+name+".", f.Type)
				continue
			}
			keys = append(keys, prefix+name)
		}
	}
	walk("", reflect.TypeFor[Config]())
	if len(keys) < 20 {
		t.Fatalf("found only %d keys; the walk is broken", len(keys))
	}
	// Track the current [table] to check each key in its own table.
	tables := map[string]string{}
	table := ""
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			table = strings.Trim(line, "[]") + "."
			continue
		}
		line = strings.TrimPrefix(line, "# ")
		if k, _, ok := strings.Cut(line, "="); ok {
			if k = strings.TrimSpace(k); k != "" && !strings.ContainsAny(k, " #") {
				tables[table+k] = line
			}
		}
	}
	for _, k := range keys {
		if _, ok := tables[k]; !ok {
			t.Errorf("packaged conffile does not document %s", k)
		}
	}
}

func TestParseConfigOverridesAndKeepsDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	cfg, err := ParseConfig([]byte(`
data_dir = "/srv/fn"
[listen]
http = "127.0.0.1:9000"
[lwm2m.observe]
single = ["/3304/0/5700", "/3303/1/5700"]
[store]
retention = "48h"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/fn" || cfg.Listen.HTTP != "127.0.0.1:9000" || cfg.Store.Retention != 48*time.Hour {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if cfg.Listen.CoAP != ":5683" || cfg.Store.FlushInterval != time.Second {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if want := []string{"/3304/0/5700", "/3303/1/5700"}; !reflect.DeepEqual(cfg.LwM2M.Observe.Single, want) {
		t.Errorf("single = %v, want %v (a list replaces the default)", cfg.LwM2M.Observe.Single, want)
	}
	// The defaults of a later call are not changed by the decode above.
	if d := DefaultConfig(); !reflect.DeepEqual(d.LwM2M.Observe.Single, []string{"/3303/0/5700"}) {
		t.Errorf("defaults were mutated: %v", d.LwM2M.Observe.Single)
	}
}

func TestStateDirectory(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/x:/var/lib/y")
	if got := DefaultConfig().DataDir; got != "/var/lib/x" {
		t.Errorf("DataDir = %q, want the first $STATE_DIRECTORY entry", got)
	}
	t.Setenv("STATE_DIRECTORY", "")
	if got := DefaultConfig().DataDir; got != DefaultDataDir {
		t.Errorf("DataDir = %q, want %q", got, DefaultDataDir)
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"unknown top-level key", "colour = 1\n", "unknown key colour"},
		{"unknown nested key", "[listen]\nhttp3 = \":1\"\n", "unknown key listen.http3"},
		{"unknown table", "[mqtt]\nport = 1\n", "unknown key mqtt"},
		{"syntax", "[listen\n", "line "},
		{"wrong type", "[listen]\nhttp = 8080\n", "listen.http"},
		{"bad duration", "[store]\nretention = \"30 days\"\n", "store.retention: invalid duration: \"30 days\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.text))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"empty http", func(c *Config) { c.Listen.HTTP = "" }, "listen.http"},
		{"no port", func(c *Config) { c.Listen.CoAP = "localhost" }, "listen.coap"},
		{"port too big", func(c *Config) { c.Listen.CoAPS = ":70000" }, "listen.coaps"},
		{"port not a number", func(c *Config) { c.Listen.Bootstrap = ":http" }, "listen.bootstrap"},
		{"negative read buffer", func(c *Config) { c.Listen.UDPReadBufferKiB = -1 }, "listen.udp_read_buffer_kib"},
		{"huge read buffer", func(c *Config) { c.Listen.UDPReadBufferKiB = 1<<20 + 1 }, "listen.udp_read_buffer_kib"},
		{"cert without key", func(c *Config) { c.HTTP.HTTPS = true; c.HTTP.CertFile = "/c.pem" }, "http.cert_file"},
		{"cert with https off", func(c *Config) { c.HTTP.CertFile, c.HTTP.KeyFile = "/c", "/k" }, "https is off"},
		{"lifetime", func(c *Config) { c.LwM2M.DefaultLifetime = 0 }, "lwm2m.default_lifetime"},
		{"awake window", func(c *Config) { c.LwM2M.QueueAwakeWindow = -time.Second }, "lwm2m.queue_awake_window"},
		{"attempts", func(c *Config) { c.LwM2M.OperationAttempts = 0 }, "lwm2m.operation_attempts"},
		{"negative peer rate", func(c *Config) { c.LwM2M.PeerRate = -1 }, "lwm2m.peer_rate"},
		{"infinite peer rate", func(c *Config) { c.LwM2M.PeerRate = math.Inf(1) }, "lwm2m.peer_rate"},
		{"NaN peer rate", func(c *Config) { c.LwM2M.PeerRate = math.NaN() }, "lwm2m.peer_rate"},
		{"observe path", func(c *Config) { c.LwM2M.Observe.Single = []string{"/3303/x"} }, "lwm2m.observe.single"},
		{"observe root", func(c *Config) { c.LwM2M.Observe.Single = []string{"/"} }, "root"},
		{"composite security", func(c *Config) { c.LwM2M.Observe.CompositeObjects = []uint16{0} }, "composite_objects"},
		{"retention", func(c *Config) { c.Store.Retention = 0 }, "store.retention"},
		{"size", func(c *Config) { c.Store.MaxSizeMiB = -1 }, "store.max_size_mib"},
		{"flush", func(c *Config) { c.Store.FlushInterval = time.Hour }, "store.flush_interval"},
		{"synchronous", func(c *Config) { c.Store.Synchronous = "off" }, "store.synchronous"},
		{"level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"device lines below 0", func(c *Config) { c.Log.DeviceLinesPerSecond = -1 }, "log.device_lines_per_second"},
		{"device lines above 100000", func(c *Config) { c.Log.DeviceLinesPerSecond = 100001 }, "log.device_lines_per_second"},
		{"shutdown", func(c *Config) { c.Systemd.ShutdownTimeout = 0 }, "systemd.shutdown_timeout"},
		{"pubkey relative", func(c *Config) { c.Update.PublicKeyFile = "update.pub" }, "update.public_key_file"},
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want ErrConfig mentioning %q", err, c.want)
			}
		})
	}
	// The per-device rate limit may be turned off.
	cfg := DefaultConfig()
	cfg.LwM2M.PeerRate = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("peer_rate 0: %v", err)
	}
	// Optional listeners may be turned off.
	cfg = DefaultConfig()
	cfg.Listen.CoAPS, cfg.Listen.Bootstrap, cfg.Listen.BootstrapDTLS = "", "", ""
	if err := cfg.Validate(); err != nil {
		t.Errorf("optional listeners off: %v", err)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(buf.Bytes())
	if err != nil {
		t.Fatalf("encoded defaults do not parse: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(got, DefaultConfig()) {
		t.Errorf("round trip changed the config")
	}
}

func TestNewLoggerFormat(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	var buf bytes.Buffer
	LogConfig{Level: "info", Format: "auto"}.NewLogger(&buf, env(map[string]string{"JOURNAL_STREAM": "8:1234"})).Info("hello", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "hello" {
		t.Errorf("under journald the log is not JSON: %q (%v)", buf.String(), err)
	}
	buf.Reset()
	LogConfig{Level: "warn", Format: "auto"}.NewLogger(&buf, env(nil)).Info("dropped")
	if buf.Len() != 0 {
		t.Errorf("info logged at level warn: %q", buf.String())
	}
	LogConfig{Level: "debug", Format: "auto"}.NewLogger(&buf, env(nil)).Debug("shown")
	if !strings.HasPrefix(buf.String(), "time=") {
		t.Errorf("outside journald the log is not text: %q", buf.String())
	}
}
