package simulation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Config describes a fleet.
type Config struct {
	// Server is the LwM2M server, "coap://127.0.0.1:5683".
	Server string
	// Devices is the number of devices.
	Devices int
	// EndpointPrefix names the devices: prefix + index ("sim-0007").
	EndpointPrefix string
	// Endpoints, when set, are the devices' exact names (one device each,
	// Devices is taken from its length): to simulate devices provisioned
	// by name.
	Endpoints []string
	// Version is the LwM2M version every device speaks.
	Version client.Version
	// Lifetime of each registration.
	Lifetime time.Duration
	// QueueShare is the fraction of devices in queue mode (0..1).
	QueueShare float64
	// AwakeWindow is how long a queue-mode device listens after an uplink.
	AwakeWindow time.Duration
	// StartDelay waits before the first device starts; StartSpread spreads
	// the devices' starts over that span (deterministic, from Seed).
	StartDelay, StartSpread time.Duration
	// Rate is how often each device's values move (and so how often
	// observations with no attributes notify), in steps of the shared
	// 50 ms tick. Zero keeps values still.
	Rate time.Duration
	// SendEvery makes each device Send its temperature and battery (/dp)
	// this often; zero never.
	SendEvery time.Duration
	// Logs shapes every device's Event Log (object 20).
	Logs LogConfig
	// LogSendEvery makes each device Send its LogData (/dp) this often
	// while it has new lines; zero never.
	LogSendEvery time.Duration
	// SourceAddrs are the loopback addresses devices bind to, round robin,
	// so that a large fleet does not run out of ports on one address.
	// Empty binds 127.0.0.1.
	SourceAddrs []netip.Addr
	// Seed makes the fleet repeatable.
	Seed uint64
	// TempMin and TempMax bound the temperatures.
	TempMin, TempMax float64
	// CoAP holds the devices' transmission parameters.
	CoAP coap.Config
	// Dial, when set, makes each device's transport when the device starts
	// (lwm2m/dtls plugs in here).
	Dial DialFunc
	// ConfirmableNotify makes the devices notify with CON messages, so
	// that every notification is acknowledged (or retransmitted); the
	// fleet then measures how long each waited for its ACK (Stats.Ack).
	ConfirmableNotify bool
	// Firmware is how every device takes firmware updates (Object 5);
	// FirmwareFailures gives, per failure mode (FailIntegrity …), the
	// share of devices that simulate it (0..1, deterministic from Seed).
	Firmware         FirmwareConfig
	FirmwareFailures map[string]float64
}

// DefaultConfig returns a fleet of 10 devices with a 300 s lifetime.
func DefaultConfig() Config {
	dc := DefaultDeviceConfig()
	return Config{
		Server:         "coap://127.0.0.1:5683",
		Devices:        10,
		EndpointPrefix: "sim-",
		Version:        client.Version11,
		Lifetime:       300 * time.Second,
		AwakeWindow:    20 * time.Second,
		StartSpread:    10 * time.Second,
		Rate:           time.Second,
		Seed:           1,
		TempMin:        dc.TempMin,
		TempMax:        dc.TempMax,
		CoAP:           dc.CoAP,
		Logs:           dc.Logs,
	}
}

func (c Config) validate() error {
	switch {
	case c.Devices < 1:
		return fmt.Errorf("simulation: fleet: %w: %d devices", client.ErrBadRequest, c.Devices)
	case c.QueueShare < 0 || c.QueueShare > 1:
		return fmt.Errorf("simulation: fleet: %w: queue share %v is not in 0..1", client.ErrBadRequest, c.QueueShare)
	case !validFailures(c.FirmwareFailures):
		return fmt.Errorf("simulation: fleet: %w: firmware failure shares must be known modes in 0..1 and sum to at most 1", client.ErrBadRequest)
	case c.Server == "" && c.Dial == nil:
		return fmt.Errorf("simulation: fleet: %w: no server", client.ErrBadRequest)
	case c.Lifetime < time.Second:
		return fmt.Errorf("simulation: fleet: %w: lifetime %s", client.ErrBadRequest, c.Lifetime)
	}
	return nil
}

// Stats count what a fleet's devices did.
type Stats struct {
	Devices, Started, Registered                 int
	Registrations, Updates, Deregistrations      uint64
	Failures, Notifications, Sends, SleepPeriods uint64
	// Ack is the acknowledgement latency of confirmable notifications.
	Ack AckStats
}

// Fleet is many simulated devices run from one process.
type Fleet struct {
	cfg     Config
	log     *slog.Logger
	devLog  *slog.Logger // devices' clients log here (quieter for big fleets)
	devices []*Device
	starts  []time.Duration // each device's start offset
	queue   []bool

	started, registered                    atomic.Int64
	regs, updates, deregs, fails, notifies atomic.Uint64
	sends, sleeps                          atomic.Uint64
	acks                                   ackHistogram
	allRegistered                          chan struct{}
	allOnce                                sync.Once
	ackLog                                 *AckLog
}

// Option configures a Fleet.
type Option func(*Fleet)

// WithLogger sets the fleet's logger (component=simulation).
func WithLogger(l *slog.Logger) Option {
	return func(f *Fleet) {
		if l != nil {
			f.log = l.With("component", "simulation")
		}
	}
}

// WithDeviceLog sets the logger the devices' clients use; by default the
// fleet's.
func WithDeviceLog(l *slog.Logger) Option {
	return func(f *Fleet) { f.devLog = l }
}

// WithAckLog records every reading the server acknowledged in l.
func WithAckLog(l *AckLog) Option {
	return func(f *Fleet) { f.ackLog = l }
}

// New builds a fleet and all its devices (not yet started).
func New(cfg Config, opts ...Option) (*Fleet, error) {
	if len(cfg.Endpoints) > 0 {
		cfg.Devices = len(cfg.Endpoints)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, log: slog.New(slog.DiscardHandler), allRegistered: make(chan struct{})}
	for _, o := range opts {
		o(f)
	}
	if f.devLog == nil {
		f.devLog = f.log
	}
	reg := lwm2m.NewRegistry()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	frng := rand.New(rand.NewPCG(cfg.Seed, 0xf1a1)) // firmware failures, apart from the start schedule
	nQueue := int(float64(cfg.Devices)*cfg.QueueShare + 0.5)
	queue := make([]bool, cfg.Devices)
	for _, i := range rng.Perm(cfg.Devices)[:nQueue] {
		queue[i] = true
	}
	f.queue = queue
	width := len(fmt.Sprint(cfg.Devices - 1))
	width = max(width, 4)
	for i := 0; i < cfg.Devices; i++ {
		dc := DefaultDeviceConfig()
		dc.Endpoint = fmt.Sprintf("%s%0*d", cfg.EndpointPrefix, width, i)
		if len(cfg.Endpoints) > 0 {
			dc.Endpoint = cfg.Endpoints[i]
		}
		dc.Server = cfg.Server
		dc.LocalAddr = f.sourceAddr(i)
		dc.Version = cfg.Version
		dc.Lifetime = cfg.Lifetime
		dc.QueueMode = queue[i]
		dc.AwakeWindow = cfg.AwakeWindow
		dc.Seed = cfg.Seed*1_000_003 + uint64(i)
		dc.TempMin, dc.TempMax = cfg.TempMin, cfg.TempMax
		dc.CoAP = cfg.CoAP
		dc.Logs = cfg.Logs
		dc.ConfirmableNotify = cfg.ConfirmableNotify
		dc.FirmwareUpdate = cfg.Firmware
		dc.FirmwareUpdate.Failure = pickFailure(frng.Float64(), cfg.FirmwareFailures)
		dopts := []DeviceOption{WithDeviceRegistry(reg), WithDeviceEvents(f.onEvent), WithDeviceLogger(f.devLog)}
		if cfg.Dial != nil {
			dopts = append(dopts, WithDeviceDial(cfg.Dial))
		}
		d, err := NewDevice(dc, dopts...)
		if err != nil {
			return nil, err
		}
		f.devices = append(f.devices, d)
		var off time.Duration
		if cfg.StartSpread > 0 {
			off = time.Duration(rng.Int64N(int64(cfg.StartSpread)))
		}
		f.starts = append(f.starts, cfg.StartDelay+off)
	}
	return f, nil
}

// sourceAddr picks device i's source address, round robin.
func (f *Fleet) sourceAddr(i int) string {
	if len(f.cfg.SourceAddrs) == 0 {
		return "127.0.0.1:0"
	}
	return netip.AddrPortFrom(f.cfg.SourceAddrs[i%len(f.cfg.SourceAddrs)], 0).String()
}

// Devices returns the fleet's devices.
func (f *Fleet) Devices() []*Device { return f.devices }

// AllRegistered is closed once every device has registered at least once.
func (f *Fleet) AllRegistered() <-chan struct{} { return f.allRegistered }

// Stats returns the fleet's counters.
func (f *Fleet) Stats() Stats {
	return Stats{
		Devices: len(f.devices), Started: int(f.started.Load()), Registered: int(f.registered.Load()),
		Registrations: f.regs.Load(), Updates: f.updates.Load(), Deregistrations: f.deregs.Load(),
		Failures: f.fails.Load(), Notifications: f.notifies.Load(), Sends: f.sends.Load(), SleepPeriods: f.sleeps.Load(),
		Ack: f.acks.stats(),
	}
}

func (f *Fleet) onEvent(e client.Event) {
	if f.ackLog != nil {
		f.ackLog.Record(e)
	}
	switch e.Kind {
	case client.EventRegistered:
		f.regs.Add(1)
	case client.EventUpdated:
		f.updates.Add(1)
	case client.EventDeregistered:
		f.deregs.Add(1)
	case client.EventRegisterFailed, client.EventUpdateFailed:
		f.fails.Add(1)
	case client.EventNotified:
		f.notifies.Add(1)
		if e.Latency > 0 {
			f.acks.add(e.Latency)
		}
	case client.EventSent:
		f.sends.Add(1)
	case client.EventSleeping:
		f.sleeps.Add(1)
	}
}

// tick is the shared ticker's period: each tick steps the devices of one
// slot, so that each device steps once per Rate without a timer of its own.
const tick = 50 * time.Millisecond

// Run starts the devices on their schedule, moves their values, and stops
// them all (each de-registers) when ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstErr error
	var errOnce sync.Once
	startDevice := func(i int) {
		d := f.devices[i]
		f.started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(runCtx); err != nil {
				errOnce.Do(func() { firstErr = err })
				f.log.Error("device stopped", "endpoint", d.Endpoint(), "err", err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-d.client.Registered():
				if f.registered.Add(1) == int64(len(f.devices)) {
					f.allOnce.Do(func() { close(f.allRegistered) })
				}
			case <-runCtx.Done():
			}
		}()
	}
	// Starts and steps share one ticker.
	order := make([]int, len(f.devices))
	for i := range order {
		order[i] = i
	}
	sortByStart(order, f.starts)
	t0 := time.Now()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	next := 0
	slots := 1
	if f.cfg.Rate > tick {
		slots = int(f.cfg.Rate / tick)
	}
	sendSlots := 0
	if f.cfg.SendEvery > 0 {
		sendSlots = max(int(f.cfg.SendEvery/tick), 1)
	}
	logSlots := 0
	if f.cfg.LogSendEvery > 0 {
		logSlots = max(int(f.cfg.LogSendEvery/tick), 1)
	}
	var n int
	f.log.Info("fleet starting", "devices", len(f.devices), "queue_mode", f.queueCount(), "spread", f.cfg.StartSpread)
loop:
	for {
		now := time.Now()
		for next < len(order) && now.Sub(t0) >= f.starts[order[next]] {
			startDevice(order[next])
			next++
		}
		if f.cfg.Rate > 0 {
			for i := n % slots; i < len(f.devices); i += slots {
				if f.isRunning(i) {
					f.devices[i].Step(now)
				}
			}
		}
		if sendSlots > 0 {
			for i := n % sendSlots; i < len(f.devices); i += sendSlots {
				if f.isRunning(i) {
					go f.send(runCtx, f.devices[i])
				}
			}
		}
		if logSlots > 0 {
			for i := n % logSlots; i < len(f.devices); i += logSlots {
				if f.isRunning(i) && f.devices[i].takeLogForSend() {
					go f.sendLogs(runCtx, f.devices[i])
				}
			}
		}
		n++
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
		}
	}
	f.log.Info("fleet stopping", "devices", len(f.devices))
	cancel()
	wg.Wait()
	s := f.Stats()
	f.log.Info("fleet stopped", "registrations", s.Registrations, "updates", s.Updates, "deregistrations", s.Deregistrations,
		"notifications", s.Notifications, "sends", s.Sends, "failures", s.Failures)
	return firstErr
}

// isRunning reports whether device i has registered (stepping a device that
// has not would only spend CPU).
func (f *Fleet) isRunning(i int) bool {
	_, ok := f.devices[i].client.Location()
	return ok
}

func (f *Fleet) send(ctx context.Context, d *Device) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := d.client.Send(sctx, PathTemperature, PathBattery)
	if err != nil && !errors.Is(err, context.Canceled) {
		f.log.Debug("send failed", "endpoint", d.Endpoint(), "err", err)
	}
}

func (f *Fleet) sendLogs(ctx context.Context, d *Device) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.SendLogs(sctx); err != nil && !errors.Is(err, context.Canceled) {
		f.log.Debug("log send failed", "endpoint", d.Endpoint(), "err", err)
	}
}

func (f *Fleet) queueCount() int {
	n := 0
	for _, q := range f.queue {
		if q {
			n++
		}
	}
	return n
}

// sortByStart orders device indexes by start offset, then index.
func sortByStart(order []int, starts []time.Duration) {
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case starts[a] < starts[b]:
			return -1
		case starts[a] > starts[b]:
			return 1
		}
		return a - b
	})
}

var failureModes = []string{FailIntegrity, FailStorage, FailConnection, FailUpdate}

func validFailures(m map[string]float64) bool {
	sum := 0.0
	for k, v := range m {
		if v < 0 || v > 1 || !slices.Contains(failureModes, k) {
			return false
		}
		sum += v
	}
	return sum <= 1
}

// pickFailure maps a uniform draw onto the failure shares, in a fixed
// order so that a seed always gives the same devices the same failures.
func pickFailure(x float64, shares map[string]float64) string {
	acc := 0.0
	for _, m := range failureModes {
		acc += shares[m]
		if x < acc {
			return m
		}
	}
	return FailNone
}
