package appliance

import (
	"errors"
	"os"
	"testing"
)

// FuzzParseConfig: the config file is written by hand on the appliance.
// Whatever it holds, parsing and validating answer a config or an
// ErrConfig that names the problem — never a panic — and a config that
// validates parses the same way twice.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("../packaging/flownexus.toml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"[listen]\ncoap = \":5683\"\n",
		"[lwm2m]\nqueue_awake_window = \"soon\"\n",
		"[http]\nhttps = true\n",
		"[firmware]\nmax_size_mib = -1\n",
		"unknown = 1\n",
		"[log]\nlevel = \"loud\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("refusal without ErrConfig: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("validation without ErrConfig: %v", err)
			}
			return
		}
		again, err := ParseConfig(b)
		if err != nil || again.DataDir != cfg.DataDir || again.Listen != cfg.Listen {
			t.Fatalf("the same file parsed differently: %v", err)
		}
	})
}
