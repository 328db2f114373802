package webui

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/labstack/echo/v5"
)

// needFirmware answers 501 until the appliance wires the firmware library.
func (s *Server) needFirmware() error {
	if s.deps.Firmware == nil {
		return errorf(http.StatusNotImplemented, "firmware management is not enabled on this appliance yet")
	}
	return nil
}

// maxFormField bounds a text field of the upload form (release notes).
const maxFormField = 64 << 10

// readFirmwareUpload reads a multipart/form-data upload part by part: the
// file goes straight to the library's staging (never whole in memory,
// never in a temp file of the HTTP layer), the text fields may come
// before or after it.
func (s *Server) readFirmwareUpload(c *echo.Context) (StagedFirmware, FirmwareMeta, error) {
	var meta FirmwareMeta
	r := c.Request()
	if r.MultipartForm != nil {
		// A plain (non-htmx) browser form: the CSRF check parsed it
		// already (at most 8 MiB in memory, the rest in temp files).
		return s.parsedFirmwareUpload(c)
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, meta, errorf(http.StatusBadRequest, "the upload must be multipart/form-data with a file field")
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var staged StagedFirmware
	fileName := ""
	fail := func(err error) (StagedFirmware, FirmwareMeta, error) {
		if staged != nil {
			staged.Discard()
		}
		return nil, meta, err
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return fail(err)
			}
			return fail(errorf(http.StatusBadRequest, "the upload is cut short or not valid multipart: %v", err))
		}
		switch p.FormName() {
		case "file":
			if staged != nil {
				p.Close()
				return fail(errorf(http.StatusBadRequest, "one file per upload"))
			}
			fileName = p.FileName()
			staged, err = s.deps.Firmware.Stage(r.Context(), p)
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &mbe) {
					return fail(errorf(http.StatusBadRequest, "the upload was cut short; nothing was stored"))
				}
				return fail(err)
			}
		case "version", "name", "notes", "target":
			b, err := io.ReadAll(io.LimitReader(p, maxFormField+1))
			if err != nil {
				return fail(errorf(http.StatusBadRequest, "the upload is cut short: %v", err))
			}
			if len(b) > maxFormField {
				return fail(unprocessable("field %s is longer than %d bytes", p.FormName(), maxFormField))
			}
			v := string(b)
			switch p.FormName() {
			case "version":
				meta.Version = v
			case "name":
				meta.Name = v
			case "notes":
				meta.Notes = v
			case "target":
				meta.Target = v
			}
		}
		p.Close()
	}
	if staged == nil {
		return fail(errorf(http.StatusBadRequest, `multipart field "file" is required`))
	}
	if strings.TrimSpace(meta.Version) == "" {
		return fail(unprocessable("version is required"))
	}
	if strings.TrimSpace(meta.Name) == "" {
		meta.Name = fileName
	}
	return staged, meta, nil
}

// parsedFirmwareUpload takes the upload from a form parsed before.
func (s *Server) parsedFirmwareUpload(c *echo.Context) (StagedFirmware, FirmwareMeta, error) {
	mf := c.Request().MultipartForm
	first := func(k string) string {
		if v := mf.Value[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	meta := FirmwareMeta{Version: first("version"), Name: first("name"), Notes: first("notes"), Target: first("target")}
	fhs := mf.File["file"]
	if len(fhs) != 1 {
		return nil, meta, errorf(http.StatusBadRequest, `multipart field "file" is required`)
	}
	if strings.TrimSpace(meta.Version) == "" {
		return nil, meta, unprocessable("version is required")
	}
	if meta.Name == "" {
		meta.Name = fhs[0].Filename
	}
	f, err := fhs[0].Open()
	if err != nil {
		return nil, meta, err
	}
	defer f.Close()
	staged, err := s.deps.Firmware.Stage(c.Request().Context(), f)
	return staged, meta, err
}

func (s *Server) apiFirmwareUpload(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	staged, meta, err := s.readFirmwareUpload(c)
	if err != nil {
		return err
	}
	img, err := staged.Commit(c.Request().Context(), meta)
	if err != nil {
		return err
	}
	s.audit(c, "firmware upload", img.ID+" "+img.Version)
	return c.JSON(http.StatusCreated, img)
}

func (s *Server) apiFirmwareList(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	imgs, err := s.deps.Firmware.List(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"firmware": imgs})
}

func (s *Server) apiFirmwareDelete(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	if err := s.deps.Firmware.Delete(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	s.audit(c, "firmware delete", c.Param("id"))
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiDeploy(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	var b DeployRequest
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	eps, err := s.deployTargets(c, b.Endpoints, b.CurrentVersion, b.Model)
	if err != nil {
		return err
	}
	if len(eps) == 0 {
		return unprocessable("endpoints is required (or a model or currentVersion matching at least one device)")
	}
	b.Endpoints = eps
	if b.MaxConcurrent < 0 || b.TimeoutSeconds < 0 || b.FailureThreshold < 0 || b.FailureThreshold > 1 {
		return unprocessable("maxConcurrent and timeoutSeconds must not be negative; failureThreshold lies in 0..1")
	}
	id, err := s.deps.Firmware.Deploy(c.Request().Context(), c.Param("id"), b)
	if err != nil {
		return err
	}
	s.audit(c, "deploy", "image "+c.Param("id")+" deployment "+id)
	return c.JSON(http.StatusCreated, map[string]string{"id": id})
}

func (s *Server) apiDeployment(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	d, err := s.deps.Firmware.Deployment(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) apiDeployments(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	ds, err := s.deps.Firmware.Deployments(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"deployments": ds})
}

func (s *Server) apiDeploymentCancel(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	if err := s.deps.Firmware.Cancel(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	s.audit(c, "deployment cancel", c.Param("id"))
	return s.apiDeployment(c)
}

func (s *Server) apiDeploymentRetry(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	n, err := s.deps.Firmware.Retry(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	s.audit(c, "deployment retry", c.Param("id")+" ("+strconv.Itoa(n)+" devices)")
	return s.apiDeployment(c)
}

func (s *Server) apiDeviceFirmware(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	h, err := s.deps.Firmware.History(c.Request().Context(), c.Param("ep"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"updates": h})
}

// firmwareDownload hands /fw/… to the firmware service: devices
// authenticate with the token in the URI, not a session.
func (s *Server) firmwareDownload(c *echo.Context) error {
	if s.deps.Firmware == nil {
		return errorf(http.StatusNotFound, "no such image")
	}
	s.deps.Firmware.Downloads().ServeHTTP(c.Response(), c.Request())
	return nil
}

// parseObservePath accepts an auto-observe rule: a path below the root.
func parseObservePath(s string) (lwm2m.Path, error) {
	p, err := lwm2m.ParsePath(s)
	if err != nil {
		return p, err
	}
	if p.IsRoot() {
		return p, errors.New("the root cannot be observed")
	}
	return p, nil
}
