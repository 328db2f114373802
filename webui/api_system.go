package webui

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
)

func (s *Server) needSystem() error {
	if s.deps.System == nil {
		return errorf(http.StatusServiceUnavailable, "system functions are not available")
	}
	return nil
}

func (s *Server) needSettings() error {
	if s.deps.Settings == nil {
		return errorf(http.StatusServiceUnavailable, "settings are not available")
	}
	return nil
}

func (s *Server) apiGetSettings(c *echo.Context) error {
	if err := s.needSettings(); err != nil {
		return err
	}
	st, err := s.deps.Settings.LoadSettings(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// CheckSettings refuses nonsense settings (ErrInvalid, 422); the web UI
// checks at its edge and the appliance checks what it loads.
func CheckSettings(st Settings) error {
	if st.RetentionDays < 1 || st.RetentionDays > 3650 {
		return unprocessable("retentionDays must be from 1 to 3650")
	}
	if st.QueueWindowSeconds < 1 || st.QueueWindowSeconds > 86400 {
		return unprocessable("queueWindowSeconds must be from 1 to 86400")
	}
	if err := checkLogSettings(st); err != nil {
		return err
	}
	for _, id := range st.CompositeObjects {
		if id < 0 || id > 65535 {
			return unprocessable("compositeObjects: %d is not an object id (0 to 65535)", id)
		}
	}
	for _, p := range st.AutoObserve {
		if _, err := parseObservePath(p); err != nil {
			return unprocessable("autoObserve %q: %v", p, err)
		}
	}
	return nil
}

func (s *Server) apiPutSettings(c *echo.Context) error {
	if err := s.needSettings(); err != nil {
		return err
	}
	// The body is read over the current settings, so a client may send
	// only what it changes.
	st, err := s.deps.Settings.LoadSettings(c.Request().Context())
	if err != nil {
		return err
	}
	old := st
	old.AutoObserve = append([]string(nil), st.AutoObserve...)
	if err := decodeJSON(c, &st); err != nil {
		return err
	}
	if err := CheckSettings(st); err != nil {
		return err
	}
	if err := s.deps.Settings.SaveSettings(c.Request().Context(), st); err != nil {
		return err
	}
	s.setQueueWindow(st)
	s.auditSettings(c, old, st)
	return c.JSON(http.StatusOK, st)
}

type systemJSON struct {
	Version   string `json:"version"`
	Started   string `json:"started"`
	Uptime    string `json:"uptime"`
	Ports     []Port `json:"ports"`
	DataDir   string `json:"dataDir,omitempty"`
	DiskFree  uint64 `json:"diskFree"`
	DiskTotal uint64 `json:"diskTotal"`
	DBSize    uint64 `json:"dbSize"`
}

// systemInfo falls back to what the server knows itself when System is nil.
func (s *Server) systemInfo(c *echo.Context) (SystemInfo, error) {
	if s.deps.System == nil {
		return SystemInfo{Version: s.version, Started: s.started, Ports: []Port{{Name: "http", Addr: s.Addr()}}}, nil
	}
	return s.deps.System.Info(c.Request().Context())
}

func (s *Server) apiSystem(c *echo.Context) error {
	in, err := s.systemInfo(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, systemJSON{Version: in.Version, Started: rfc3339(in.Started),
		Uptime: s.now().Sub(in.Started).Round(time.Second).String(), Ports: in.Ports, DataDir: in.DataDir,
		DiskFree: in.DiskFree, DiskTotal: in.DiskTotal, DBSize: in.DBSize})
}

func (s *Server) apiCACert(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return err
	}
	pem, err := s.deps.System.CACertificate(c.Request().Context())
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="flownexus-ca.pem"`)
	return c.Blob(http.StatusOK, "application/x-pem-file", pem)
}

func (s *Server) apiBackup(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return err
	}
	w := c.Response()
	// A backup is a gzip-compressed tar archive (appliance/backup.go):
	// name and type say so, as docs/operations.md does.
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+backupFileName(s.now())+`"`)
	s.audit(c, "backup", "")
	// Errors after the first byte can only cut the download short; the
	// client sees a truncated file, which restore refuses.
	return s.deps.System.Backup(c.Request().Context(), w)
}

// backupFileName is what a downloaded backup is called.
func backupFileName(t time.Time) string {
	return "flownexus-backup-" + t.UTC().Format("20060102-150405") + ".tar.gz"
}

// uploadFile opens a multipart file field; a missing field is 400.
func uploadFile(c *echo.Context, field string) (io.ReadCloser, string, error) {
	fh, err := c.FormFile(field)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, "", err
		}
		return nil, "", errorf(http.StatusBadRequest, "multipart field %q is required: %v", field, err)
	}
	f, err := fh.Open()
	if err != nil {
		return nil, "", err
	}
	return f, fh.Filename, nil
}

func (s *Server) restore(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return err
	}
	f, _, err := uploadFile(c, "file")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.deps.System.Restore(c.Request().Context(), f); err != nil {
		return err
	}
	s.audit(c, "restore", "")
	return nil
}

func (s *Server) apiRestore(c *echo.Context) error {
	if err := s.restore(c); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "staged", "message": restoreStaged})
}

func (s *Server) selfUpdate(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return err
	}
	f, _, err := uploadFile(c, "file")
	if err != nil {
		return err
	}
	defer f.Close()
	sf, _, err := uploadFile(c, "signature")
	if err != nil {
		return err
	}
	defer sf.Close()
	sig, err := io.ReadAll(io.LimitReader(sf, 64<<10))
	if err != nil {
		return err
	}
	if err := s.deps.System.SelfUpdate(c.Request().Context(), f, sig); err != nil {
		return err
	}
	s.audit(c, "self-update", "")
	return nil
}

func (s *Server) apiSelfUpdate(c *echo.Context) error {
	if err := s.selfUpdate(c); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "installed; restart to run it"})
}

// setQueueWindow makes the device list's "sleeping" state follow a saved
// queue-mode window.
func (s *Server) setQueueWindow(st Settings) {
	if st.QueueWindowSeconds > 0 {
		s.queueWindow.Store(int64(time.Duration(st.QueueWindowSeconds) * time.Second))
	}
}
