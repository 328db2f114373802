package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/flownexus/flownexus/webui"
)

// uiSystem gives the web UI the appliance itself (webui.System).
type uiSystem struct{ a *Appliance }

var (
	_ webui.System    = uiSystem{}
	_ webui.Restarter = uiSystem{}
)

func (s uiSystem) Info(ctx context.Context) (webui.SystemInfo, error) {
	a := s.a
	addrs := a.Addrs()
	info := webui.SystemInfo{Version: Version, Started: a.started, DataDir: a.cfg.DataDir,
		RestorePending: a.restorePending(), CanRestart: a.selfRestart}
	for _, p := range []struct{ name, addr string }{
		{"http", addrs.HTTP}, {"coap", addrs.CoAP}, {"coaps", addrs.CoAPS},
		{"bootstrap", addrs.Bootstrap}, {"bootstrap-dtls", addrs.BootstrapDTLS},
	} {
		if p.addr != "" {
			info.Ports = append(info.Ports, webui.Port{Name: p.name, Addr: p.addr})
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(a.cfg.DataDir, &st); err == nil {
		info.DiskFree = st.Bavail * uint64(st.Bsize)
		info.DiskTotal = st.Blocks * uint64(st.Bsize)
	}
	if n, err := a.db.UsedBytes(ctx); err == nil && n > 0 {
		info.DBSize = uint64(n)
	}
	return info, nil
}

func (s uiSystem) Ready(ctx context.Context) error {
	select {
	case <-s.a.ready:
	default:
		return errors.New("starting")
	}
	return s.a.health(ctx)
}

func (s uiSystem) Backup(ctx context.Context, w io.Writer) error {
	return NewBackups(s.a.cfg, s.a.db, s.a.log).Backup(ctx, w)
}

func (s uiSystem) Restore(ctx context.Context, r io.Reader) error {
	return httpError(NewBackups(s.a.cfg, s.a.db, s.a.log).Restore(ctx, r))
}

func (s uiSystem) SelfUpdate(ctx context.Context, pkg io.Reader, signature []byte) error {
	info, err := NewUpdater(s.a.cfg, WithInstalledVersion(Version), WithUpdateLogger(s.a.log)).Submit(ctx, pkg, signature)
	if err != nil {
		return httpError(err)
	}
	s.a.log.Info("self-update submitted", "version", info.Version)
	return nil
}

// Restart ends the appliance so that systemd starts it again; by hand
// otherwise (webui.Restarter).
func (s uiSystem) Restart(context.Context) error {
	if !s.a.requestRestart() {
		return fmt.Errorf("%w: FlowNexus was not started by systemd here, so it cannot restart itself: "+
			"stop it and start it again (Ctrl-C, then make run)", webui.ErrUnavailable)
	}
	return nil
}

func (s uiSystem) CACertificate(context.Context) ([]byte, error) {
	return s.a.pki.CACertPEM(), nil
}

func (s uiSystem) WriteMetrics(w io.Writer) error {
	return s.a.writeMetrics(w)
}

// httpError gives the maintenance errors the web UI's status classes: the
// uploader's fault is 422 (or 413), a conflicting state 409, anything else
// passes through as the server's fault.
func httpError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUpdateTooLarge):
		return fmt.Errorf("%w: %v", webui.ErrTooLarge, err)
	case errors.Is(err, ErrUpdateNoKey):
		return fmt.Errorf("%w: %v", webui.ErrUnavailable, err)
	case errors.Is(err, ErrUpdateBusy), errors.Is(err, ErrDataDirNotEmpty):
		return fmt.Errorf("%w: %v", webui.ErrConflict, err)
	case errors.Is(err, ErrBackupInvalid), errors.Is(err, ErrUpdateSignature), errors.Is(err, ErrUpdateArch),
		errors.Is(err, ErrUpdateNotNewer), errors.Is(err, ErrUpdatePackage):
		return fmt.Errorf("%w: %v", webui.ErrInvalid, err)
	}
	return err
}
