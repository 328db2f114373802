package webui

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

type firmwareData struct {
	Enabled     bool
	Images      []FirmwareImage
	Deployments []Deployment
	// Versions are the firmware versions devices report, for "every
	// device now at version …"; Models the models (3/0/1) they report,
	// for "every device of model …".
	Versions []string
	Models   []string
	MaxSize  int64
}

func (s *Server) pageFirmware(c *echo.Context) error {
	d := firmwareData{Enabled: s.deps.Firmware != nil}
	if d.Enabled {
		ctx := c.Request().Context()
		var err error
		if d.Images, err = s.deps.Firmware.List(ctx); err != nil {
			return err
		}
		if d.Deployments, err = s.deps.Firmware.Deployments(ctx); err != nil {
			return err
		}
		if d.Versions, err = s.deps.Store.FirmwareVersions(ctx); err != nil {
			return err
		}
		if d.Models, err = s.deps.Store.Models(ctx); err != nil {
			return err
		}
	}
	v := s.newView(c, "Firmware", "firmware", d)
	v.Error = c.QueryParam("error")
	return s.render(c, http.StatusOK, "firmware", v)
}

// pageResult answers a page form: a redirect, or for htmx (the upload
// form posts through htmx so that its CSRF token travels in a header and
// the body streams to the library unparsed) the same as HX-Redirect.
func pageResult(c *echo.Context, to, flash string, err error) error {
	if c.Request().Header.Get("HX-Request") == "" {
		if err != nil {
			return formError(c, to, err)
		}
		return back(c, to, flash)
	}
	dest := to + "?flash=" + urlQueryEscape(flash)
	if err != nil {
		code, msg := statusOf(err)
		if code >= 500 && code != http.StatusServiceUnavailable {
			return err
		}
		dest = to + "?error=" + urlQueryEscape(msg)
	}
	c.Response().Header().Set("HX-Redirect", dest)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) pageFirmwareUpload(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	staged, meta, err := s.readFirmwareUpload(c)
	if err != nil {
		return pageResult(c, "/firmware", "", err)
	}
	img, err := staged.Commit(c.Request().Context(), meta)
	if err != nil {
		return pageResult(c, "/firmware", "", err)
	}
	s.audit(c, "firmware upload", img.ID+" "+img.Version)
	return pageResult(c, "/firmware", "Added "+img.Name+" "+img.Version+" ("+humanBytes(uint64(img.Size))+").", nil)
}

func (s *Server) pageFirmwareDelete(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	if err := s.deps.Firmware.Delete(c.Request().Context(), c.Param("id")); err != nil {
		return formError(c, "/firmware", err)
	}
	s.audit(c, "firmware delete", c.Param("id"))
	return back(c, "/firmware", "Image deleted.")
}

// deployTargets resolves a deployment's devices: the listed endpoints,
// plus every device that matches the filter — a model (3/0/1), a firmware
// version (3/0/3), or both (every device of the model at the version). A
// filter that matches no device is refused (422): the operator meant some.
func (s *Server) deployTargets(c *echo.Context, listed []string, atVersion, model string) ([]string, error) {
	out := []string{}
	seen := map[string]bool{}
	add := func(ep string) {
		if ep = strings.TrimSpace(ep); ep != "" && !seen[ep] {
			seen[ep] = true
			out = append(out, ep)
		}
	}
	for _, ep := range listed {
		add(ep)
	}
	atVersion, model = strings.TrimSpace(atVersion), strings.TrimSpace(model)
	if atVersion == "" && model == "" {
		return out, nil
	}
	matched := 0
	for offset := 0; ; offset += 1000 {
		q := store.EndpointQuery{FirmwareVersion: atVersion, Model: model, Limit: 1000, Offset: offset}
		eps, _, err := s.deps.Store.ListEndpoints(c.Request().Context(), q)
		if err != nil {
			return nil, err
		}
		for _, e := range eps {
			add(e.Name)
		}
		matched += len(eps)
		if len(eps) < 1000 {
			break
		}
	}
	if matched == 0 {
		return nil, unprocessable("no device matches the selection (%s); nothing was deployed", selectionText(atVersion, model))
	}
	return out, nil
}

// selectionText names a deployment's filter for a message.
func selectionText(atVersion, model string) string {
	switch {
	case model != "" && atVersion != "":
		return "model " + strconv.Quote(model) + " at version " + strconv.Quote(atVersion)
	case model != "":
		return "model " + strconv.Quote(model)
	}
	return "version " + strconv.Quote(atVersion)
}

func (s *Server) pageDeploy(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	listed := strings.FieldsFunc(c.FormValue("endpoints"), func(r rune) bool { return r == '\n' || r == ',' || r == '\r' })
	eps, err := s.deployTargets(c, listed, c.FormValue("currentVersion"), c.FormValue("model"))
	if err != nil {
		return formError(c, "/firmware", err)
	}
	if len(eps) == 0 {
		return formError(c, "/firmware", unprocessable("name the devices, or pick a model or a current version"))
	}
	req := DeployRequest{Endpoints: eps}
	req.MaxConcurrent, _ = strconv.Atoi(c.FormValue("maxConcurrent"))
	req.TimeoutSeconds, _ = strconv.Atoi(c.FormValue("timeoutMinutes"))
	req.TimeoutSeconds *= 60
	if pct, err := strconv.ParseFloat(c.FormValue("failurePercent"), 64); err == nil {
		req.FailureThreshold = pct / 100
	}
	if req.MaxConcurrent < 0 || req.TimeoutSeconds < 0 || req.FailureThreshold < 0 || req.FailureThreshold > 1 {
		return formError(c, "/firmware", unprocessable("concurrency and timeout must not be negative; the failure share lies in 0..100 %%"))
	}
	id, err := s.deps.Firmware.Deploy(c.Request().Context(), c.Param("id"), req)
	if err != nil {
		return formError(c, "/firmware", err)
	}
	s.audit(c, "deploy", "image "+c.Param("id")+" deployment "+id)
	return back(c, "/firmware#deployment-"+id, "Deployment "+id+" started for "+strconv.Itoa(len(eps))+" devices.")
}

func (s *Server) pageDeploymentAction(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	ctx, id := c.Request().Context(), c.Param("id")
	if a := c.Param("action"); a != "cancel" && a != "retry" {
		return errorf(http.StatusNotFound, "no such page or route")
	}
	var err error
	msg := "Deployment " + id + " cancelled."
	if c.Param("action") == "retry" {
		var n int
		n, err = s.deps.Firmware.Retry(ctx, id)
		msg = "Deployment " + id + ": " + strconv.Itoa(n) + " failed devices back in line."
	} else {
		err = s.deps.Firmware.Cancel(ctx, id)
	}
	if err != nil {
		return formError(c, "/firmware", err)
	}
	s.audit(c, "deployment "+c.Param("action"), id)
	return back(c, "/firmware", msg)
}

type deploymentsPartial struct {
	Deployments []Deployment
	CanOperate  bool
	CSRF        string
}

// partialDeployments is the live deployments list (htmx reloads it when
// the event stream reports a deployment change).
func (s *Server) partialDeployments(c *echo.Context) error {
	if err := s.needFirmware(); err != nil {
		return err
	}
	ds, err := s.deps.Firmware.Deployments(c.Request().Context())
	if err != nil {
		return err
	}
	v := s.newView(c, "", "", nil)
	return s.partial(c, "fw-deployments", deploymentsPartial{Deployments: ds, CanOperate: v.CanOperate(), CSRF: v.CSRF})
}

// partialDeviceFirmware is a device's update history.
func (s *Server) partialDeviceFirmware(c *echo.Context) error {
	if s.deps.Firmware == nil {
		return s.partial(c, "fw-history", []DeploymentDevice(nil))
	}
	h, err := s.deps.Firmware.History(c.Request().Context(), c.Param("ep"))
	if err != nil {
		return err
	}
	return s.partial(c, "fw-history", h)
}

// progressPct is a device's download progress in percent of the image.
func progressPct(done, size int64) int64 {
	if size <= 0 {
		return 0
	}
	return min(100, done*100/size)
}
