package firmware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// Config is the firmware service's policy.
type Config struct {
	// Advertise is the host (name or address) Package URIs name; empty:
	// the address on which the device reached the appliance.
	Advertise string
	// SweepInterval is how often open deployments are looked at without
	// a device event: timeouts, devices that refuse Observe, lost kicks.
	SweepInterval time.Duration
	// DeviceTimeout is the default time one device may take per step.
	DeviceTimeout time.Duration
	// MaxConcurrent is the default number of devices under way at once.
	MaxConcurrent int
	// FailureThreshold is the default failed share that halts a
	// deployment (0: never).
	FailureThreshold float64
	// RequestTimeout bounds one request to a device.
	RequestTimeout time.Duration
}

// DefaultConfig returns the defaults: a 30-minute step timeout, 50 devices
// at once, no automatic halt.
func DefaultConfig() Config {
	return Config{SweepInterval: 15 * time.Second, DeviceTimeout: 30 * time.Minute, MaxConcurrent: 50, RequestTimeout: 2 * time.Minute}
}

// Devices is what the service needs from the LwM2M side: registrations,
// whether a (queue-mode) device listens now, and the device management
// requests of lwm2m/server.Server.
type Devices interface {
	Registration(endpoint string) (*server.Registration, bool)
	Reachable(endpoint string) bool
	Read(ctx context.Context, endpoint string, p lwm2m.Path, accept lwm2m.Format) ([]lwm2m.Record, error)
	Write(ctx context.Context, endpoint string, p lwm2m.Path, f lwm2m.Format, recs []lwm2m.Record, replace bool) error
	Execute(ctx context.Context, endpoint string, p lwm2m.Path, args string) error
	Observe(ctx context.Context, endpoint string, p lwm2m.Path, accept lwm2m.Format) (*server.Observation, []lwm2m.Record, error)
}

// Listeners are the appliance's bound addresses that Package URIs may
// name (empty: that transport is off).
type Listeners struct {
	CoAP, CoAPS, HTTP, HTTPS string
}

// Service is the firmware server and update orchestrator: it serves images
// to devices with an active deployment (CoAP Block2 and HTTP Range) and
// drives each device of a deployment through Object 5, one step whenever
// the device is awake. Its state lives in store, so a restart resumes
// every device where it was.
type Service struct {
	cfg Config
	db  *store.DB
	lib *Library
	dev Devices
	log *slog.Logger
	// changed is told about every device state change and progress flush.
	changed func(store.DeploymentDevice)

	kick  chan string
	kicks atomic.Int64 // Kick calls, for the tests that count work

	mu        sync.Mutex
	listeners Listeners
	running   map[string]bool
	again     map[string]bool
	images    map[string]store.Firmware // by id and by SHA-256
	watched   watched                   // endpoints with open deployments (watch.go)
	startMu   sync.Mutex                // one device starts at a time (concurrency limit)

	access *grants
	served serveCounters // blocks and bytes handed out (stats.go)
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) {
		if l != nil {
			s.log = l.With("component", "firmware")
		}
	}
}

// WithChanged is called after every change of a device's deployment state
// or progress (the web UI's live feed).
func WithChanged(f func(store.DeploymentDevice)) Option {
	return func(s *Service) {
		if f != nil {
			s.changed = f
		}
	}
}

// New returns a service over the library; start it with Run.
func New(cfg Config, db *store.DB, lib *Library, dev Devices, opts ...Option) *Service {
	d := DefaultConfig()
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = d.SweepInterval
	}
	if cfg.DeviceTimeout <= 0 {
		cfg.DeviceTimeout = d.DeviceTimeout
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = d.MaxConcurrent
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	s := &Service{cfg: cfg, db: db, lib: lib, dev: dev, log: slog.New(slog.DiscardHandler), changed: func(store.DeploymentDevice) {},
		kick: make(chan string, 4096), running: map[string]bool{}, again: map[string]bool{}, images: map[string]store.Firmware{},
		watched: watched{eps: map[string]uint64{}}, access: newGrants()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Library returns the image library.
func (s *Service) Library() *Library { return s.lib }

// SetListeners tells the service where the appliance listens (after the
// sockets are bound).
func (s *Service) SetListeners(l Listeners) {
	s.mu.Lock()
	s.listeners = l
	s.mu.Unlock()
}

// Run restores the download permissions of devices under way, then steps
// devices as events and the periodic sweep ask, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.restore(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	s.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			s.flushProgress(context.WithoutCancel(ctx))
			return nil
		case ep := <-s.kick:
			s.start(ctx, &wg, ep)
		case <-t.C:
			s.sweep(ctx)
		}
	}
}

// restore rebuilds the in-memory download permissions from the store.
func (s *Service) restore(ctx context.Context) error {
	open, err := s.db.OpenDeploymentDevices(ctx, "")
	if err != nil {
		return fmt.Errorf("firmware: resume deployments: %w", err)
	}
	n := 0
	for _, dd := range open {
		s.watch(dd.Endpoint)
		if dd.State != store.DeviceDownloading && dd.State != store.DeviceDownloaded {
			continue
		}
		fw, err := s.image(ctx, fmt.Sprint(dd.FirmwareID))
		if err != nil {
			continue
		}
		s.access.add(dd, fw)
		n++
	}
	if len(open) > 0 {
		s.log.Info("resumed deployments", "devices", len(open), "downloads", n)
	}
	return nil
}

func (s *Service) sweep(ctx context.Context) {
	s.flushProgress(ctx)
	open, err := s.db.OpenDeploymentDevices(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("sweep", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, dd := range open {
		if !seen[dd.Endpoint] {
			seen[dd.Endpoint] = true
			s.watch(dd.Endpoint)
			s.Kick(dd.Endpoint)
		}
	}
}

// Kick asks the service to look at an endpoint's deployments.
func (s *Service) Kick(endpoint string) {
	s.kicks.Add(1)
	select {
	case s.kick <- endpoint:
	default: // the sweep catches up
	}
}

// Kicks counts the looks at an endpoint asked for so far.
func (s *Service) Kicks() int64 { return s.kicks.Load() }

// Uplink tells the service that a device registered or updated its
// registration: it is awake, and may have come back from an update. A
// device with no open deployment costs a map lookup.
func (s *Service) Uplink(endpoint string) {
	if _, ok := s.watching(endpoint); ok {
		s.Kick(endpoint)
	}
}

// Values tells the service about values a device reported; Object 5 State
// or Update Result and the firmware version move its deployment on.
func (s *Service) Values(endpoint string, recs []lwm2m.Record) {
	for _, r := range recs {
		if r.Path.ObjectID() == 5 || (r.Path.ObjectID() == 3 && r.Path.Len() >= 3 && r.Path.ResourceID() == 3) {
			s.Uplink(endpoint)
			return
		}
	}
}

func (s *Service) start(ctx context.Context, wg *sync.WaitGroup, ep string) {
	s.mu.Lock()
	if s.running[ep] {
		s.again[ep] = true
		s.mu.Unlock()
		return
	}
	s.running[ep] = true
	s.mu.Unlock()
	wg.Go(func() {
		for {
			s.step(ctx, ep)
			s.mu.Lock()
			if !s.again[ep] || ctx.Err() != nil {
				delete(s.running, ep)
				delete(s.again, ep)
				s.mu.Unlock()
				return
			}
			s.again[ep] = false
			s.mu.Unlock()
		}
	})
}

// image returns an image's metadata by id or SHA-256, cached.
func (s *Service) image(ctx context.Context, key string) (store.Firmware, error) {
	s.mu.Lock()
	f, ok := s.images[key]
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := s.lib.Image(ctx, key)
	if err != nil {
		return f, err
	}
	s.mu.Lock()
	s.images[fmt.Sprint(f.ID)] = f
	s.images[f.SHA256] = f
	s.mu.Unlock()
	return f, nil
}

// DeleteImage removes an image from the library; ErrConflict while a
// deployment refers to it.
func (s *Service) DeleteImage(ctx context.Context, key string) error {
	f, err := s.image(ctx, key)
	if err != nil {
		return err
	}
	if err := s.lib.Delete(ctx, f.ID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.images, fmt.Sprint(f.ID))
	delete(s.images, f.SHA256)
	s.mu.Unlock()
	return nil
}

// DeployRequest is a deployment's devices and policy; zero values take the
// service's defaults.
type DeployRequest struct {
	Endpoints        []string
	MaxConcurrent    int
	DeviceTimeout    time.Duration
	FailureThreshold float64
}

// Deploy starts a deployment of an image (by id or SHA-256). An unknown
// image or endpoint wraps store.ErrNotFound and writes nothing.
func (s *Service) Deploy(ctx context.Context, imageKey string, req DeployRequest) (store.Deployment, error) {
	f, err := s.image(ctx, imageKey)
	if err != nil {
		return store.Deployment{}, err
	}
	if req.MaxConcurrent == 0 {
		req.MaxConcurrent = s.cfg.MaxConcurrent
	}
	if req.DeviceTimeout == 0 {
		req.DeviceTimeout = s.cfg.DeviceTimeout
	}
	if req.FailureThreshold == 0 {
		req.FailureThreshold = s.cfg.FailureThreshold
	}
	seen := map[string]bool{}
	eps := make([]string, 0, len(req.Endpoints))
	for _, ep := range req.Endpoints {
		if ep == "" {
			return store.Deployment{}, fmt.Errorf("firmware: deploy: %w: empty endpoint name", store.ErrInvalid)
		}
		if !seen[ep] {
			seen[ep] = true
			eps = append(eps, ep)
		}
	}
	dep, err := s.db.CreateDeploymentSpec(ctx, store.DeploymentSpec{FirmwareID: f.ID, Endpoints: eps,
		MaxConcurrent: req.MaxConcurrent, DeviceTimeout: req.DeviceTimeout, FailureThreshold: req.FailureThreshold})
	if err != nil {
		return store.Deployment{}, err
	}
	s.log.Info("deployment started", "id", dep.ID, "image", f.ID, "version", f.Version, "devices", len(eps))
	s.watch(eps...)
	for _, ep := range eps {
		s.Kick(ep)
	}
	return dep, nil
}

// Deployment returns a deployment with the live download progress.
func (s *Service) Deployment(ctx context.Context, id int64) (store.Deployment, error) {
	dep, err := s.db.Deployment(ctx, id)
	if err != nil {
		return dep, err
	}
	for i := range dep.Devices {
		if p := s.access.progressOf(id, dep.Devices[i].Endpoint); p > dep.Devices[i].Progress {
			dep.Devices[i].Progress = p
		}
	}
	return dep, nil
}

// Cancel stops a deployment: devices not yet updating fail as cancelled
// and, when they had a Package URI, get an empty one, which sets Object 5
// back to Idle (E.6). Devices already installing finish.
func (s *Service) Cancel(ctx context.Context, id int64) error {
	dep, err := s.db.Deployment(ctx, id)
	if err != nil {
		return err
	}
	if dep.Status == store.DeploymentDone || dep.Status == store.DeploymentCancelled {
		return fmt.Errorf("firmware: deployment %d is %s: %w", id, dep.Status, store.ErrConflict)
	}
	if err := s.db.SetDeploymentStatusReason(ctx, id, store.DeploymentCancelled, "cancelled by an operator"); err != nil {
		return err
	}
	for _, dd := range dep.Devices {
		switch dd.State {
		case store.DevicePending:
			s.fail(ctx, dd, id, "cancelled before it started", 0, false)
		case store.DeviceDownloading, store.DeviceDownloaded:
			dd.DeploymentID = id
			s.fail(ctx, dd, id, "cancelled; the device was told to drop the package", 0, true)
		}
	}
	s.log.Info("deployment cancelled", "id", id)
	return nil
}

// Retry puts a deployment's failed devices back in line.
func (s *Service) Retry(ctx context.Context, id int64) (int, error) {
	n, err := s.db.RetryDeployment(ctx, id)
	if err != nil {
		return 0, err
	}
	dep, err := s.db.Deployment(ctx, id)
	if err == nil {
		for _, dd := range dep.Devices {
			if dd.State == store.DevicePending {
				s.access.resetProgress(id, dd.Endpoint)
				s.watch(dd.Endpoint)
				s.Kick(dd.Endpoint)
			}
		}
	}
	return n, nil
}

// fail ends a device's part in failure, withdraws its download
// permission, and (reset) writes an empty Package URI when it listens.
func (s *Service) fail(ctx context.Context, dd store.DeploymentDevice, depID int64, reason string, result int, reset bool) {
	s.access.remove(depID, dd.Endpoint)
	if err := s.db.UpdateDeploymentDevice(ctx, depID, dd.Endpoint, store.DeviceChange{State: store.DeviceFailed, Result: result, Error: reason}); err != nil {
		s.log.Warn("device state not recorded", "deployment", depID, "endpoint", dd.Endpoint, "err", err)
		return
	}
	s.log.Info("device update failed", "deployment", depID, "endpoint", dd.Endpoint, "reason", reason)
	dd.DeploymentID, dd.State, dd.Result, dd.Error = depID, store.DeviceFailed, result, reason
	s.changed(dd)
	if reset && s.dev.Reachable(dd.Endpoint) {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		if err := s.writeURI(rctx, dd.Endpoint, ""); err != nil {
			s.log.Info("package URI not reset", "endpoint", dd.Endpoint, "err", err)
		}
	}
	s.checkHalt(ctx, depID)
}

// checkHalt halts a running deployment whose failed share passed its
// threshold, and closes one whose devices have all finished.
func (s *Service) checkHalt(ctx context.Context, id int64) {
	dep, err := s.db.DeploymentHeader(ctx, id)
	if err != nil {
		return
	}
	counts, err := s.db.DeploymentCounts(ctx, id)
	if err != nil {
		return
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	failed := counts[store.DeviceFailed]
	open := total - failed - counts[store.DeviceSucceeded]
	switch {
	case dep.Status == store.DeploymentRunning && dep.FailureThreshold > 0 && total > 0 &&
		float64(failed)/float64(total) > dep.FailureThreshold && open > 0:
		reason := fmt.Sprintf("halted: %d of %d devices failed (%.0f%%), more than the threshold of %.0f%%; devices already under way finish, the others wait for a retry",
			failed, total, 100*float64(failed)/float64(total), 100*dep.FailureThreshold)
		if err := s.db.SetDeploymentStatusReason(ctx, id, store.DeploymentHalted, reason); err == nil {
			s.log.Warn("deployment halted", "id", id, "failed", failed, "total", total)
			s.changed(store.DeploymentDevice{DeploymentID: id, DeploymentStatus: store.DeploymentHalted})
		}
	case open == 0 && (dep.Status == store.DeploymentRunning || dep.Status == store.DeploymentHalted):
		reason := fmt.Sprintf("%d succeeded, %d failed", counts[store.DeviceSucceeded], failed)
		if err := s.db.SetDeploymentStatusReason(ctx, id, store.DeploymentDone, reason); err == nil {
			s.log.Info("deployment done", "id", id, "succeeded", counts[store.DeviceSucceeded], "failed", failed)
			s.changed(store.DeploymentDevice{DeploymentID: id, DeploymentStatus: store.DeploymentDone})
		}
	}
}

func (s *Service) flushProgress(ctx context.Context) {
	for _, p := range s.access.dirtyProgress() {
		if err := s.db.SetDeploymentProgress(ctx, p.dep, p.ep, p.bytes); err != nil && !errors.Is(err, store.ErrClosed) {
			s.log.Debug("progress not recorded", "err", err)
			continue
		}
		s.changed(store.DeploymentDevice{DeploymentID: p.dep, Endpoint: p.ep, State: store.DeviceDownloading, Progress: p.bytes})
	}
}

// Deployments lists deployments newest first, with their devices.
func (s *Service) Deployments(ctx context.Context) ([]store.Deployment, error) {
	list, err := s.db.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]store.Deployment, 0, len(list))
	for _, d := range list {
		full, err := s.Deployment(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, full)
	}
	return out, nil
}

// History is an endpoint's part in every deployment, newest first.
func (s *Service) History(ctx context.Context, endpoint string) ([]store.DeploymentDevice, error) {
	if _, err := s.db.Endpoint(ctx, endpoint); err != nil {
		return nil, err
	}
	return s.db.DeploymentHistory(ctx, endpoint)
}
