package webui

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

func (s *Server) pageUsers(c *echo.Context) error {
	d, err := s.usersData(c)
	if err != nil {
		return err
	}
	v := s.newView(c, "Users", "users", d)
	v.Error = c.QueryParam("error")
	return s.render(c, http.StatusOK, "users", v)
}

// formError sends a refused form back to its page with the reason; a
// server fault stays an error page.
func formError(c *echo.Context, to string, err error) error {
	code, msg := statusOf(err)
	if code >= 500 && code != http.StatusServiceUnavailable {
		return err
	}
	return c.Redirect(http.StatusSeeOther, to+"?error="+urlQueryEscape(msg))
}

func (s *Server) pageUsersCreate(c *echo.Context) error {
	u, err := s.createUser(c.Request().Context(), newUserBody{Name: strings.TrimSpace(c.FormValue("name")), Role: Role(c.FormValue("role")), Password: c.FormValue("password")})
	if err != nil {
		return formError(c, "/users", err)
	}
	s.audit(c, "user add", u.Name)
	return back(c, "/users", "Added "+u.Name+".")
}

func (s *Server) pageUsersUpdate(c *echo.Context) error {
	var p userPatch
	var what string
	switch c.FormValue("action") {
	case "role":
		r := Role(c.FormValue("role"))
		p.Role, what = &r, "role set to "+string(r)
	case "disable", "enable":
		d := c.FormValue("action") == "disable"
		p.Disabled, what = &d, c.FormValue("action")+"d"
	case "password":
		pw := c.FormValue("password")
		p.Password, what = &pw, "password reset"
	case "delete":
		u, err := s.deleteUser(c, c.Param("name"))
		if err != nil {
			return formError(c, "/users", err)
		}
		return back(c, "/users", u.Name+" deleted; their audit entries stay.")
	case "unlock":
		u, err := s.deps.Store.UserByName(c.Request().Context(), c.Param("name"))
		if err != nil {
			return formError(c, "/users", err)
		}
		s.unlockUser(u.Name)
		s.audit(c, "user unlock", u.Name)
		return back(c, "/users", u.Name+" unlocked.")
	default:
		return formError(c, "/users", unprocessable("unknown action"))
	}
	u, err := s.updateUser(c, c.Param("name"), p)
	if err != nil {
		return formError(c, "/users", err)
	}
	return back(c, "/users", u.Name+": "+what+".")
}

type settingsData struct {
	Settings Settings
	Ports    []Port
	HasCA    bool
}

func (s *Server) pageSettings(c *echo.Context) error {
	d := settingsData{HasCA: s.deps.System != nil}
	if s.deps.Settings != nil {
		st, err := s.deps.Settings.LoadSettings(c.Request().Context())
		if err != nil {
			return err
		}
		d.Settings = st
	}
	in, err := s.systemInfo(c)
	if err != nil {
		return err
	}
	d.Ports = in.Ports
	v := s.newView(c, "Settings", "settings", d)
	v.Error = c.QueryParam("error")
	return s.render(c, http.StatusOK, "settings", v)
}

func (s *Server) pageSettingsPost(c *echo.Context) error {
	if err := s.needSettings(); err != nil {
		return err
	}
	old, _ := s.deps.Settings.LoadSettings(c.Request().Context())
	var st Settings
	var err error
	if st.RetentionDays, err = strconv.Atoi(strings.TrimSpace(c.FormValue("retentionDays"))); err != nil {
		return formError(c, "/settings", unprocessable("retention must be a whole number of days"))
	}
	if st.QueueWindowSeconds, err = strconv.Atoi(strings.TrimSpace(c.FormValue("queueWindowSeconds"))); err != nil {
		return formError(c, "/settings", unprocessable("queue-mode window must be a whole number of seconds"))
	}
	for _, l := range strings.Split(c.FormValue("autoObserve"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			st.AutoObserve = append(st.AutoObserve, l)
		}
	}
	st.AllowUnknownDevices = c.FormValue("allowUnknownDevices") == "on"
	if err := logSettingsForm(c, &st); err != nil {
		return formError(c, "/settings", err)
	}
	st.CompositeObjects = []int{}
	for _, f := range strings.FieldsFunc(c.FormValue("compositeObjects"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' }) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return formError(c, "/settings", unprocessable("composite auto-observe: %q is not an object id", f))
		}
		st.CompositeObjects = append(st.CompositeObjects, id)
	}
	if err := CheckSettings(st); err != nil {
		return formError(c, "/settings", err)
	}
	if err := s.deps.Settings.SaveSettings(c.Request().Context(), st); err != nil {
		return formError(c, "/settings", err)
	}
	s.setQueueWindow(st)
	s.auditSettings(c, old, st)
	return back(c, "/settings", "Settings saved.")
}

// restoreStaged is what an admin reads after a restore: nothing changed yet.
const restoreStaged = "Backup verified and staged: it replaces the current data when FlowNexus restarts."

type systemData struct {
	Info   SystemInfo
	Uptime string
	Ready  bool
	Audit  []store.AuditEntry // admins only
}

func (s *Server) pageSystem(c *echo.Context) error {
	in, err := s.systemInfo(c)
	if err != nil {
		return err
	}
	d := systemData{Info: in, Uptime: s.now().Sub(in.Started).Round(time.Second).String(), Ready: s.deps.System != nil}
	if u, _ := currentUser(c); Role(u.Role) == RoleAdmin {
		if d.Audit, err = s.deps.Store.AuditLog(c.Request().Context(), 0, 50); err != nil {
			return err
		}
	}
	v := s.newView(c, "System", "system", d)
	v.Error = c.QueryParam("error")
	return s.render(c, http.StatusOK, "system", v)
}

func (s *Server) pageRestore(c *echo.Context) error {
	if err := s.restore(c); err != nil {
		return formError(c, "/system", err)
	}
	return back(c, "/system", restoreStaged)
}

func (s *Server) pageSelfUpdate(c *echo.Context) error {
	if err := s.selfUpdate(c); err != nil {
		return formError(c, "/system", err)
	}
	return back(c, "/system", "Update installed; it runs after the next restart.")
}

var _ = store.RoleAdmin
