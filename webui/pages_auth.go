package webui

import (
	"net/http"

	"github.com/labstack/echo/v5"
)

// needsSetup reports whether no user exists yet (first run).
func (s *Server) needsSetup(c *echo.Context) (bool, error) {
	n, err := s.deps.Store.CountUsers(c.Request().Context())
	return n == 0, err
}

func (s *Server) pageSetup(c *echo.Context) error {
	first, err := s.needsSetup(c)
	if err != nil {
		return err
	}
	if !first {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return s.render(c, http.StatusOK, "setup", s.newView(c, "Create the administrator", "", nil))
}

func (s *Server) pageSetupPost(c *echo.Context) error {
	if !sameOrigin(c.Request()) {
		return errorf(http.StatusForbidden, "cross-site form post refused")
	}
	name, pw := c.FormValue("username"), c.FormValue("password")
	if pw != c.FormValue("confirm") {
		v := s.newView(c, "Create the administrator", "", map[string]string{"Username": name})
		v.Error = "the passwords differ"
		return s.render(c, http.StatusUnprocessableEntity, "setup", v)
	}
	u, err := s.createFirstAdmin(c.Request().Context(), name, pw)
	if err != nil {
		code, msg := statusOf(err)
		if code == http.StatusConflict {
			return c.Redirect(http.StatusSeeOther, "/login")
		}
		v := s.newView(c, "Create the administrator", "", map[string]string{"Username": name})
		v.Error = msg
		return s.render(c, code, "setup", v)
	}
	if _, err := s.login(c, u); err != nil {
		return err
	}
	s.audit(c, "setup", u.Name)
	return back(c, "/", "Welcome, "+u.Name+". Enroll your first device to get started.")
}

func (s *Server) pageLogin(c *echo.Context) error {
	first, err := s.needsSetup(c)
	if err != nil {
		return err
	}
	if first {
		return c.Redirect(http.StatusSeeOther, "/setup")
	}
	if _, ok := currentUser(c); ok {
		return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
	}
	return s.render(c, http.StatusOK, "login", s.newView(c, "Log in", "", map[string]string{"Next": safeNext(c.QueryParam("next"))}))
}

func (s *Server) pageLoginPost(c *echo.Context) error {
	if !sameOrigin(c.Request()) {
		return errorf(http.StatusForbidden, "cross-site form post refused")
	}
	name, pw, next := c.FormValue("username"), c.FormValue("password"), safeNext(c.FormValue("next"))
	u, err := s.loginCheck(c, name, pw)
	if err != nil {
		code, msg := statusOf(err)
		v := s.newView(c, "Log in", "", map[string]string{"Next": next, "Username": name})
		v.Error = msg
		return s.render(c, code, "login", v)
	}
	if _, err := s.login(c, u); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *Server) pageLogout(c *echo.Context) error {
	s.endSessionFromRequest(c.Request().Context(), c.Request())
	clearSessionCookie(c.Response(), c.Request())
	return c.Redirect(http.StatusSeeOther, "/login")
}
