package webui

import (
	"net/http"

	"github.com/labstack/echo/v5"
)

// Unknown endpoints that register while the appliance does not admit them
// wait as pending; an admin accepts them or removes them.

func (s *Server) acceptDevice(c *echo.Context) error {
	ep := c.Param("ep")
	ctx := c.Request().Context()
	d, err := s.deps.Store.Endpoint(ctx, ep)
	if err != nil {
		return err
	}
	if !d.Pending {
		return errorf(http.StatusConflict, "%s is not pending", ep)
	}
	if err := s.deps.Store.SetEndpointPending(ctx, ep, false); err != nil {
		return err
	}
	if err := s.deps.Store.ClearRefusal(ctx, ep); err != nil {
		s.log.Warn("refusals not cleared", "endpoint", ep, "err", err)
	}
	s.audit(c, "accept device", ep)
	return nil
}

func (s *Server) apiAcceptDevice(c *echo.Context) error {
	if err := s.acceptDevice(c); err != nil {
		return err
	}
	d, err := s.deps.Store.Endpoint(c.Request().Context(), c.Param("ep"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.toDeviceJSON(d))
}

// apiDeleteDevice removes a device with its credentials, telemetry, events
// and operations.
func (s *Server) apiDeleteDevice(c *echo.Context) error {
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	// End its registration before and after the rows go: a device told
	// its registration ended registers again at once, and one that got
	// in while its credentials still existed must not stay.
	if s.deps.Registrations != nil {
		s.deps.Registrations.Evict(c.Request().Context(), ep)
	}
	if err := s.deps.Store.DeleteEndpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	if s.deps.Registrations != nil {
		s.deps.Registrations.Evict(c.Request().Context(), ep)
	}
	s.audit(c, "delete device", ep)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) pageAcceptDevice(c *echo.Context) error {
	if err := s.acceptDevice(c); err != nil {
		return formError(c, "/devices/"+urlPathEscape(c.Param("ep")), err)
	}
	return back(c, "/devices/"+urlPathEscape(c.Param("ep")), "Accepted; the device may register now.")
}

func (s *Server) pageDeleteDevice(c *echo.Context) error {
	if err := s.apiDeleteDevice(c); err != nil {
		return formError(c, "/devices/"+urlPathEscape(c.Param("ep")), err)
	}
	return back(c, "/devices", "Removed "+c.Param("ep")+".")
}
