package webui

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

type deviceRow struct {
	store.Endpoint
	Status string
}

type deviceListData struct {
	Query     store.EndpointQuery
	Online    string
	Rows      []deviceRow
	Total     int
	From, To  int
	PrevURL   string
	NextURL   string
	Firmwares []string
	// Models are the models devices report (3/0/1), for the filter.
	Models []string
	// Refused are the names whose registrations were refused, newest first.
	Refused []store.Refusal
}

// deviceList runs the list query for the page and its live refreshes.
func (s *Server) deviceList(c *echo.Context) (deviceListData, error) {
	q, err := deviceQuery(c)
	if err != nil {
		return deviceListData{}, err
	}
	eps, total, err := s.deps.Store.ListEndpoints(c.Request().Context(), q)
	if err != nil {
		return deviceListData{}, err
	}
	d := deviceListData{Query: q, Online: c.QueryParam("online"), Total: total, From: q.Offset + 1, To: q.Offset + len(eps)}
	if len(eps) == 0 {
		d.From = 0
	}
	for _, e := range eps {
		d.Rows = append(d.Rows, deviceRow{e, s.status(e)})
	}
	page := func(off int) string {
		v := url.Values{}
		for k, vs := range c.QueryParams() {
			v[k] = vs
		}
		v.Set("offset", strconv.Itoa(off))
		return "/devices?" + v.Encode()
	}
	if q.Offset > 0 {
		d.PrevURL = page(max(0, q.Offset-q.Limit))
	}
	if q.Offset+len(eps) < total {
		d.NextURL = page(q.Offset + q.Limit)
	}
	return d, nil
}

func (s *Server) pageDevices(c *echo.Context) error {
	d, err := s.deviceList(c)
	if err != nil {
		return err
	}
	if d.Firmwares, err = s.deps.Store.FirmwareVersions(c.Request().Context()); err != nil {
		return err
	}
	if d.Models, err = s.deps.Store.Models(c.Request().Context()); err != nil {
		return err
	}
	if d.Refused, err = s.deps.Store.Refusals(c.Request().Context(), 100); err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "devices", s.newView(c, "Devices", "devices", d))
}

func (s *Server) partialDeviceRows(c *echo.Context) error {
	d, err := s.deviceList(c)
	if err != nil {
		return err
	}
	return s.partial(c, "device-rows", d)
}
