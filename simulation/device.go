package simulation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// DeviceConfig describes one simulated device.
type DeviceConfig struct {
	// Endpoint is the endpoint client name; required.
	Endpoint string
	// Server is the LwM2M server, "coap://127.0.0.1:5683".
	Server string
	// LocalAddr is the socket's source address, "127.0.0.3:0".
	LocalAddr string
	// Version is the LwM2M version the device speaks.
	Version client.Version
	// Lifetime of the registration.
	Lifetime time.Duration
	// QueueMode and AwakeWindow make the device sleep between uplinks.
	QueueMode   bool
	AwakeWindow time.Duration
	// ConfirmableNotify sends notifications as CON, so the server's
	// acknowledgement (or refusal) of each one is seen.
	ConfirmableNotify bool
	// Seed makes the device's values repeatable.
	Seed uint64
	// TempMin and TempMax bound the temperature random walk (°C).
	TempMin, TempMax float64
	// Firmware is the firmware version the device reports in 3/0/3.
	Firmware string
	// Model is the Model Number the device reports in 3/0/1 (default
	// FN-SIM-9160).
	Model string
	// CoAP holds the transmission parameters.
	CoAP coap.Config
	// Logs shapes what the Event Log (object 20) logs.
	Logs LogConfig
	// FirmwareUpdate is how the device takes firmware (Object 5).
	FirmwareUpdate FirmwareConfig
}

// DefaultDeviceConfig returns a 1.1 UDP device with a 300 s lifetime.
func DefaultDeviceConfig() DeviceConfig {
	cc := client.DefaultConfig()
	return DeviceConfig{
		Version:     client.Version11,
		Lifetime:    300 * time.Second,
		AwakeWindow: 20 * time.Second,
		TempMin:     15,
		TempMax:     30,
		Firmware:    "1.4.2",
		Model:       "FN-SIM-9160",
		CoAP:        cc.CoAP,
		Logs:        DefaultLogConfig(),
	}
}

// Device is one simulated LwM2M device: a client engine with the objects a
// typical Zephyr sensor node has, whose values move on every Step.
type Device struct {
	cfg    DeviceConfig
	client *client.Client
	dial   DialFunc
	log    *slog.Logger

	security, server, device, temp, firmware, eventLog, accel *client.ValueObject

	mu       sync.Mutex
	rng      *rand.Rand
	t        float64 // current temperature
	tMin     float64 // min measured
	tMax     float64 // max measured
	battery  int64
	memFree  int64
	logging  bool
	logData  []byte
	logCount int // lines logged
	logSent  int // logCount at the last log Send
	steps    int // Steps while logging
	reboots  int
	accelXYZ [3]float64
	fw       *fwUpdater
	runCtx   context.Context
}

// runContext is the context of the device's Run (background otherwise),
// for work the device does on its own, like a firmware download.
func (d *Device) runContext() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil {
		return context.Background()
	}
	return d.runCtx
}

// FirmwareVersion is the version the device reports in 3/0/3.
func (d *Device) FirmwareVersion() string {
	v, _ := d.device.Get(pathFWVersion)
	return v.Str()
}

// PackageURI is the last Package URI (5/0/1) written to the device.
func (d *Device) PackageURI() string {
	v, _ := d.firmware.Get(lwm2m.NewPath(objFirmware, 0, 1))
	return v.Str()
}

// FirmwareState returns Object 5's State and Update Result.
func (d *Device) FirmwareState() (state, result int64) {
	s, _ := d.firmware.Get(pathFWState)
	r, _ := d.firmware.Get(pathFWResult)
	return s.Int(), r.Int()
}

// deviceOption configures NewDevice.
type DeviceOption func(*deviceOptions)

type deviceOptions struct {
	log       *slog.Logger
	reg       *lwm2m.Registry
	events    func(client.Event)
	transport coap.Transport
	peer      coap.Peer
	dial      DialFunc
}

// DialFunc makes a device's transport when it starts (lwm2m/dtls plugs in
// here): it gets the device's endpoint name and source address.
type DialFunc func(ctx context.Context, endpoint, local string) (coap.Transport, coap.Peer, error)

// WithDeviceLogger sets the device client's logger.
func WithDeviceLogger(l *slog.Logger) DeviceOption {
	return func(o *deviceOptions) { o.log = l }
}

// WithDeviceRegistry shares one model registry between devices (a fleet
// does, so that thousands of devices hold one copy of the models).
func WithDeviceRegistry(r *lwm2m.Registry) DeviceOption {
	return func(o *deviceOptions) { o.reg = r }
}

// WithDeviceEvents receives the client's events.
func WithDeviceEvents(f func(client.Event)) DeviceOption {
	return func(o *deviceOptions) { o.events = f }
}

// WithDeviceTransport runs the device over t (DTLS, for example) to server.
func WithDeviceTransport(t coap.Transport, server coap.Peer) DeviceOption {
	return func(o *deviceOptions) { o.transport, o.peer = t, server }
}

// WithDeviceDial makes the device's transport with dial when it starts.
func WithDeviceDial(dial DialFunc) DeviceOption {
	return func(o *deviceOptions) { o.dial = dial }
}

// NewDevice builds a device and its objects.
func NewDevice(cfg DeviceConfig, opts ...DeviceOption) (*Device, error) {
	var o deviceOptions
	for _, f := range opts {
		f(&o)
	}
	if o.reg == nil {
		o.reg = lwm2m.NewRegistry()
	}
	if cfg.TempMax <= cfg.TempMin {
		return nil, fmt.Errorf("simulation: device %q: %w: temperature range %v..%v", cfg.Endpoint, client.ErrBadRequest, cfg.TempMin, cfg.TempMax)
	}
	cc := client.DefaultConfig()
	cc.Endpoint = cfg.Endpoint
	cc.Server = cfg.Server
	cc.LocalAddr = cfg.LocalAddr
	if cfg.Version != "" {
		cc.Version = cfg.Version
	}
	cc.Lifetime = cfg.Lifetime
	cc.QueueMode = cfg.QueueMode
	cc.ConfirmableNotify = cfg.ConfirmableNotify
	if cfg.AwakeWindow > 0 {
		cc.AwakeWindow = cfg.AwakeWindow
	}
	cc.CoAP = cfg.CoAP
	copts := []client.Option{client.WithRegistry(o.reg), client.WithLogger(o.log)}
	if o.events != nil {
		copts = append(copts, client.WithEvents(o.events))
	}
	if o.transport != nil {
		copts = append(copts, client.WithTransport(o.transport, o.peer))
	}
	c, err := client.New(cc, copts...)
	if err != nil {
		return nil, fmt.Errorf("simulation: device %q: %w", cfg.Endpoint, err)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	d := &Device{cfg: cfg, client: c, dial: o.dial, log: o.log, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	if err := d.build(o.reg); err != nil {
		return nil, fmt.Errorf("simulation: device %q: %w", cfg.Endpoint, err)
	}
	if err := d.installFirmware(cfg.FirmwareUpdate); err != nil {
		return nil, fmt.Errorf("simulation: device %q: %w", cfg.Endpoint, err)
	}
	return d, nil
}

// Client returns the device's client engine.
func (d *Device) Client() *client.Client { return d.client }

// Endpoint returns the device's endpoint name.
func (d *Device) Endpoint() string { return d.cfg.Endpoint }

// Object returns one of the device's objects by id.
func (d *Device) Object(id uint16) (*client.ValueObject, bool) {
	o, ok := d.client.Tree().Object(id)
	if !ok {
		return nil, false
	}
	vo, ok := o.(*client.ValueObject)
	return vo, ok
}

// Run registers the device and serves the server until ctx ends.
func (d *Device) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
	if d.dial == nil {
		return d.client.Run(ctx)
	}
	// A handshake that fails (server not up yet) is tried again, as a
	// device keeps trying to connect.
	wait := time.Second
	for {
		t, peer, err := d.dial(ctx, d.cfg.Endpoint, d.cfg.LocalAddr)
		if err == nil {
			return d.client.RunOn(ctx, t, peer)
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.Info("connect failed", "endpoint", d.cfg.Endpoint, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

func (d *Device) build(reg *lwm2m.Registry) error {
	var err error
	mk := func(id uint16) *client.ValueObject {
		if err != nil {
			return nil
		}
		var o *client.ValueObject
		o, err = newObject(reg, id)
		return o
	}
	d.security, d.server, d.device = mk(objSecurity), mk(objServer), mk(objDevice)
	d.temp, d.firmware, d.eventLog, d.accel = mk(objTemp), mk(objFirmware), mk(objEventLog), mk(objAccel)
	if err != nil {
		return err
	}
	r := d.rng
	d.logging = d.cfg.Logs.Start
	span := d.cfg.TempMax - d.cfg.TempMin
	d.t = round2(d.cfg.TempMin + span*(0.3+0.4*r.Float64()))
	d.tMin, d.tMax = d.t, d.t
	d.battery = 60 + int64(r.IntN(41))
	d.memFree = 96 + int64(r.IntN(64))
	d.accelXYZ = [3]float64{0, 0, 1}
	serial := fmt.Sprintf("FN%08X", uint32(d.cfg.Seed))
	model := d.cfg.Model
	if model == "" {
		model = "FN-SIM-9160"
	}
	binding := "U"
	if d.cfg.QueueMode {
		binding = "UQ"
	}
	lifetime := int64(d.cfg.Lifetime / time.Second)

	steps := []error{
		d.security.AddInstance(0, map[uint16]lwm2m.Value{
			0: lwm2m.String(d.cfg.Server), 1: lwm2m.Bool(false), 2: lwm2m.Int(3), 10: lwm2m.Int(1),
		}),
		d.server.AddInstance(0, map[uint16]lwm2m.Value{
			0: lwm2m.Int(1), 1: lwm2m.Int(lifetime), 2: lwm2m.Int(0), 3: lwm2m.Int(0),
			6: lwm2m.Bool(true), 7: lwm2m.String(binding),
		}),
		d.device.AddInstance(0, map[uint16]lwm2m.Value{
			0: lwm2m.String("FlowNexus Labs"), 1: lwm2m.String(model), 2: lwm2m.String(serial),
			3: lwm2m.String(d.cfg.Firmware), 9: lwm2m.Int(d.battery), 10: lwm2m.Int(d.memFree),
			14: lwm2m.String("+00:00"), 15: lwm2m.String("Etc/UTC"), 16: lwm2m.String(binding),
			17: lwm2m.String("sensor node"), 18: lwm2m.String("1.0"), 19: lwm2m.String("zephyr-3.7"),
			20: lwm2m.Int(0), 21: lwm2m.Int(256),
		}),
		d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 6), map[uint16]lwm2m.Value{0: lwm2m.Int(1), 1: lwm2m.Int(5)}),
		d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 7), map[uint16]lwm2m.Value{0: lwm2m.Int(3700), 1: lwm2m.Int(5000)}),
		d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 8), map[uint16]lwm2m.Value{0: lwm2m.Int(12), 1: lwm2m.Int(80)}),
		d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 11), map[uint16]lwm2m.Value{0: lwm2m.Int(0)}),
		d.temp.AddInstance(0, map[uint16]lwm2m.Value{
			resSensor: lwm2m.Float(d.t), resUnits: lwm2m.String("Cel"), resMinMeas: lwm2m.Float(d.t), resMaxMeas: lwm2m.Float(d.t),
			resMinRange: lwm2m.Float(d.cfg.TempMin), resMaxRange: lwm2m.Float(d.cfg.TempMax),
		}),
		d.firmware.AddInstance(0, map[uint16]lwm2m.Value{
			1: lwm2m.String(""), 3: lwm2m.Int(0), 5: lwm2m.Int(0), 6: lwm2m.String("fn-sim"), 7: lwm2m.String(d.cfg.Firmware),
			9: lwm2m.Int(2),
		}),
		// Protocols: CoAP, CoAPS, HTTP 1.1, HTTPS 1.1 (Object 5 resource 8).
		d.firmware.SetMulti(lwm2m.NewPath(objFirmware, 0, 8), map[uint16]lwm2m.Value{0: lwm2m.Int(0), 1: lwm2m.Int(1), 2: lwm2m.Int(2), 3: lwm2m.Int(3)}),
		d.eventLog.AddInstance(0, map[uint16]lwm2m.Value{
			4010: lwm2m.Int(0), 4013: lwm2m.Int(logStatus(d.cfg.Logs.Start, false)), 4014: lwm2m.Opaque(nil),
			4015: lwm2m.Int(int64(d.cfg.Logs.Format)),
		}),
		d.accel.AddInstance(0, map[uint16]lwm2m.Value{
			resX: lwm2m.Float(0), resY: lwm2m.Float(0), resZ: lwm2m.Float(1), resUnits: lwm2m.String("g"),
			resMinRange: lwm2m.Float(-2), resMaxRange: lwm2m.Float(2),
		}),
	}
	if err := errors.Join(steps...); err != nil {
		return err
	}
	d.device.OnRead(13, func(uint16) lwm2m.Value { return lwm2m.Time(time.Now()) })
	d.device.OnExecute(4, func(uint16, string) error { d.reboot(); return nil })
	d.device.OnExecute(5, func(uint16, string) error { d.factoryReset(); return nil })
	d.device.OnExecute(12, func(uint16, string) error {
		return d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 11), map[uint16]lwm2m.Value{0: lwm2m.Int(0)})
	})
	d.server.OnExecute(8, func(uint16, string) error { d.client.TriggerUpdate(); return nil })
	d.server.OnWrite(func(p lwm2m.Path, v lwm2m.Value) error {
		if p.ResourceID() == 1 {
			// A new Lifetime goes to the server with the next Update.
			if err := d.client.SetLifetime(time.Duration(v.Int()) * time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	d.temp.OnExecute(resResetMM, func(inst uint16, _ string) error {
		d.mu.Lock()
		d.tMin, d.tMax = d.t, d.t
		t := d.t
		d.mu.Unlock()
		return errors.Join(
			d.temp.Set(lwm2m.NewPath(objTemp, inst, resMinMeas), lwm2m.Float(t)),
			d.temp.Set(lwm2m.NewPath(objTemp, inst, resMaxMeas), lwm2m.Float(t)))
	})
	d.eventLog.OnExecute(4011, func(uint16, string) error { return d.setLogging(true) })
	d.eventLog.OnExecute(4012, func(uint16, string) error { return d.setLogging(false) })
	return d.client.Tree().Add(d.security, d.server, d.device, d.temp, d.firmware, d.eventLog, d.accel)
}

// reboot behaves like a device restart: error codes cleared, the
// registration renewed with a fresh Register.
func (d *Device) reboot() {
	d.mu.Lock()
	d.reboots++
	d.mu.Unlock()
	_ = d.device.SetMulti(lwm2m.NewPath(objDevice, 0, 11), map[uint16]lwm2m.Value{0: lwm2m.Int(0)})
	// The Execute is acknowledged first; the fresh Register follows.
	d.client.TriggerRegister()
}

func (d *Device) factoryReset() {
	d.mu.Lock()
	d.logging, d.logData = false, nil
	d.mu.Unlock()
	_ = d.device.Set(lwm2m.NewPath(objDevice, 0, 14), lwm2m.String("+00:00"))
	_ = d.device.Set(lwm2m.NewPath(objDevice, 0, 15), lwm2m.String("Etc/UTC"))
	_ = d.eventLog.Set(lwm2m.NewPath(objEventLog, 0, 4013), lwm2m.Int(logStatus(false, false)))
	_ = d.eventLog.Set(lwm2m.NewPath(objEventLog, 0, 4014), lwm2m.Opaque(nil))
}

// Reboots counts executed reboots.
func (d *Device) Reboots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reboots
}

// Temperature returns the current temperature.
func (d *Device) Temperature() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t
}

// Step moves the device's values one sample on: the temperature takes a
// bounded random-walk step (with min/max measured), the accelerometer
// jitters around 1 g, battery and free memory drift, the event log records
// a line when logging. Observers of changed values are notified.
func (d *Device) Step(now time.Time) {
	d.mu.Lock()
	r := d.rng
	step := r.NormFloat64() * 0.25
	t := d.t + step
	if t < d.cfg.TempMin || t > d.cfg.TempMax {
		t = d.t - step // reflect at the range bounds
	}
	t = round2(math.Min(math.Max(t, d.cfg.TempMin), d.cfg.TempMax))
	d.t = t
	newMin, newMax := t < d.tMin, t > d.tMax
	d.tMin, d.tMax = math.Min(d.tMin, t), math.Max(d.tMax, t)
	tMin, tMax := d.tMin, d.tMax
	for i := range d.accelXYZ {
		base := 0.0
		if i == 2 {
			base = 1
		}
		d.accelXYZ[i] = round3(base + r.NormFloat64()*0.02)
	}
	xyz := d.accelXYZ
	if r.IntN(600) == 0 && d.battery > 1 {
		d.battery--
	}
	battery := d.battery
	d.memFree = min(max(d.memFree+int64(r.IntN(5))-2, 32), 200)
	mem := d.memFree
	logData := d.logStep(now, t)
	d.mu.Unlock()

	temps := []lwm2m.Record{{Path: PathTemperature, Value: lwm2m.Float(t)}}
	if newMin {
		temps = append(temps, lwm2m.Record{Path: lwm2m.NewPath(objTemp, 0, resMinMeas), Value: lwm2m.Float(tMin)})
	}
	if newMax {
		temps = append(temps, lwm2m.Record{Path: lwm2m.NewPath(objTemp, 0, resMaxMeas), Value: lwm2m.Float(tMax)})
	}
	_ = d.temp.SetValues(temps...)
	_ = d.accel.SetValues(
		lwm2m.Record{Path: PathAccelX, Value: lwm2m.Float(xyz[0])},
		lwm2m.Record{Path: PathAccelY, Value: lwm2m.Float(xyz[1])},
		lwm2m.Record{Path: PathAccelZ, Value: lwm2m.Float(xyz[2])})
	_ = d.device.SetValues(
		lwm2m.Record{Path: PathBattery, Value: lwm2m.Int(battery)},
		lwm2m.Record{Path: lwm2m.NewPath(objDevice, 0, 10), Value: lwm2m.Int(mem)})
	if logData != nil {
		_ = d.eventLog.SetValues(
			lwm2m.Record{Path: PathLogData, Value: lwm2m.Opaque(logData)},
			lwm2m.Record{Path: eventLogPath.Append(4013), Value: lwm2m.Int(logStatus(true, true))})
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
