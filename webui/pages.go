package webui

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// pageSet holds one template set per page (layout + partials + the page),
// parsed once at start-up so that a broken template fails New, not a user.
type pageSet struct {
	pages    map[string]*template.Template
	partials *template.Template
}

var templateFuncs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"bytes": humanBytes,
	// statusText is a device status as a person reads it.
	"statusText": func(st string) string { return strings.ReplaceAll(st, "-", " ") },
	"ibytes": func(n int64) string {
		if n < 0 {
			return "—"
		}
		return humanBytes(uint64(n))
	},
	"pathEsc": func(s string) string { return urlPathEscape(s) },
	"join":    strings.Join,
	"add":     func(a, b int) int { return a + b },
	"pct":     progressPct,
	"fwDeployments": func(d []Deployment, can bool, csrf string) deploymentsPartial {
		return deploymentsPartial{Deployments: d, CanOperate: can, CSRF: csrf}
	},
	"sub": func(a, b int) int { return a - b },
	"objectsData": func(d store.Endpoint, o []objectView, can bool) objectsPartial {
		return objectsPartial{Device: d, Objects: o, CanOperate: can}
	},
}

func newPageSet() (*pageSet, error) {
	ps := &pageSet{pages: make(map[string]*template.Template)}
	names, err := fs.Glob(assets, "templates/page_*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		t, err := template.New("").Funcs(templateFuncs).ParseFS(assets, "templates/layout.html", "templates/partials*.html", n)
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", n, err)
		}
		key := strings.TrimSuffix(strings.TrimPrefix(n, "templates/page_"), ".html")
		ps.pages[key] = t
	}
	p, err := template.New("").Funcs(templateFuncs).ParseFS(assets, "templates/partials*.html")
	if err != nil {
		return nil, fmt.Errorf("webui: partials: %w", err)
	}
	ps.partials = p
	return ps, nil
}

// view is what every page template receives.
type view struct {
	Title   string
	Nav     string
	User    store.User
	CSRF    string
	Version string
	Flash   string
	Error   string
	// Alert is a condition of the whole appliance every page shows (disk
	// full), "" when there is none.
	Alert string
	Data  any
}

func (v view) CanOperate() bool { return Role(v.User.Role).rank() >= RoleOperator.rank() }
func (v view) IsAdmin() bool    { return Role(v.User.Role).rank() >= RoleAdmin.rank() }

func (s *Server) newView(c *echo.Context, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, Version: s.version, Data: data}
	if s.deps.System != nil {
		if in, err := s.deps.System.Info(c.Request().Context()); err == nil {
			v.Version = in.Version
		}
	}
	v.User, _ = currentUser(c)
	if sess, ok := currentSession(c); ok {
		v.CSRF = sess.CSRF
	}
	v.Flash = c.QueryParam("flash")
	if ds := s.deps.Store.DiskState(); ds.Full {
		v.Alert = "Disk full — new telemetry is refused until space is freed (devices keep it and retry): " + ds.Reason
	}
	return v
}

// render writes a whole page; templates are executed into a buffer first
// so that a template error becomes a clean 500 rather than half a page.
func (s *Server) render(c *echo.Context, code int, page string, v view) error {
	t, ok := s.pages.pages[page]
	if !ok {
		return fmt.Errorf("webui: no page %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("webui: render %s: %w", page, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(code, buf.Bytes())
}

// partial writes one named fragment for htmx.
func (s *Server) partial(c *echo.Context, name string, data any) error {
	var buf bytes.Buffer
	if err := s.pages.partials.ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("webui: render %s: %w", name, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

func (s *Server) renderError(c *echo.Context, code int, msg string) {
	v := s.newView(c, http.StatusText(code), "", nil)
	v.Error = msg
	if err := s.render(c, code, "error", v); err != nil {
		_ = c.String(code, msg)
	}
}

// back redirects after a form post (post/redirect/get) with a message.
func back(c *echo.Context, to, flash string) error {
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	if flash != "" {
		to += sep + "flash=" + urlQueryEscape(flash)
	}
	return c.Redirect(http.StatusSeeOther, to)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
