package webui

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/labstack/echo/v5"
)

// seriesQuery reads path, from and to; the range defaults to the last 24 h.
func (s *Server) seriesQuery(c *echo.Context) (lwm2m.Path, time.Time, time.Time, error) {
	ps := c.QueryParam("path")
	if ps == "" {
		return lwm2m.Path{}, time.Time{}, time.Time{}, errorf(http.StatusBadRequest, "path is required (object/instance/resource)")
	}
	p, err := lwm2m.ParsePath(ps)
	if err != nil || p.Len() < 3 {
		return p, time.Time{}, time.Time{}, errorf(http.StatusBadRequest, "path %q must name a resource", ps)
	}
	to := s.now()
	if v := c.QueryParam("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return p, time.Time{}, time.Time{}, errorf(http.StatusBadRequest, "to must be RFC 3339")
		}
	}
	from := to.Add(-24 * time.Hour)
	if v := c.QueryParam("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return p, time.Time{}, time.Time{}, errorf(http.StatusBadRequest, "from must be RFC 3339")
		}
	}
	if from.After(to) {
		return p, time.Time{}, time.Time{}, errorf(http.StatusBadRequest, "from is after to")
	}
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), c.Param("ep")); err != nil {
		return p, time.Time{}, time.Time{}, err
	}
	return p, from, to, nil
}

type pointJSON struct {
	T string      `json:"t"`
	V lwm2m.Value `json:"v"`
}

func (s *Server) apiTelemetry(c *echo.Context) error {
	p, from, to, err := s.seriesQuery(c)
	if err != nil {
		return err
	}
	max := 1000
	if v := c.QueryParam("max"); v != "" {
		if max, err = strconv.Atoi(v); err != nil || max < 0 || max > 100000 {
			return errorf(http.StatusBadRequest, "max must be an integer from 0 to 100000")
		}
	}
	pts, err := s.deps.Data.Series(c.Request().Context(), c.Param("ep"), p, from, to, max)
	if err != nil {
		return err
	}
	out := make([]pointJSON, len(pts))
	for i, pt := range pts {
		out[i] = pointJSON{T: pt.Time.UTC().Format(time.RFC3339Nano), V: pt.Value}
	}
	return c.JSON(http.StatusOK, map[string]any{"points": out})
}

// apiTelemetryCSV exports a series as RFC 4180 CSV with ISO 8601 UTC times,
// every point, not downsampled.
func (s *Server) apiTelemetryCSV(c *echo.Context) error {
	p, from, to, err := s.seriesQuery(c)
	if err != nil {
		return err
	}
	ep := c.Param("ep")
	pts, err := s.deps.Data.Series(c.Request().Context(), ep, p, from, to, 0)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+csvName(ep, p)+`"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	_ = cw.Write([]string{"time", "endpoint", "path", "value"})
	for _, pt := range pts {
		_ = cw.Write([]string{pt.Time.UTC().Format(time.RFC3339Nano), ep, p.Relative(), pt.Value.Text()})
	}
	cw.Flush()
	return cw.Error()
}

// csvName is a file name without characters a header or a file system
// would object to.
func csvName(ep string, p lwm2m.Path) string {
	b := []rune{}
	for _, r := range ep + "_" + p.Relative() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b = append(b, r)
		} else {
			b = append(b, '_')
		}
	}
	return string(b) + ".csv"
}

type eventJSON struct {
	ID       int64          `json:"id"`
	Endpoint string         `json:"endpoint"`
	Time     string         `json:"time"`
	Kind     string         `json:"kind"`
	Detail   string         `json:"detail,omitempty"`
	Values   map[string]any `json:"values,omitempty"`
}

func toEventJSON(e DeviceEvent) eventJSON {
	j := eventJSON{ID: e.ID, Endpoint: e.Endpoint, Time: rfc3339(e.Time), Kind: e.Kind, Detail: e.Detail}
	if len(e.Readings) > 0 {
		j.Values = make(map[string]any, len(e.Readings))
		for _, r := range e.Readings {
			j.Values[r.Path.Relative()] = r.Value
		}
	}
	return j
}

func (s *Server) events(c *echo.Context, ep string) error {
	evs, err := s.deps.Data.Events(c.Request().Context(), ep, limitParam(c, 100))
	if err != nil {
		return err
	}
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = toEventJSON(e)
	}
	return c.JSON(http.StatusOK, map[string]any{"events": out})
}

func (s *Server) apiDeviceEvents(c *echo.Context) error {
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	return s.events(c, ep)
}

func (s *Server) apiRecentEvents(c *echo.Context) error { return s.events(c, "") }
