package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flownexus/flownexus/firmware"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// fwDevices gives the firmware service the LwM2M server and the
// lifecycle's idea of who listens now (queue mode).
type fwDevices struct {
	*server.Server
	life *lifecycle
}

func (d fwDevices) Reachable(ep string) bool { return d.life.reachable(ep) }

// uiFirmware is webui.Firmware over the firmware service.
type uiFirmware struct{ s *firmware.Service }

var _ webui.Firmware = uiFirmware{}

// fwErr turns the library's own errors into the web UI's.
func fwErr(err error) error {
	if errors.Is(err, firmware.ErrTooLarge) {
		return fmt.Errorf("%w: %v", webui.ErrTooLarge, err)
	}
	return err
}

func imageOut(f store.Firmware) webui.FirmwareImage {
	return webui.FirmwareImage{ID: strconv.FormatInt(f.ID, 10), Name: f.Name, Version: f.Version, SHA256: f.SHA256,
		Size: f.Size, Notes: f.Notes, Target: f.Target, Created: f.Created}
}

type stagedUpload struct{ st *firmware.Staged }

func (s stagedUpload) Commit(ctx context.Context, m webui.FirmwareMeta) (webui.FirmwareImage, error) {
	f, err := s.st.Commit(ctx, firmware.Meta{Version: m.Version, Name: m.Name, Notes: m.Notes, Target: m.Target})
	if err != nil {
		return webui.FirmwareImage{}, fwErr(err)
	}
	return imageOut(f), nil
}

func (s stagedUpload) Discard() { s.st.Discard() }

func (u uiFirmware) Stage(ctx context.Context, r io.Reader) (webui.StagedFirmware, error) {
	st, err := u.s.Library().Stage(ctx, r)
	if err != nil {
		return nil, fwErr(err)
	}
	return stagedUpload{st}, nil
}

func (u uiFirmware) List(ctx context.Context) ([]webui.FirmwareImage, error) {
	fs, err := u.s.Library().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]webui.FirmwareImage, 0, len(fs))
	for _, f := range fs {
		out = append(out, imageOut(f))
	}
	return out, nil
}

func (u uiFirmware) Delete(ctx context.Context, id string) error { return u.s.DeleteImage(ctx, id) }

func (u uiFirmware) Deploy(ctx context.Context, imageID string, req webui.DeployRequest) (string, error) {
	dep, err := u.s.Deploy(ctx, imageID, firmware.DeployRequest{Endpoints: req.Endpoints, MaxConcurrent: req.MaxConcurrent,
		DeviceTimeout: time.Duration(req.TimeoutSeconds) * time.Second, FailureThreshold: req.FailureThreshold})
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(dep.ID, 10), nil
}

func deploymentID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("deployment %q: %w", s, webui.ErrNotFound)
	}
	return id, nil
}

func (u uiFirmware) deploymentOut(ctx context.Context, dep store.Deployment) webui.Deployment {
	out := webui.Deployment{ID: strconv.FormatInt(dep.ID, 10), FirmwareID: strconv.FormatInt(dep.FirmwareID, 10), Status: dep.Status,
		Reason: dep.Reason, MaxConcurrent: dep.MaxConcurrent, TimeoutSeconds: int(dep.DeviceTimeout / time.Second),
		FailureThreshold: dep.FailureThreshold, Created: dep.Created, Counts: map[string]int{}, Devices: []webui.DeploymentDevice{}}
	if f, err := u.s.Library().Image(ctx, out.FirmwareID); err == nil {
		out.Version, out.Size = f.Version, f.Size
	}
	for _, dd := range dep.Devices {
		out.Counts[dd.State]++
		out.Devices = append(out.Devices, deviceOut(dd))
	}
	return out
}

func deviceOut(dd store.DeploymentDevice) webui.DeploymentDevice {
	d := webui.DeploymentDevice{Endpoint: dd.Endpoint, State: dd.State, ResultCode: dd.Result, Error: dd.Error,
		Method: dd.Method, Progress: dd.Progress, FromVersion: dd.FromVersion, Updated: dd.Updated}
	if dd.Result != 0 || dd.State == store.DeviceSucceeded {
		d.Result = firmware.ResultMessage(int64(dd.Result))
	}
	if dd.DeploymentID != 0 {
		d.Deployment = strconv.FormatInt(dd.DeploymentID, 10)
	}
	return d
}

func (u uiFirmware) Deployment(ctx context.Context, id string) (webui.Deployment, error) {
	n, err := deploymentID(id)
	if err != nil {
		return webui.Deployment{}, err
	}
	dep, err := u.s.Deployment(ctx, n)
	if err != nil {
		return webui.Deployment{}, err
	}
	return u.deploymentOut(ctx, dep), nil
}

func (u uiFirmware) Deployments(ctx context.Context) ([]webui.Deployment, error) {
	deps, err := u.s.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]webui.Deployment, 0, len(deps))
	for _, d := range deps {
		out = append(out, u.deploymentOut(ctx, d))
	}
	return out, nil
}

func (u uiFirmware) Cancel(ctx context.Context, id string) error {
	n, err := deploymentID(id)
	if err != nil {
		return err
	}
	return u.s.Cancel(ctx, n)
}

func (u uiFirmware) Retry(ctx context.Context, id string) (int, error) {
	n, err := deploymentID(id)
	if err != nil {
		return 0, err
	}
	return u.s.Retry(ctx, n)
}

func (u uiFirmware) History(ctx context.Context, ep string) ([]webui.DeploymentDevice, error) {
	h, err := u.s.History(ctx, ep)
	if err != nil {
		return nil, err
	}
	out := make([]webui.DeploymentDevice, 0, len(h))
	for _, dd := range h {
		d := deviceOut(dd)
		if f, err := u.s.Library().Image(ctx, strconv.FormatInt(dd.FirmwareID, 10)); err == nil {
			d.Version = f.Version
		}
		out = append(out, d)
	}
	return out, nil
}

func (u uiFirmware) Downloads() http.Handler { return u.s }

// AddFirmware adds an image to the library under cfg's data dir, for
// `flownexus firmware add` (a technician with a USB stick and no browser);
// it works whether or not the service runs.
func AddFirmware(ctx context.Context, cfg Config, file, version, name string) (store.Firmware, error) {
	f, err := os.Open(file)
	if err != nil {
		return store.Firmware{}, err
	}
	defer f.Close()
	if name == "" {
		name = filepath.Base(file)
	}
	db, err := openDataDirStore(ctx, cfg)
	if err != nil {
		return store.Firmware{}, err
	}
	defer db.Close()
	lib, err := firmware.OpenLibrary(ctx, db, cfg.FirmwareDir(), cfg.Firmware.MaxSizeMiB<<20, nil)
	if err != nil {
		return store.Firmware{}, err
	}
	defer lib.Close()
	img, err := lib.Add(ctx, f, firmware.Meta{Version: version, Name: name})
	if err != nil {
		return store.Firmware{}, err
	}
	if err := db.Close(); err != nil {
		return img, err
	}
	return img, chownLikeDir(cfg.DataDir, []string{databaseFile, databaseFile + "-wal", databaseFile + "-shm", firmwareDir})
}

// firmwareService builds the firmware service of a running appliance.
func (a *Appliance) firmwareService(ctx context.Context, db *store.DB, srv *server.Server, life *lifecycle, changed func(store.DeploymentDevice)) (*firmware.Service, error) {
	cfg := a.cfg.Firmware
	lib, err := firmware.OpenLibrary(ctx, db, a.cfg.FirmwareDir(), cfg.MaxSizeMiB<<20, a.base)
	if err != nil {
		return nil, err
	}
	fc := firmware.DefaultConfig()
	fc.Advertise = cfg.AdvertiseHost
	fc.DeviceTimeout = cfg.DeviceTimeout
	fc.MaxConcurrent = cfg.MaxConcurrent
	fc.FailureThreshold = cfg.FailureThreshold
	if a.fwSweep > 0 {
		fc.SweepInterval = a.fwSweep
	}
	return firmware.New(fc, db, lib, fwDevices{Server: srv, life: life}, firmware.WithLogger(a.base), firmware.WithChanged(changed)), nil
}
