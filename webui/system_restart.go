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

// pageRestart shows the page that restarts the appliance: its script asks
// for the restart (POST /api/v1/system/restart) once the page and its
// assets are loaded from this process, then waits over /healthz for a new
// process (another start time) and opens the System page.
func (s *Server) pageRestart(c *echo.Context) error {
	if err := s.needSystem(); err != nil {
		return formError(c, "/system", err)
	}
	if _, ok := s.deps.System.(Restarter); !ok {
		return formError(c, "/system", errorf(http.StatusServiceUnavailable, "FlowNexus cannot restart itself here: stop it and start it again"))
	}
	return s.render(c, http.StatusOK, "restarting", s.newView(c, "Restarting", "system", restartData{Started: rfc3339(s.started)}))
}
