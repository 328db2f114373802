package webui

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v5"
)

func (s *Server) needCredentials() error {
	if s.deps.PKI == nil {
		return errorf(http.StatusServiceUnavailable, "credential management is not available")
	}
	return nil
}

// apiRevokeDevice revokes a device's credential: its DTLS handshakes are
// refused from now on and its current registration ends (admin).
func (s *Server) apiRevokeDevice(c *echo.Context) error {
	if err := s.needCredentials(); err != nil {
		return err
	}
	ep := c.Param("ep")
	if err := s.deps.PKI.Revoke(c.Request().Context(), ep); err != nil {
		return err
	}
	s.audit(c, "revoke credential", ep)
	return c.JSON(http.StatusOK, map[string]any{"endpoint": ep, "revoked": true})
}

// pageRevokeDevice is the device page's Revoke button.
func (s *Server) pageRevokeDevice(c *echo.Context) error {
	ep := c.Param("ep")
	back := "/devices/" + urlPathEscape(ep)
	if err := s.needCredentials(); err != nil {
		return formError(c, back, err)
	}
	if err := s.deps.PKI.Revoke(c.Request().Context(), ep); err != nil {
		return formError(c, back, err)
	}
	s.audit(c, "revoke credential", ep)
	return c.Redirect(http.StatusSeeOther, back+"?flash="+urlQueryEscape("Credential revoked: "+ep+" can no longer connect until it is re-keyed."))
}

// apiImportCA adds a foreign CA (PEM or DER in the body) whose device
// certificates the CoAPS listener accepts (admin).
func (s *Server) apiImportCA(c *echo.Context) error {
	if err := s.needCredentials(); err != nil {
		return err
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return errorf(http.StatusRequestEntityTooLarge, "CA certificate too large")
	}
	if len(body) == 0 {
		return errorf(http.StatusBadRequest, "the body must be a CA certificate (PEM or DER)")
	}
	subject, err := s.deps.PKI.ImportCA(c.Request().Context(), body)
	if err != nil {
		return err
	}
	s.audit(c, "import CA", subject)
	return c.JSON(http.StatusCreated, map[string]any{"subject": subject})
}
