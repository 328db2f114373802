package firmware

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

var (
	pathObject5   = lwm2m.NewPath(5, 0)
	pathPackage   = lwm2m.NewPath(5, 0, resPackage)
	pathURI       = lwm2m.NewPath(5, 0, resPackageURI)
	pathUpdate    = lwm2m.NewPath(5, 0, resUpdate)
	pathState     = lwm2m.NewPath(5, 0, resState)
	pathResult    = lwm2m.NewPath(5, 0, resUpdateResult)
	pathFWVersion = lwm2m.NewPath(3, 0, 3)
)

// fwState is what a device's Object 5 (and 3/0/3) said.
type fwState struct {
	state, result    int64
	pkgVersion       string
	protocols        []int64
	delivery         int64
	haveDelivery     bool
	firmwareVersion  string
	haveFirmwareVers bool
}

func parseState(recs []lwm2m.Record) fwState {
	var st fwState
	for _, r := range recs {
		p := r.Path
		switch {
		case p.ObjectID() == 3 && p.Len() >= 3 && p.ResourceID() == 3:
			st.firmwareVersion, st.haveFirmwareVers = r.Value.Str(), true
		case p.ObjectID() != 5 || p.Len() < 3:
		case p.ResourceID() == resState:
			st.state = r.Value.Int()
		case p.ResourceID() == resUpdateResult:
			st.result = r.Value.Int()
		case p.ResourceID() == resPkgVersion:
			st.pkgVersion = r.Value.Str()
		case p.ResourceID() == resProtocolSupport:
			st.protocols = append(st.protocols, r.Value.Int())
		case p.ResourceID() == resDeliveryMethod:
			st.delivery, st.haveDelivery = r.Value.Int(), true
		}
	}
	return st
}

// step moves each open deployment of an endpoint on as far as the device
// allows now. Every decision rests on what the device reports at this
// moment, so a step repeated after a restart or a lost answer is harmless.
func (s *Service) step(ctx context.Context, ep string) {
	g, _ := s.watching(ep)
	open, err := s.db.OpenDeploymentDevices(ctx, ep)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("deployments of device", "endpoint", ep, "err", err)
		}
		return
	}
	if len(open) == 0 {
		s.unwatch(ep, g)
		return
	}
	busy := false
	for _, dd := range open {
		if dd.State != store.DevicePending {
			busy = true
		}
	}
	for _, dd := range open {
		if ctx.Err() != nil {
			return
		}
		if dd.State == store.DevicePending && busy {
			continue // one update at a time per device
		}
		if s.stepDevice(ctx, dd) {
			busy = true
		}
	}
}

// stepDevice runs one device's next step; it reports whether the device
// is now under way.
func (s *Service) stepDevice(ctx context.Context, dd store.DeploymentDevice) bool {
	dep, err := s.db.DeploymentHeader(ctx, dd.DeploymentID)
	if err != nil {
		return false
	}
	fw, err := s.image(ctx, fmt.Sprint(dd.FirmwareID))
	if err != nil {
		s.fail(ctx, dd, dd.DeploymentID, "the image is no longer in the library", 0, true)
		return false
	}
	if dd.State != store.DevicePending && dep.DeviceTimeout > 0 && !dd.Started.IsZero() && time.Since(dd.Started) > dep.DeviceTimeout {
		s.fail(ctx, dd, dd.DeploymentID, fmt.Sprintf("timed out after %s while %s", dep.DeviceTimeout, dd.State), 0, dd.State != store.DeviceUpdating)
		return false
	}
	if !s.dev.Reachable(dd.Endpoint) {
		return dd.State != store.DevicePending
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if dd.State == store.DevicePending {
		if dep.Status != store.DeploymentRunning {
			return false
		}
		return s.begin(rctx, dep, dd, fw)
	}
	recs, err := s.dev.Read(rctx, dd.Endpoint, pathObject5, lwm2m.FormatNone)
	if err != nil {
		s.log.Info("firmware state read failed", "endpoint", dd.Endpoint, "err", err)
		return true
	}
	st := parseState(recs)
	if dd.State == store.DeviceUpdating || st.result == ResultSuccess {
		if v, err := s.dev.Read(rctx, dd.Endpoint, pathFWVersion, lwm2m.FormatNone); err == nil {
			vs := parseState(v)
			st.firmwareVersion, st.haveFirmwareVers = vs.firmwareVersion, vs.haveFirmwareVers
		}
	}
	return s.advance(rctx, dd, fw, st)
}

// advance applies what the device reported (E.6's state machine).
func (s *Service) advance(ctx context.Context, dd store.DeploymentDevice, fw store.Firmware, st fwState) bool {
	id := dd.DeploymentID
	switch {
	case failedResult(st.result):
		s.fail(ctx, dd, id, fmt.Sprintf("update result %d: %s", st.result, ResultMessage(st.result)), int(st.result), false)
		return false
	case st.result == ResultSuccess:
		if st.firmwareVersion == fw.Version || st.pkgVersion == fw.Version {
			s.access.remove(id, dd.Endpoint)
			s.set(ctx, dd, store.DeviceChange{State: store.DeviceSucceeded, Result: ResultSuccess})
			s.checkHalt(ctx, id)
			return false
		}
		s.fail(ctx, dd, id, fmt.Sprintf("the device reports success but runs version %q (package %q), not %q", st.firmwareVersion, st.pkgVersion, fw.Version), ResultSuccess, false)
		return false
	}
	switch st.state {
	case StateDownloading:
		if dd.State != store.DeviceDownloading {
			s.set(ctx, dd, store.DeviceChange{State: store.DeviceDownloading, Result: int(st.result)})
		}
	case StateDownloaded:
		if dd.State == store.DeviceDownloading {
			s.set(ctx, dd, store.DeviceChange{State: store.DeviceDownloaded, Result: int(st.result), Restart: true})
			dd.State = store.DeviceDownloaded
		}
		if st.result == ResultDeferred {
			return true // the device's user postponed it; it updates on its own
		}
		if dd.State == store.DeviceDownloaded {
			s.update(ctx, dd)
		}
	case StateUpdating:
		if dd.State != store.DeviceUpdating {
			s.set(ctx, dd, store.DeviceChange{State: store.DeviceUpdating, Restart: true})
		}
	case StateIdle:
		if dd.State == store.DeviceDownloaded || dd.State == store.DeviceUpdating {
			// Idle without a result after the download: the device
			// dropped the package (a reset, a reboot without update).
			s.fail(ctx, dd, id, fmt.Sprintf("the device went back to Idle (%s) without reporting a result", StateMessage(st.state)), int(st.result), false)
			return false
		}
	}
	return true
}

// update executes 5/0/2, which E.6 allows only in state Downloaded.
func (s *Service) update(ctx context.Context, dd store.DeploymentDevice) {
	err := s.dev.Execute(ctx, dd.Endpoint, pathUpdate, "")
	switch {
	case err == nil:
		s.access.remove(dd.DeploymentID, dd.Endpoint)
		s.set(ctx, dd, store.DeviceChange{State: store.DeviceUpdating, Restart: true})
	case retryable(err):
		s.log.Info("update command not delivered; next uplink", "endpoint", dd.Endpoint, "err", err)
	default:
		s.fail(ctx, dd, dd.DeploymentID, "the device refused the Update command: "+err.Error(), 0, true)
	}
}

// begin starts a pending device when the deployment has room: it reads
// Object 5, picks pull or push, grants the download and hands the device
// its Package URI (or the package itself).
func (s *Service) begin(ctx context.Context, dep store.Deployment, dd store.DeploymentDevice, fw store.Firmware) bool {
	reg, ok := s.dev.Registration(dd.Endpoint)
	if !ok {
		return false
	}
	if !s.reserve(ctx, dep, dd) {
		return false
	}
	recs, err := s.dev.Read(ctx, dd.Endpoint, pathObject5, lwm2m.FormatNone)
	switch {
	case errors.Is(err, server.ErrNotFound):
		s.fail(ctx, dd, dep.ID, "the device has no Firmware Update object (5/0)", 0, false)
		return false
	case err != nil:
		s.unreserve(ctx, dd, "reading 5/0: "+err.Error())
		return false
	}
	st := parseState(recs)
	method := s.chooseMethod(reg, st.protocols, st.delivery, st.haveDelivery)
	if method == "" {
		s.fail(ctx, dd, dep.ID, fmt.Sprintf("the device supports none of the appliance's download protocols (5/0/8 = %v)", st.protocols), 0, false)
		return false
	}
	if st.state != StateIdle {
		// A package of an earlier attempt: reset to Idle first (E.6).
		_ = s.writeURI(ctx, dd.Endpoint, "")
	}
	s.set(ctx, dd, store.DeviceChange{State: store.DeviceDownloading, Method: method, Restart: true, ResetProgress: true,
		FromVersion: s.fromVersion(ctx, dd)})
	dd.Progress = 0
	s.access.add(dd, fw)
	// Observe State and Update Result; a device that refuses is read on
	// every uplink and sweep instead.
	for _, p := range []lwm2m.Path{pathState, pathResult} {
		if _, _, err := s.dev.Observe(ctx, dd.Endpoint, p, lwm2m.FormatNone); err != nil {
			s.log.Debug("observe refused; falling back to reads", "endpoint", dd.Endpoint, "path", p, "err", err)
		}
	}
	if method == MethodPush {
		err = s.push(ctx, dd, fw)
	} else {
		var uri string
		if uri, err = s.packageURI(reg, method, fw, dd.Token); err != nil {
			s.fail(ctx, dd, dep.ID, err.Error(), 0, false)
			return false
		}
		err = s.writeURI(ctx, dd.Endpoint, uri)
	}
	switch {
	case err == nil:
		s.log.Info("device update started", "deployment", dep.ID, "endpoint", dd.Endpoint, "method", method)
		return true
	case retryable(err):
		s.access.remove(dep.ID, dd.Endpoint)
		s.unreserve(ctx, dd, "the device did not answer; it gets the package at its next uplink")
		return false
	default:
		s.fail(ctx, dd, dep.ID, fmt.Sprintf("the device refused the %s: %v", map[bool]string{true: "package", false: "Package URI"}[method == MethodPush], err), 0, false)
		return false
	}
}

// fromVersion is the version the device runs before its update, read
// from 3/0/3 when the deployment was created before the appliance knew it
// (a device deployed to right after its first registration); "" when it
// is known already or the device does not say.
func (s *Service) fromVersion(ctx context.Context, dd store.DeploymentDevice) string {
	if dd.FromVersion != "" {
		return ""
	}
	recs, err := s.dev.Read(ctx, dd.Endpoint, pathFWVersion, lwm2m.FormatNone)
	if err != nil {
		return ""
	}
	return parseState(recs).firmwareVersion
}

// reserve takes one of the deployment's concurrent slots by marking the
// device downloading; false when all are taken.
func (s *Service) reserve(ctx context.Context, dep store.Deployment, dd store.DeploymentDevice) bool {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if dep.MaxConcurrent > 0 {
		counts, err := s.db.DeploymentCounts(ctx, dep.ID)
		if err != nil {
			return false
		}
		if counts[store.DeviceDownloading]+counts[store.DeviceDownloaded]+counts[store.DeviceUpdating] >= dep.MaxConcurrent {
			return false
		}
	}
	// Re-check the deployment under the lock: a cancel or a halt may have
	// come since it was read.
	cur, err := s.db.DeploymentHeader(ctx, dep.ID)
	if err != nil || cur.Status != store.DeploymentRunning {
		return false
	}
	return s.db.UpdateDeploymentDevice(ctx, dep.ID, dd.Endpoint, store.DeviceChange{State: store.DeviceDownloading, Restart: true}) == nil
}

func (s *Service) unreserve(ctx context.Context, dd store.DeploymentDevice, why string) {
	s.log.Info("device update postponed", "deployment", dd.DeploymentID, "endpoint", dd.Endpoint, "why", why)
	s.set(context.WithoutCancel(ctx), dd, store.DeviceChange{State: store.DevicePending})
}

// push writes the package into 5/0/0 (Block1 by lwm2m/coap, RFC 7959 §2.5)
// for a device that takes only push (5/0/9 = 1).
func (s *Service) push(ctx context.Context, dd store.DeploymentDevice, fw store.Firmware) error {
	b, err := os.ReadFile(s.lib.path(fw))
	if err != nil {
		return fmt.Errorf("firmware: image %d: %w", fw.ID, err)
	}
	s.access.servedKey(dd.DeploymentID, dd.Endpoint, 0)
	err = s.dev.Write(ctx, dd.Endpoint, pathPackage, lwm2m.FormatOpaque, []lwm2m.Record{{Path: pathPackage, Value: lwm2m.Opaque(b)}}, true)
	if err == nil {
		s.access.servedKey(dd.DeploymentID, dd.Endpoint, fw.Size)
	}
	return err
}

func (s *Service) writeURI(ctx context.Context, ep, uri string) error {
	// Plain text for one string resource (Core §7.3.1), which every
	// client version takes; an empty string (the reset of E.6) has no
	// text payload a client could tell from a missing one, so it goes as
	// TLV, whose record carries the length 0.
	f := lwm2m.FormatText
	if uri == "" {
		f = lwm2m.FormatTLV
	}
	return s.dev.Write(ctx, ep, pathURI, f, []lwm2m.Record{{Path: pathURI, Value: lwm2m.String(uri)}}, true)
}

// set records a state change and tells the live feed.
func (s *Service) set(ctx context.Context, dd store.DeploymentDevice, c store.DeviceChange) {
	if err := s.db.UpdateDeploymentDevice(context.WithoutCancel(ctx), dd.DeploymentID, dd.Endpoint, c); err != nil {
		s.log.Warn("device state not recorded", "deployment", dd.DeploymentID, "endpoint", dd.Endpoint, "err", err)
		return
	}
	dd.State, dd.Result, dd.Error = c.State, c.Result, c.Error
	s.changed(dd)
}

// retryable errors say the device was not there, not that it refused.
func retryable(err error) bool {
	return errors.Is(err, server.ErrTimeout) || errors.Is(err, server.ErrNotRegistered) ||
		errors.Is(err, server.ErrClosed) || errors.Is(err, server.ErrReset) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
