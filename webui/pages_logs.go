package webui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// logView is the log panel of a device page and the site-wide log page:
// the lines the filters select, the link to older ones, and what the live
// tail needs to apply the same filters to new lines.
type logView struct {
	Endpoint   string // "": every device
	SiteWide   bool
	Lines      []store.LogLine
	Severity   string
	Class      string
	Q          string
	Device     string // site-wide filter
	Before     int64
	Older      string // query of the next page back; "" when none
	Live       bool   // the newest lines are shown: the live tail appends
	Error      string
	Policy     store.LogPolicy
	CanOperate bool
	CSRF       string
}

var logClasses = []struct {
	ID   int
	Name string
}{{0, "generic"}, {1, "system"}, {2, "security"}, {3, "event"}, {4, "trace"}, {5, "panic"}, {6, "charging"}}

// LogClasses lists the Event Log classes (20.xml, LogClass 4010).
func (logView) LogClasses() []struct {
	ID   int
	Name string
} {
	return logClasses
}

// Severities lists the filter's choices.
func (logView) Severities() []string {
	return []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
}

// ClassName names a class.
func (logView) ClassName(n int) string {
	for _, c := range logClasses {
		if c.ID == n {
			return c.Name
		}
	}
	if n >= 100 {
		return "vendor " + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// Download is the text download's URL with the filters.
func (v logView) Download() string {
	return "/api/v1/devices/" + urlPathEscape(v.Endpoint) + "/logs.txt?" + v.filterQuery().Encode()
}

// Query is the filters' query string (the "Newest" link).
func (v logView) Query() string { return v.filterQuery().Encode() }

func (v logView) filterQuery() url.Values {
	q := url.Values{}
	for k, val := range map[string]string{"severity": v.Severity, "class": v.Class, "q": v.Q, "device": v.Device} {
		if val != "" {
			q.Set(k, val)
		}
	}
	return q
}

// buildLogView runs the query the request's filters describe.
func (s *Server) buildLogView(c *echo.Context, endpoint string, siteWide bool) (logView, error) {
	v := logView{Endpoint: endpoint, SiteWide: siteWide, Severity: c.QueryParam("severity"), Class: c.QueryParam("class"),
		Q: c.QueryParam("q"), Device: strings.TrimSpace(c.QueryParam("device"))}
	v.CanOperate = Role(func() string { u, _ := currentUser(c); return u.Role }()).rank() >= RoleOperator.rank()
	if sess, ok := currentSession(c); ok {
		v.CSRF = sess.CSRF
	}
	q, err := logQuery(c)
	if err != nil {
		_, v.Error = statusOf(err)
		return v, nil
	}
	q.Endpoint = endpoint
	if siteWide {
		q.Endpoint = v.Device
	}
	q.Limit = 100
	v.Before = q.Before
	v.Live = q.Before == 0
	v.Lines, err = s.deps.Store.QueryLogs(c.Request().Context(), q)
	if err != nil {
		if code, msg := statusOf(err); code == http.StatusNotFound && siteWide {
			v.Error = msg
			return v, nil
		}
		return v, err
	}
	if len(v.Lines) == q.Limit {
		oq := v.filterQuery()
		oq.Set("before", strconv.FormatInt(v.Lines[len(v.Lines)-1].ID, 10))
		v.Older = oq.Encode()
	}
	if !siteWide {
		if v.Policy, err = s.deps.Store.DeviceLogPolicy(c.Request().Context(), endpoint); err != nil {
			return v, err
		}
	}
	return v, nil
}

// pageLogs is the site-wide log page: every device's lines, newest first.
func (s *Server) pageLogs(c *echo.Context) error {
	v, err := s.buildLogView(c, "", true)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "logs", s.newView(c, "Device logs", "logs", v))
}

// pageLogPolicy saves a device's log collection policy from its page.
func (s *Server) pageLogPolicy(c *echo.Context) error {
	ep := c.Param("ep")
	to := "/devices/" + urlPathEscape(ep) + "#logs"
	p := store.LogPolicy{AutoStart: c.FormValue("autoStart")}
	if v := strings.TrimSpace(c.FormValue("class")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return formError(c, to, unprocessable("class must be a whole number 0–255"))
		}
		p.Class = n
	}
	if err := s.setLogPolicy(c, ep, p); err != nil {
		return formError(c, to, err)
	}
	return back(c, "/devices/"+urlPathEscape(ep), "Log collection saved; it applies from the device's next registration.")
}
