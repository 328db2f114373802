package webui

import (
	"net/http"

	"github.com/labstack/echo/v5"
)

// restartNow asks the appliance to restart (to apply a staged restore). A
// System that cannot do it says how to restart by hand (503).
func (s *Server) restartNow(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return err
	}
	r, ok := s.deps.System.(Restarter)
	if !ok {
		return errorf(http.StatusServiceUnavailable, "FlowNexus cannot restart itself here: stop it and start it again")
	}
	// Recorded first: the store closes while the appliance stops.
	s.audit(c, "restart", "")
	return r.Restart(c.Request().Context())
}

func (s *Server) apiRestart(c *echo.Context) error {
	if err := s.restartNow(c); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]string{"status": "restarting"})
}

type restartData struct{ Started string }

// pageRestart shows a page that waits, over /healthz, for the appliance to
// come back with a new start time, then opens the System page.
func (s *Server) pageRestart(c *echo.Context) error {
	in, err := s.systemInfo(c)
	if err != nil {
		return err
	}
	if err := s.restartNow(c); err != nil {
		return formError(c, "/system", err)
	}
	return s.render(c, http.StatusOK, "restarting", s.newView(c, "Restarting", "system", restartData{Started: rfc3339(in.Started)}))
}
