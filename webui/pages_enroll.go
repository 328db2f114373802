package webui

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
)

type enrollForm struct {
	Endpoint string
	Mode     string
}

type enrollResult struct {
	Enrollment *enrollment
	Creds      credentialsJSON
}

func (s *Server) pageEnroll(c *echo.Context) error {
	return s.render(c, http.StatusOK, "enroll", s.newView(c, "Enroll a device", "enroll", enrollForm{Mode: "psk"}))
}

// pageEnrollPost provisions and shows everything the device needs; the
// page then waits, over the live feed, for the first registration.
func (s *Server) pageEnrollPost(c *echo.Context) error {
	f := enrollForm{Endpoint: strings.TrimSpace(c.FormValue("endpoint")), Mode: c.FormValue("mode")}
	e, err := s.enroll(c, f.Endpoint, f.Mode)
	if err != nil {
		code, msg := statusOf(err)
		if code >= 500 && code != http.StatusServiceUnavailable {
			return err
		}
		v := s.newView(c, "Enroll a device", "enroll", f)
		v.Error = msg
		return s.render(c, code, "enroll", v)
	}
	return s.render(c, http.StatusOK, "enrolled", s.newView(c, "Enroll "+e.Creds.Endpoint, "enroll",
		enrollResult{Enrollment: e, Creds: toCredentialsJSON(e.Creds)}))
}
