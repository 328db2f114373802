package webui

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
)

// enrollment is a finished provisioning whose credentials the wizard may
// still show and bundle. Credentials are shown once, so they live only in
// memory, only for the user who made them, and only for EnrollTTL.
type enrollment struct {
	ID      string
	User    int64
	Creds   Credentials
	Kconfig string
	AT      string
	Expires time.Time
}

type enrollCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]*enrollment
}

func newEnrollCache(ttl time.Duration) *enrollCache {
	return &enrollCache{ttl: ttl, m: make(map[string]*enrollment)}
}

func (ec *enrollCache) put(e *enrollment, now time.Time) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	for k, o := range ec.m {
		if now.After(o.Expires) {
			delete(ec.m, k)
		}
	}
	e.Expires = now.Add(ec.ttl)
	ec.m[e.ID] = e
}

func (ec *enrollCache) get(id string, user int64, now time.Time) (*enrollment, bool) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	e, ok := ec.m[id]
	if !ok || e.User != user || now.After(e.Expires) {
		return nil, false
	}
	return e, true
}

// enroll provisions a device, or with rekey gives an existing one new
// credentials (admins only), and renders its configuration.
func (s *Server) enroll(c *echo.Context, ep, mode string, rekey bool) (*enrollment, error) {
	if s.deps.Provisioner == nil || s.deps.Enrollment == nil {
		return nil, errorf(http.StatusServiceUnavailable, "provisioning is not available")
	}
	req, err := provisionRequest(ep, mode, "", "")
	if err != nil {
		return nil, err
	}
	var cr Credentials
	if rekey {
		rk, ok := s.deps.Provisioner.(Rekeyer)
		if !ok {
			return nil, errorf(http.StatusServiceUnavailable, "re-keying is not available")
		}
		if u, _ := currentUser(c); Role(u.Role) != RoleAdmin {
			return nil, errorf(http.StatusForbidden, "only an admin may re-key a device")
		}
		if cr, err = rk.Rekey(c.Request().Context(), req); err != nil {
			return nil, err
		}
		s.audit(c, "re-key "+req.Mode, req.Endpoint)
	} else {
		if cr, err = s.deps.Provisioner.Provision(c.Request().Context(), req); err != nil {
			return nil, err
		}
		s.audit(c, "provision "+req.Mode, req.Endpoint)
	}
	kc, err := s.deps.Enrollment.Kconfig(cr)
	if err != nil {
		return nil, err
	}
	at, err := s.deps.Enrollment.ATCommands(cr)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(raw)
	u, _ := currentUser(c)
	e := &enrollment{ID: id, User: u.ID, Creds: cr, Kconfig: kc, AT: at}
	s.enrolls.put(e, s.now())
	return e, nil
}

func (s *Server) apiEnroll(c *echo.Context) error {
	var body provisionBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	e, err := s.enroll(c, body.Endpoint, body.Security.Mode, false)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, map[string]any{
		"id": e.ID, "endpoint": e.Creds.Endpoint, "security": toCredentialsJSON(e.Creds),
		"kconfig": e.Kconfig, "atCommands": e.AT, "bundle": "/api/v1/enrollments/" + e.ID + "/bundle.zip",
	})
}

func (s *Server) apiEnrollBundle(c *echo.Context) error {
	u, _ := currentUser(c)
	e, ok := s.enrolls.get(c.Param("id"), u.ID, s.now())
	if !ok {
		return errorf(http.StatusNotFound, "no such enrollment (they are kept %s, for the user who made them)", s.cfg.EnrollTTL)
	}
	var buf bytes.Buffer
	if err := s.deps.Enrollment.Bundle(e.Creds, &buf); err != nil {
		return err
	}
	if _, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		return errorf(http.StatusInternalServerError, "enrollment bundle is not a zip archive")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Content-Disposition", `attachment; filename="`+csvNameBase(e.Creds.Endpoint)+`-enrollment.zip"`)
	return c.Blob(http.StatusOK, "application/zip", buf.Bytes())
}

func csvNameBase(s string) string {
	b := []rune{}
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b = append(b, r)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}
