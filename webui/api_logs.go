package webui

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// Device logs (issue 12): the REST API (../shared/API.md), the text
// download, the live feed and the per-device collection policy.

// logJSON is one log line as the API shows it; severity is the syslog
// keyword ("err", "warning", …) or "" when the line states none.
type logJSON struct {
	ID       int64  `json:"id"`
	Endpoint string `json:"endpoint,omitempty"`
	T        string `json:"t"`
	Class    int    `json:"class"`
	Severity string `json:"severity"`
	Line     string `json:"line"`
}

func toLogJSON(l store.LogLine, withEndpoint bool) logJSON {
	j := logJSON{ID: l.ID, T: l.Time.UTC().Format(time.RFC3339Nano), Class: l.Class, Severity: l.Severity.String(), Line: l.Line}
	if withEndpoint {
		j.Endpoint = l.Endpoint
	}
	return j
}

// maxLogSearch bounds the text a search may ask for.
const maxLogSearch = 200

// logQuery reads before, after, limit, since, severity, class and q; bad
// values are 422 with what is wrong.
func logQuery(c *echo.Context) (store.LogQuery, error) {
	q := store.LogQuery{Severity: lwm2m.SeverityUnknown, Class: -1, Limit: limitParam(c, 100)}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"before", &q.Before}, {"after", &q.After}} {
		if v := c.QueryParam(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, unprocessable("%s must be a log line id", p.name)
			}
			*p.dst = n
		}
	}
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return q, unprocessable("since must be an RFC 3339 time")
		}
		q.Since = t
	}
	if v := c.QueryParam("severity"); v != "" {
		sev, err := lwm2m.ParseSeverityName(v)
		if err != nil {
			return q, unprocessable("severity %q: want emerg, alert, crit, err, warning, notice, info or debug", v)
		}
		q.Severity = sev
	}
	if v := c.QueryParam("class"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 255 {
			return q, unprocessable("class must be 0–255")
		}
		q.Class = n
	}
	q.Text = strings.TrimSpace(c.QueryParam("q"))
	if len(q.Text) > maxLogSearch {
		return q, unprocessable("q is longer than %d bytes", maxLogSearch)
	}
	return q, nil
}

func (s *Server) apiDeviceLogs(c *echo.Context) error {
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	q, err := logQuery(c)
	if err != nil {
		return err
	}
	q.Endpoint = ep
	return s.logsJSON(c, q, false)
}

// apiLogs is GET /api/v1/logs: every device's lines, each with its
// endpoint; ?endpoint= narrows to one.
func (s *Server) apiLogs(c *echo.Context) error {
	q, err := logQuery(c)
	if err != nil {
		return err
	}
	q.Endpoint = c.QueryParam("endpoint")
	return s.logsJSON(c, q, true)
}

func (s *Server) logsJSON(c *echo.Context, q store.LogQuery, withEndpoint bool) error {
	lines, err := s.deps.Store.QueryLogs(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := make([]logJSON, len(lines))
	for i, l := range lines {
		out[i] = toLogJSON(l, withEndpoint)
	}
	return c.JSON(http.StatusOK, map[string]any{"logs": out})
}

// maxLogDownload bounds a text download, in lines.
const maxLogDownload = 100000

// apiDeviceLogsText downloads a device's lines (the same filters as the
// JSON) as text, oldest first, newest maxLogDownload at most.
func (s *Server) apiDeviceLogsText(c *echo.Context) error {
	ep := c.Param("ep")
	ctx := c.Request().Context()
	if _, err := s.deps.Store.Endpoint(ctx, ep); err != nil {
		return err
	}
	q, err := logQuery(c)
	if err != nil {
		return err
	}
	q.Endpoint, q.Limit = ep, 1000
	var all []store.LogLine
	for len(all) < maxLogDownload {
		page, err := s.deps.Store.QueryLogs(ctx, q)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1].ID
	}
	slices.Reverse(all)
	h := c.Response().Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-logs.txt"`, safeFileName(ep)))
	h.Set("Cache-Control", "no-store")
	c.Response().WriteHeader(http.StatusOK)
	w := bufio.NewWriter(c.Response())
	for _, l := range all {
		sev := l.Severity.String()
		if sev == "" {
			sev = "-"
		}
		fmt.Fprintf(w, "%s\t%s\tclass=%d\t%s\n", l.Time.UTC().Format("2006-01-02T15:04:05.000Z"), sev, l.Class, l.Line)
	}
	return w.Flush()
}

// safeFileName keeps letters, digits, dot, dash and underscore.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// apiLogStream is the live tail as server-sent events: one "log" event per
// device and commit; ?endpoint= narrows it to one device.
func (s *Server) apiLogStream(c *echo.Context) error {
	if s.deps.LogEvents == nil {
		return errorf(http.StatusServiceUnavailable, "live device logs are not available")
	}
	return s.stream(c, s.deps.LogEvents)
}

func (s *Server) apiGetLogPolicy(c *echo.Context) error {
	ep := c.Param("ep")
	ctx := c.Request().Context()
	if _, err := s.deps.Store.Endpoint(ctx, ep); err != nil {
		return err
	}
	p, err := s.deps.Store.DeviceLogPolicy(ctx, ep)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// apiPutLogPolicy sets a device's log collection: {"autoStart": "" | "on" |
// "off", "class": 0–255}; it applies from the device's next registration.
func (s *Server) apiPutLogPolicy(c *echo.Context) error {
	ep := c.Param("ep")
	var p store.LogPolicy
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	if err := s.setLogPolicy(c, ep, p); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) setLogPolicy(c *echo.Context, ep string, p store.LogPolicy) error {
	if err := p.Valid(); err != nil {
		return unprocessable("autoStart must be \"\", \"on\" or \"off\" and class 0–255")
	}
	if err := s.deps.Store.SetDeviceLogPolicy(c.Request().Context(), ep, p); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return unprocessable("%v", err)
		}
		return err
	}
	s.audit(c, "device log policy", ep)
	return nil
}

// checkLogSettings is CheckSettings for the log fields (0 takes the
// default).
func checkLogSettings(st Settings) error {
	if st.LogRetentionDays < 0 || st.LogRetentionDays > 3650 {
		return unprocessable("logRetentionDays must be from 0 (default, 30) to 3650")
	}
	if st.LogMaxMiB < 0 || st.LogMaxMiB > 1<<20 {
		return unprocessable("logMaxMiB must be from 0 (default, 64) to 1048576")
	}
	if st.LogClass < 0 || st.LogClass > 255 {
		return unprocessable("logClass must be from 0 to 255")
	}
	return nil
}

// logSettingsForm reads the Settings page's log fields.
func logSettingsForm(c *echo.Context, st *Settings) error {
	num := func(name, what string) (int, error) {
		v := strings.TrimSpace(c.FormValue(name))
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, unprocessable("%s must be a whole number", what)
		}
		return n, nil
	}
	var err error
	if st.LogRetentionDays, err = num("logRetentionDays", "log retention"); err != nil {
		return err
	}
	if st.LogMaxMiB, err = num("logMaxMiB", "log size limit"); err != nil {
		return err
	}
	if st.LogClass, err = num("logClass", "log class"); err != nil {
		return err
	}
	st.LogAutoStart = c.FormValue("logAutoStart") == "on"
	return nil
}

// logRoutes wires the device-log URLs.
func (s *Server) logRoutes(e *echo.Echo, api *echo.Group, viewer, operator, small echo.MiddlewareFunc) {
	api.GET("/devices/:ep/logs", s.apiDeviceLogs, viewer)
	api.GET("/devices/:ep/logs.txt", s.apiDeviceLogsText, viewer)
	api.GET("/devices/:ep/log-policy", s.apiGetLogPolicy, viewer)
	api.PUT("/devices/:ep/log-policy", s.apiPutLogPolicy, operator, small)
	api.GET("/logs", s.apiLogs, viewer)
	api.GET("/logs/stream", s.apiLogStream, viewer)
	e.GET("/logs", s.pageLogs, viewer)
	e.POST("/devices/:ep/log-policy", s.pageLogPolicy, operator, small)
}
