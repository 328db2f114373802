package webui

import (
	"errors"
	"net/http"

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

func (s *Server) apiFirmwareUpload(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	version := c.FormValue("version")
	f, fname, err := uploadFile(c, "file")
	if err != nil {
		return err
	}
	defer f.Close()
	if version == "" {
		return unprocessable("version is required")
	}
	name := c.FormValue("name")
	if name == "" {
		name = fname
	}
	img, err := s.deps.Firmware.Upload(c.Request().Context(), name, version, f)
	if err != nil {
		return err
	}
	s.audit(c, "firmware upload", img.ID)
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

func (s *Server) apiDeploy(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	var b struct {
		Endpoints []string `json:"endpoints"`
	}
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if len(b.Endpoints) == 0 {
		return unprocessable("endpoints is required")
	}
	id, err := s.deps.Firmware.Deploy(c.Request().Context(), c.Param("id"), b.Endpoints)
	if err != nil {
		return err
	}
	s.audit(c, "deploy", c.Param("id"))
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
