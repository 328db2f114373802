package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// decodeJSON reads one JSON object from the body: a body declared as
// something other than JSON is 415, malformed JSON or anything but an
// object (an array, a string, null) 400, an oversize body 413.
func decodeJSON(c *echo.Context, v any) error {
	if ct := c.Request().Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return errorf(http.StatusUnsupportedMediaType, "content type %q is not JSON; send application/json", ct)
		}
	}
	br := bufio.NewReader(c.Request().Body)
	dec := json.NewDecoder(br)
	// A misspelled field is an error, not a silent no-op.
	dec.DisallowUnknownFields()
	// null would decode as "change nothing" and an array as a type error
	// deep inside: say plainly that an object is wanted.
	if b, err := peekNonSpace(br); err == nil && b != '{' {
		return errorf(http.StatusBadRequest, "bad JSON: want an object, got %q…", b)
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return errorf(http.StatusRequestEntityTooLarge, "request body too large")
		case errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "empty body; want a JSON object")
		}
		return errorf(http.StatusBadRequest, "bad JSON: %v", err)
	}
	return nil
}

// peekNonSpace returns the first byte after JSON whitespace without
// consuming it.
func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			br.Discard(1)
			continue
		}
		return b[0], nil
	}
}

func (s *Server) audit(c *echo.Context, action, target string) {
	who := "anonymous"
	if u, ok := currentUser(c); ok {
		who = u.Name
	}
	if _, err := s.deps.Store.Audit(c.Request().Context(), store.AuditEntry{Actor: who, Action: action, Target: target}); err != nil {
		s.log.Warn("audit", "action", action, "err", err)
	}
}

type credentialsBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type userJSON struct {
	Name      string `json:"name"`
	Role      Role   `json:"role"`
	Disabled  bool   `json:"disabled"`
	Created   string `json:"created,omitempty"`
	LastLogin string `json:"lastLogin,omitempty"`
}

func toUserJSON(u store.User) userJSON {
	j := userJSON{Name: u.Name, Role: Role(u.Role), Disabled: u.Disabled}
	if !u.Created.IsZero() {
		j.Created = rfc3339(u.Created)
	}
	if !u.LastLogin.IsZero() {
		j.LastLogin = rfc3339(u.LastLogin)
	}
	return j
}

func (s *Server) apiLogin(c *echo.Context) error {
	if !sameOrigin(c.Request()) {
		return errorf(http.StatusForbidden, "cross-site login refused")
	}
	var body credentialsBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	if body.Username == "" || body.Password == "" {
		return errorf(http.StatusBadRequest, "username and password are required")
	}
	u, err := s.loginCheck(c, body.Username, body.Password)
	if err != nil {
		return err
	}
	sess, err := s.login(c, u)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"token": sess.ID, "csrf": sess.CSRF, "user": toUserJSON(u)})
}

func (s *Server) apiLogout(c *echo.Context) error {
	if sess, ok := currentSession(c); ok {
		if err := s.deps.Store.DeleteSession(c.Request().Context(), sess.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	clearSessionCookie(c.Response(), c.Request())
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiMe(c *echo.Context) error {
	u, _ := currentUser(c)
	sess, _ := currentSession(c)
	return c.JSON(http.StatusOK, map[string]any{"user": toUserJSON(u), "csrf": sess.CSRF})
}

// createFirstAdmin makes the admin account on first run; once any user
// exists it refuses with 409 so that the route cannot be used to add a
// second admin.
func (s *Server) createFirstAdmin(ctx context.Context, name, password string) (store.User, error) {
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	n, err := s.deps.Store.CountUsers(ctx)
	if err != nil {
		return store.User{}, err
	}
	if n > 0 {
		return store.User{}, errorf(http.StatusConflict, "setup is done: an administrator exists")
	}
	if err := checkUserName(name); err != nil {
		return store.User{}, err
	}
	if err := checkPasswordPolicy(password); err != nil {
		return store.User{}, err
	}
	h, err := HashPassword(password)
	if err != nil {
		return store.User{}, err
	}
	return s.deps.Store.CreateUser(ctx, name, h, store.RoleAdmin)
}

func (s *Server) apiSetup(c *echo.Context) error {
	if !sameOrigin(c.Request()) {
		return errorf(http.StatusForbidden, "cross-site setup refused")
	}
	var body credentialsBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	u, err := s.createFirstAdmin(c.Request().Context(), body.Username, body.Password)
	if err != nil {
		return err
	}
	sess, err := s.login(c, u)
	if err != nil {
		return err
	}
	s.audit(c, "setup", u.Name)
	return c.JSON(http.StatusCreated, map[string]any{"token": sess.ID, "csrf": sess.CSRF, "user": toUserJSON(u)})
}

func checkUserName(name string) error {
	if name == "" || len(name) > 64 {
		return errorf(http.StatusUnprocessableEntity, "user name must have 1 to 64 characters")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return errorf(http.StatusUnprocessableEntity, "user name may hold letters, digits and . _ - @ only, not %q", r)
		}
	}
	return nil
}
