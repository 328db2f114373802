package webui

import (
	"net/http"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

type dashboardData struct {
	Counts        store.EndpointCounts
	PerMinute     float64
	System        SystemInfo
	Registrations []DeviceEvent
	Events        []DeviceEvent
}

func (s *Server) dashboard(c *echo.Context) (dashboardData, error) {
	ctx := c.Request().Context()
	var d dashboardData
	var err error
	// "Sleeping" as the device list says it: queue-mode and not heard
	// from within the queue-mode window.
	if d.Counts, err = s.deps.Store.CountEndpointsAsleep(ctx, s.now().Add(-time.Duration(s.queueWindow.Load()))); err != nil {
		return d, err
	}
	if d.PerMinute, err = s.deps.Data.NotificationsPerMinute(ctx); err != nil {
		return d, err
	}
	if d.System, err = s.systemInfo(c); err != nil {
		return d, err
	}
	// Registrations are asked for by kind: at a few notifications per
	// second, the newest events are all composite notifications.
	regs, err := s.deps.Store.Events(ctx, store.EventQuery{Kind: store.EventRegistered, Limit: 10})
	if err != nil {
		return d, err
	}
	for _, e := range regs {
		d.Registrations = append(d.Registrations, DeviceEvent{ID: e.ID, Endpoint: e.Endpoint, Time: e.Time, Kind: e.Kind, Detail: e.Detail})
	}
	evs, err := s.deps.Data.Events(ctx, "", 100)
	if err != nil {
		return d, err
	}
	for _, e := range evs {
		if len(d.Events) < 10 {
			d.Events = append(d.Events, e)
		}
	}
	return d, nil
}

func (s *Server) pageDashboard(c *echo.Context) error {
	d, err := s.dashboard(c)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "dashboard", s.newView(c, "Dashboard", "dashboard", d))
}

func (s *Server) partialDashboard(c *echo.Context) error {
	d, err := s.dashboard(c)
	if err != nil {
		return err
	}
	return s.partial(c, "dashboard", d)
}
