package webui

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v5"
)

// csp allows scripts, styles and connections only from this origin: no
// inline script, no inline handlers, no eval.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if c.Request().TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		return next(c)
	}
}

// recoverPanics turns a handler panic into a 500 and a log line, never a
// dropped connection.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panic", "path", c.Request().URL.Path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = errorf(http.StatusInternalServerError, "internal error")
			}
		}()
		return next(c)
	}
}

// handleError writes {"error": …} for the API and htmx, and a small page
// for browsers.
func (s *Server) handleError(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	code, msg := statusOf(err)
	if code >= 500 && code != http.StatusServiceUnavailable && code != http.StatusNotImplemented {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if isAPI(c) || c.Request().URL.Path == "/healthz" || c.Request().URL.Path == "/metrics" {
		_ = c.JSON(code, map[string]string{"error": msg})
		return
	}
	s.renderError(c, code, msg)
}
