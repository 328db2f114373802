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
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
)

// errUsage marks a command line that could not be parsed (exit code 2).
var errUsage = errors.New("usage")

// options are the parsed command line.
type options struct {
	fleet       simulation.Config
	pskPrefix   string
	pskKey      []byte
	duration    time.Duration
	logLevel    slog.Level
	logJSON     bool
	statsEvery  time.Duration
	deviceDebug bool
	ackLog      string
}

// parseArgs reads the command line into a fleet configuration.
func parseArgs(args []string, out io.Writer) (options, error) {
	o := options{fleet: simulation.DefaultConfig()}
	fs := flag.NewFlagSet("flownexus-sim", flag.ContinueOnError)
	fs.SetOutput(out)
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
	fs.Float64Var(&o.fleet.TempMin, "temp-min", o.fleet.TempMin, "lowest simulated temperature, °C")
	fs.Float64Var(&o.fleet.TempMax, "temp-max", o.fleet.TempMax, "highest simulated temperature, °C")
	fs.StringVar(&o.pskPrefix, "psk-identity-prefix", "", "DTLS PSK identity = prefix + endpoint name")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.DurationVar(&o.statsEvery, "stats-every", 5*time.Second, "log fleet progress this often")
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON instead of text")
	fs.BoolVar(&o.deviceDebug, "device-logs", false, "log every device's client events too")
	fs.StringVar(&o.ackLog, "ack-log", "", "append every reading the server acknowledged (CON notification ACKed, Send answered 2.04) to this file as JSON lines")
	fs.BoolVar(&o.fleet.ConfirmableNotify, "confirmable", false, "send notifications as CON, so that each is acknowledged, and report their acknowledgement latency (ack_p50, ack_p99)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, errUsage
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
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
		if o.pskKey, err = hex.DecodeString(*pskKey); err != nil || len(o.pskKey) == 0 {
			return o, fmt.Errorf("%w: --psk-key is not hex", errUsage)
		}
	}
	u, err := url.Parse(o.fleet.Server)
	if err != nil || u.Host == "" {
		return o, fmt.Errorf("%w: --server %q is not coap://host:port or coaps://host:port", errUsage, o.fleet.Server)
	}
	switch u.Scheme {
	case "coap":
		if o.pskKey != nil {
			return o, fmt.Errorf("%w: --psk-key needs a coaps:// server", errUsage)
		}
	case "coaps":
		if o.pskKey == nil {
			return o, fmt.Errorf("%w: a coaps:// server needs --psk-key (and usually --psk-identity-prefix)", errUsage)
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
	if err != nil {
		if err != errUsage { // a bare errUsage is -h: flag printed the help
			fmt.Fprintln(stderr, "flownexus-sim:", err)
		}
		return err
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	}
	log := slog.New(h)
	if o.pskKey != nil {
		o.fleet.Dial = pskDialer(o)
		// A coaps:// firmware download opens its own session with the
		// device's credentials, as Zephyr's pull client does.
		o.fleet.Firmware.Dial = func(ctx context.Context, endpoint, hostport string) (coap.Transport, coap.Peer, error) {
			c, err := dtls.Dial(ctx, hostport, dtls.ClientConfig{PSKIdentity: o.pskPrefix + endpoint, PSK: o.pskKey})
			if err != nil {
				return nil, coap.Peer{}, err
			}
			return c, c.Peer(), nil
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

// pskDialer makes each device's DTLS session (lwm2m/dtls) with identity
// prefix + endpoint name and the shared key.
func pskDialer(o options) simulation.DialFunc {
	host := strings.TrimPrefix(o.fleet.Server, "coaps://")
	host = strings.TrimSuffix(host, "/")
	if !strings.Contains(host, ":") || strings.HasSuffix(host, "]") {
		host += ":" + strconv.Itoa(5684)
	}
	return func(ctx context.Context, endpoint, _ string) (coap.Transport, coap.Peer, error) {
		c, err := dtls.Dial(ctx, host, dtls.ClientConfig{PSKIdentity: o.pskPrefix + endpoint, PSK: o.pskKey})
		if err != nil {
			return nil, coap.Peer{}, err
		}
		return c, c.Peer(), nil
	}
}
