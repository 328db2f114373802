package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

type enrollForm struct {
	Endpoint string
	Mode     string
	// Exists: the endpoint is provisioned already; the page offers a
	// re-key (to admins) instead.
	Exists   bool
	CanRekey bool
}

type enrollResult struct {
	Enrollment *enrollment
	Creds      credentialsJSON
	Rekeyed    bool
}

func (s *Server) pageEnroll(c *echo.Context) error {
	f := enrollForm{Mode: "psk", Endpoint: strings.TrimSpace(c.QueryParam("endpoint"))}
	if m := c.QueryParam("mode"); m != "" {
		f.Mode = m
	}
	return s.render(c, http.StatusOK, "enroll", s.newView(c, "Enroll a device", "enroll", f))
}

// pageEnrollPost provisions (or, with rekey=1, re-keys) and redirects to
// the credentials page (post/redirect/get): a reload shows the same
// credentials again instead of posting a second time.
func (s *Server) pageEnrollPost(c *echo.Context) error {
	f := enrollForm{Endpoint: strings.TrimSpace(c.FormValue("endpoint")), Mode: c.FormValue("mode")}
	rekey := c.FormValue("rekey") == "1"
	e, err := s.enroll(c, f.Endpoint, f.Mode, rekey)
	if err != nil {
		code, msg := statusOf(err)
		if code >= 500 && code != http.StatusServiceUnavailable {
			return err
		}
		if !rekey && (errors.Is(err, ErrConflict) || errors.Is(err, store.ErrConflict)) {
			f.Exists = true
			_, f.CanRekey = s.deps.Provisioner.(Rekeyer)
			msg = f.Endpoint + " is provisioned already. Re-key it to give it new credentials (the old ones stop working), or choose another name."
		}
		v := s.newView(c, "Enroll a device", "enroll", f)
		v.Error = msg
		return s.render(c, code, "enroll", v)
	}
	to := "/enroll/" + e.ID
	if rekey {
		to += "?rekeyed=1"
	}
	return c.Redirect(http.StatusSeeOther, to)
}

// pageEnrolled shows a fresh enrollment's credentials and configuration,
// to the user who made it, for EnrollTTL: reloads included.
func (s *Server) pageEnrolled(c *echo.Context) error {
	u, _ := currentUser(c)
	e, ok := s.enrolls.get(c.Param("id"), u.ID, s.now())
	if !ok {
		return errorf(http.StatusNotFound, "these credentials are no longer shown (they are kept %s, for the user who made them); re-key the device for new ones", s.cfg.EnrollTTL)
	}
	return s.render(c, http.StatusOK, "enrolled", s.newView(c, "Enroll "+e.Creds.Endpoint, "enroll",
		enrollResult{Enrollment: e, Creds: toCredentialsJSON(e.Creds), Rekeyed: c.QueryParam("rekeyed") == "1"}))
}
