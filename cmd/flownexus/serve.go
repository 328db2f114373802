package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/flownexus/flownexus/appliance"
)

// configFlags are the flags every subcommand that needs the configuration
// shares: the file and the data dir.
type configFlags struct {
	path    string
	dataDir string
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.path, "config", "", "configuration file (default "+appliance.DefaultConfigFile+" when it exists, else embedded defaults)")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (overrides data_dir)")
}

// load reads the configuration: the named file, else the packaged conffile
// when it exists, else the embedded defaults; then the flags override it.
// It returns the file used ("" for the embedded defaults).
func (c *configFlags) load() (appliance.Config, string, error) {
	path := c.path
	if path == "" {
		if _, err := os.Stat(appliance.DefaultConfigFile); err == nil {
			path = appliance.DefaultConfigFile
		} else if !errors.Is(err, fs.ErrNotExist) {
			return appliance.Config{}, "", fmt.Errorf("config %s: %w", appliance.DefaultConfigFile, err)
		}
	}
	cfg := appliance.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = appliance.LoadConfig(path); err != nil {
			return appliance.Config{}, path, err
		}
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	return cfg, path, nil
}

func cmdServe(ctx context.Context, args []string, e env) error {
	fs := newFlagSet("serve", e)
	var cf configFlags
	cf.register(fs)
	httpAddr := fs.String("http", "", "web UI and REST API listen address (overrides listen.http)")
	coapAddr := fs.String("coap", "", "CoAP listen address (overrides listen.coap)")
	coapsAddr := fs.String("coaps", "", "CoAP/DTLS listen address (overrides listen.coaps)")
	bsAddr := fs.String("bootstrap", "", "bootstrap server CoAP listen address (overrides listen.bootstrap)")
	bsDTLSAddr := fs.String("bootstrap-dtls", "", "bootstrap server CoAPS listen address (overrides listen.bootstrap_dtls)")
	httpsAddr := fs.String("https", "", "web UI HTTPS listen address, used when http.https is on (overrides listen.https)")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("serve takes no arguments, got %q", pos[0])
	}
	cfg, path, err := cf.load()
	if err != nil {
		return err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{
		{*httpAddr, &cfg.Listen.HTTP},
		{*coapAddr, &cfg.Listen.CoAP},
		{*coapsAddr, &cfg.Listen.CoAPS},
		{*bsAddr, &cfg.Listen.Bootstrap},
		{*bsDTLSAddr, &cfg.Listen.BootstrapDTLS},
		{*httpsAddr, &cfg.Listen.HTTPS},
	} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return fmt.Errorf("config %s: %w", path, err)
		}
		return err
	}
	if *check {
		if path == "" {
			path = "embedded defaults"
		}
		fmt.Fprintf(e.stdout, "configuration OK (%s)\n", path)
		return nil
	}

	log := cfg.Log.NewLogger(e.stderr, e.getenv)
	sockets, err := appliance.Listeners()
	if err != nil {
		return err
	}
	opts := []appliance.Option{appliance.WithLogger(log)}
	if appliance.UnderSystemd(e.getenv) {
		// systemd's Restart=on-failure starts us again after a restart
		// an admin asked for in the web UI.
		opts = append(opts, appliance.WithSelfRestart())
	}
	if len(sockets.Listeners) > 0 || len(sockets.PacketConns) > 0 {
		opts = append(opts, appliance.WithListeners(sockets.Listeners, sockets.PacketConns))
	}
	app, err := appliance.New(cfg, opts...)
	if err != nil {
		return err
	}
	configFile := path
	if configFile == "" {
		configFile = "embedded defaults"
	}
	log.Info("starting", "version", appliance.Version, "config", configFile, "data_dir", cfg.DataDir)
	// The watchdog is pinged only while the CoAP loop, the ingestion writer
	// and the HTTP server are alive.
	return appliance.RunService(ctx, app, app.Health, cfg.Systemd, log)
}

func cmdVersion(e env) error {
	fmt.Fprintf(e.stdout, "flownexus %s\n", appliance.Version)
	return nil
}
