package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/simulation"
)

// errUsage marks a command line that could not be parsed (exit code 2).
var errUsage = errors.New("usage")

// options are the parsed command line.
type options struct {
	fleet simulation.Config
	// creds are the DTLS credentials: --psk-key and --psk-identity-prefix,
	// --cert, --key and --ca, or a --bundle.
	creds       simulation.Credentials
	duration    time.Duration
	logLevel    slog.Level
	logJSON     bool
	statsEvery  time.Duration
	deviceDebug bool
	ackLog      string
}

const about = `flownexus-sim: a fleet of simulated LwM2M devices (temperature sensors with
the Device, Firmware and queue-mode behaviour of a Zephyr client) for trying
and load-testing a FlowNexus appliance or any LwM2M server.

  flownexus-sim --server coap://127.0.0.1:5683 --devices 20
  flownexus-sim --bundle urn_imei_359000000000042-enrollment.zip   # a device enrolled in the wizard (PSK or certificate)
  flownexus-sim --server coaps://127.0.0.1:5684 --endpoint urn:imei:1 --cert client.pem --key client-key.pem --ca ca.pem

It runs until Ctrl-C (or --duration), then de-registers every device.

flags:
`

// parseArgs reads the command line into a fleet configuration.
func parseArgs(args []string, out io.Writer) (options, error) {
	o := options{fleet: simulation.DefaultConfig()}
	fs := flag.NewFlagSet("flownexus-sim", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, about)
		fs.PrintDefaults()
	}
	var (
		bundle   = fs.String("bundle", "", "the enrollment wizard's zip bundle: one device with its name, server and credentials")
		certFile = fs.String("cert", "", "device certificate (PEM) for a coaps:// server, with --key and --ca")
		keyFile  = fs.String("key", "", "device private key (PEM)")
		caFile   = fs.String("ca", "", "CA certificate (PEM) that signed the server's certificate (System → CA certificate)")
	)
	var (
		lifetime    = fs.Int("lifetime", 300, "registration lifetime in seconds")
		version     = fs.String("lwm2m-version", "1.1", "LwM2M version the devices speak: 1.0, 1.1 or 1.2")
		sources     = fs.String("source-addrs", "", "loopback source addresses, a range 127.0.0.1-127.0.0.8 or a comma list (default 127.0.0.1)")
		pskKey      = fs.String("psk-key", "", "DTLS pre-shared key in hex (with a coaps:// server)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		seed        = fs.Uint64("seed", 1, "random seed; the same seed gives the same fleet")
		coapTimeout = fs.Duration("ack-timeout", 2*time.Second, "CoAP ACK_TIMEOUT (RFC 7252 §4.8)")
		fwProtos    = fs.String("fw-protocols", "0,1,2,3", "firmware download protocols the devices announce in 5/0/8: 0 CoAP, 1 CoAPS, 2 HTTP, 3 HTTPS")
		fwFail      = map[string]*float64{}
	)
	fs.Int64Var(&o.fleet.Firmware.Delivery, "fw-delivery", 2, "firmware delivery the devices announce in 5/0/9: 0 pull, 1 push, 2 both")
	fs.IntVar(&o.fleet.Firmware.BlockSize, "fw-block-size", 256, "Block2 size of firmware downloads, 16..1024 (Zephyr's CONFIG_LWM2M_COAP_BLOCK_SIZE)")
	for _, m := range []string{simulation.FailIntegrity, simulation.FailStorage, simulation.FailConnection, simulation.FailUpdate} {
		fwFail[m] = fs.Float64("fw-fail-"+m, 0, "share of devices (0..1) whose firmware update fails with "+m)
	}
	fs.StringVar(&o.fleet.Server, "server", o.fleet.Server, "LwM2M server URI, coap://host:port or coaps://host:port")
	fs.IntVar(&o.fleet.Devices, "devices", o.fleet.Devices, "number of devices")
	fs.StringVar(&o.fleet.EndpointPrefix, "endpoint-prefix", o.fleet.EndpointPrefix, "endpoint name prefix; devices are named prefix0000, prefix0001, …")
	endpoints := fs.String("endpoint", "", "exact endpoint names, comma-separated (one device each, instead of --devices and --endpoint-prefix)")
	fs.Float64Var(&o.fleet.QueueShare, "queue-share", 0, "fraction of devices in queue mode, 0..1")
	fs.DurationVar(&o.fleet.AwakeWindow, "awake-window", o.fleet.AwakeWindow, "how long a queue-mode device listens after an uplink")
	fs.DurationVar(&o.fleet.StartDelay, "start-delay", 0, "wait before the first device starts")
	fs.DurationVar(&o.fleet.StartSpread, "start-spread", o.fleet.StartSpread, "spread the devices' starts over this span")
	fs.DurationVar(&o.fleet.Rate, "rate", o.fleet.Rate, "how often each device's values change (0: never)")
	fs.DurationVar(&o.fleet.SendEvery, "send-every", 0, "each device sends temperature and battery to /dp this often (0: never)")
	fs.BoolVar(&o.fleet.Logs.Start, "log-start", false, "devices log (Event Log, object 20) from boot, without waiting for LogStart")
	fs.BoolVar(&o.fleet.Logs.Chatter, "log-chatter", true, "while logging, a Zephyr-style line at every value change")
	fs.IntVar(&o.fleet.Logs.BurstEvery, "log-burst-every", 0, "every N value changes, a burst of --log-burst-lines lines (0: never)")
	fs.IntVar(&o.fleet.Logs.BurstLines, "log-burst-lines", 100, "lines in a burst")
	fs.IntVar(&o.fleet.Logs.OversizeEvery, "log-oversize-every", 0, "every N value changes, one record of --log-oversize-bytes (0: never)")
	fs.IntVar(&o.fleet.Logs.OversizeBytes, "log-oversize-bytes", 100<<10, "size of an oversize record")
	fs.IntVar(&o.fleet.Logs.Format, "log-format", 0, "LogDataFormat (4015): 0 text, 3 CBOR, 100 vendor binary")
	fs.DurationVar(&o.fleet.LogSendEvery, "log-send-every", 0, "each device sends new log lines to /dp this often (0: never; the server observes LogData instead)")
	fs.Float64Var(&o.fleet.TempMin, "temp-min", o.fleet.TempMin, "lowest simulated temperature, °C")
	fs.Float64Var(&o.fleet.TempMax, "temp-max", o.fleet.TempMax, "highest simulated temperature, °C")
	fs.StringVar(&o.creds.PSKPrefix, "psk-identity-prefix", "", "DTLS PSK identity = prefix + endpoint name (leave empty for devices enrolled in the wizard: their identity is the endpoint name)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.DurationVar(&o.statsEvery, "stats-every", 5*time.Second, "log fleet progress this often")
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON instead of text")
	fs.BoolVar(&o.deviceDebug, "device-logs", false, "log every device's client events too")
	fs.StringVar(&o.ackLog, "ack-log", "", "append every reading the server acknowledged (CON notification ACKed, Send answered 2.04) to this file as JSON lines")
	fs.BoolVar(&o.fleet.ConfirmableNotify, "confirmable", false, "send notifications as CON, so that each is acknowledged, and report their acknowledgement latency (ack_p50, ack_p99)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, flag.ErrHelp
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	serverSet := false
	fs.Visit(func(f *flag.Flag) { serverSet = serverSet || f.Name == "server" })
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *endpoints != "" {
		for _, ep := range strings.Split(*endpoints, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				o.fleet.Endpoints = append(o.fleet.Endpoints, ep)
			}
		}
		o.fleet.Devices = len(o.fleet.Endpoints)
	}
	o.fleet.Lifetime = time.Duration(*lifetime) * time.Second
	o.fleet.Version = client.Version(*version)
	switch o.fleet.Version {
	case client.Version10, client.Version11, client.Version12:
	default:
		return o, fmt.Errorf("%w: --lwm2m-version %q (want 1.0, 1.1 or 1.2)", errUsage, *version)
	}
	o.fleet.Seed = *seed
	switch o.fleet.Logs.Format {
	case 0, 3, 100:
	default:
		return o, fmt.Errorf("%w: --log-format %d (want 0, 3 or 100)", errUsage, o.fleet.Logs.Format)
	}
	if o.fleet.Logs.BurstEvery < 0 || o.fleet.Logs.BurstLines < 0 || o.fleet.Logs.OversizeEvery < 0 || o.fleet.Logs.OversizeBytes < 0 || o.fleet.LogSendEvery < 0 {
		return o, fmt.Errorf("%w: log options must not be negative", errUsage)
	}
	var err error
	if o.fleet.Firmware.Protocols, err = parseProtocols(*fwProtos); err != nil {
		return o, fmt.Errorf("%w: --fw-protocols: %w", errUsage, err)
	}
	o.fleet.FirmwareFailures = map[string]float64{}
	for m, v := range fwFail {
		if *v != 0 {
			o.fleet.FirmwareFailures[m] = *v
		}
	}
	cc := o.fleet.CoAP
	cc.ACKTimeout = *coapTimeout
	o.fleet.CoAP = cc
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return o, fmt.Errorf("%w: --log-level %q", errUsage, *logLevel)
	}
	var addrs []netip.Addr
	addrs, err = parseSourceAddrs(*sources)
	if err != nil {
		return o, fmt.Errorf("%w: --source-addrs: %w", errUsage, err)
	}
	o.fleet.SourceAddrs = addrs
	if *pskKey != "" {
		if o.creds.PSK, err = hex.DecodeString(*pskKey); err != nil || len(o.creds.PSK) == 0 {
			return o, fmt.Errorf("%w: --psk-key is not hex", errUsage)
		}
	}
	if *certFile != "" || *keyFile != "" || *caFile != "" {
		if err := loadCertFiles(&o, *certFile, *keyFile, *caFile); err != nil {
			return o, fmt.Errorf("%w: %w", errUsage, err)
		}
		if o.creds.PSK != nil {
			return o, fmt.Errorf("%w: --psk-key and --cert exclude each other", errUsage)
		}
	}
	if *bundle != "" {
		if o.creds.PSK != nil || o.creds.CertPEM != nil || *endpoints != "" {
			return o, fmt.Errorf("%w: --bundle brings the endpoint and credentials: leave out --endpoint, --psk-key and --cert", errUsage)
		}
		if err := applyBundle(&o, *bundle, serverSet); err != nil {
			return o, fmt.Errorf("%w: --bundle: %w", errUsage, err)
		}
	}
	u, err := url.Parse(o.fleet.Server)
	if err != nil || u.Host == "" {
		return o, fmt.Errorf("%w: --server %q is not coap://host:port or coaps://host:port", errUsage, o.fleet.Server)
	}
	switch u.Scheme {
	case "coap":
		if o.creds.PSK != nil || o.creds.CertPEM != nil {
			return o, fmt.Errorf("%w: --psk-key and --cert need a coaps:// server", errUsage)
		}
	case "coaps":
		if o.creds.PSK == nil && o.creds.CertPEM == nil {
			return o, fmt.Errorf("%w: a coaps:// server needs credentials: --bundle FILE (from the enrollment wizard), --psk-key HEX (the identity is the endpoint name, as the wizard provisions it; --psk-identity-prefix only for fleets provisioned with one), or --cert, --key and --ca", errUsage)
		}
	default:
		return o, fmt.Errorf("%w: --server scheme %q (want coap or coaps)", errUsage, u.Scheme)
	}
	return o, nil
}

// parseProtocols reads "0,1,2" (Object 5 resource 8 values).
func parseProtocols(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 || n > 5 {
			return nil, fmt.Errorf("%q is not a protocol number 0..5", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSourceAddrs reads "127.0.0.1-127.0.0.8" or "127.0.0.1,127.0.0.5".
// Only loopback addresses are taken: the simulator is a test tool and
// talks to the local appliance.
func parseSourceAddrs(s string) ([]netip.Addr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address", lo)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(hi); err != nil {
				return nil, fmt.Errorf("%q is not an address", hi)
			}
		}
		if !a.IsLoopback() || !b.IsLoopback() {
			return nil, fmt.Errorf("%s is not a loopback address", part)
		}
		if b.Less(a) {
			return nil, fmt.Errorf("range %s runs backwards", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 65536 {
				return nil, fmt.Errorf("more than 65536 addresses")
			}
			if x == b {
				break
			}
		}
	}
	return out, nil
}

// run parses the command line, builds the fleet and runs it.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // --help: the usage is printed, and asking for it is no error
	}
	if err != nil {
		fmt.Fprintln(stderr, "flownexus-sim:", err)
		return err
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	}
	log := slog.New(h)
	if o.creds.PSK != nil || o.creds.CertPEM != nil {
		if o.fleet.Dial, err = simulation.DTLSDialer(o.fleet.Server, o.creds, log); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		// A coaps:// firmware download opens its own session with the
		// device's credentials, as Zephyr's pull client does.
		if o.fleet.Firmware.Dial, err = simulation.DTLSDialerTo(o.creds, log); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	opts := []simulation.Option{simulation.WithLogger(log)}
	if o.ackLog != "" {
		f, err := os.OpenFile(o.ackLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--ack-log: %w", err)
		}
		defer f.Close()
		opts = append(opts, simulation.WithAckLog(simulation.NewAckLog(f)))
	}
	if !o.deviceDebug {
		opts = append(opts, simulation.WithDeviceLog(slog.New(slog.DiscardHandler)))
	}
	f, err := simulation.New(o.fleet, opts...)
	if err != nil {
		return err
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	ticker := time.NewTicker(o.statsEvery)
	defer ticker.Stop()
	start := time.Now()
	// The last progress line carries the run's totals (and the
	// acknowledgement latency of the whole run).
	defer func() { logStats(log.With("final", true), f.Stats()) }()
	for {
		select {
		case err := <-done:
			return err
		case <-f.AllRegistered():
			log.Info("all devices registered", "devices", o.fleet.Devices, "after", time.Since(start).Round(time.Millisecond).String())
			// Reported once: from here on only the ticker logs.
			for {
				select {
				case err := <-done:
					return err
				case <-ticker.C:
					logStats(log, f.Stats())
				}
			}
		case <-ticker.C:
			logStats(log, f.Stats())
		}
	}
}

func logStats(log *slog.Logger, s simulation.Stats) {
	log.Info("fleet progress", "devices", s.Devices, "started", s.Started, "registered", s.Registered,
		"registrations", s.Registrations, "updates", s.Updates, "notifications", s.Notifications,
		"sends", s.Sends, "failures", s.Failures, "sleep_periods", s.SleepPeriods,
		"acks", s.Ack.Count, "ack_p50", s.Ack.P50, "ack_p99", s.Ack.P99, "ack_max", s.Ack.Max)
}
