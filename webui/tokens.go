package webui

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// tokenUserPrefix names the user a named API token acts as, in the audit
// trail and on pages ("token:ci-deploy").
const tokenUserPrefix = "token:"

// lookupNamedToken resolves a named API token into the user it acts as:
// its name and its own role, no password, no id.
func (s *Server) lookupNamedToken(c *echo.Context, secret string) (store.User, error) {
	t, err := s.deps.Store.TokenBySecret(c.Request().Context(), secret)
	if err != nil {
		return store.User{}, err
	}
	return store.User{Name: tokenUserPrefix + t.Name, Role: t.Role}, nil
}

// ParseExpiry reads a token's expiry: empty or "never" for none, a
// duration in days ("90d") or hours ("12h"), or a date ("2027-01-31") or
// RFC 3339 time. The web UI, the API and `flownexus token` share it.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "never":
		return time.Time{}, nil
	case strings.HasSuffix(s, "d"):
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n <= 0 || n > 3650 {
			return time.Time{}, fmt.Errorf("%w: expiry %q: want a number of days from 1 to 3650, e.g. 90d", ErrInvalid, s)
		}
		return now.Add(time.Duration(n) * 24 * time.Hour), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%w: expiry %q must lie in the future", ErrInvalid, s)
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if !t.After(now) {
				return time.Time{}, fmt.Errorf("%w: expiry %q lies in the past", ErrInvalid, s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: expiry %q: want never, 90d, 12h, 2027-01-31 or an RFC 3339 time", ErrInvalid, s)
}

type tokenJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Role      Role   `json:"role"`
	Expires   string `json:"expires,omitempty"`
	Created   string `json:"created"`
	CreatedBy string `json:"createdBy,omitempty"`
	LastUsed  string `json:"lastUsed,omitempty"`
	Token     string `json:"token,omitempty"`
}

func toTokenJSON(t store.Token) tokenJSON {
	j := tokenJSON{ID: t.ID, Name: t.Name, Role: Role(t.Role), Created: rfc3339(t.Created), CreatedBy: t.CreatedBy, Token: t.Secret}
	if !t.Expires.IsZero() {
		j.Expires = rfc3339(t.Expires)
	}
	if !t.LastUsed.IsZero() {
		j.LastUsed = rfc3339(t.LastUsed)
	}
	return j
}

type newTokenBody struct {
	Name    string `json:"name"`
	Role    Role   `json:"role"`
	Expires string `json:"expires"`
}

func (s *Server) createToken(c *echo.Context, b newTokenBody) (store.Token, error) {
	if err := checkUserName(strings.TrimSpace(b.Name)); err != nil {
		return store.Token{}, unprocessable("token name: %s", strings.TrimPrefix(err.Error(), "user name "))
	}
	if !b.Role.Valid() {
		return store.Token{}, unprocessable("role must be admin, operator or viewer")
	}
	exp, err := ParseExpiry(b.Expires, s.now())
	if err != nil {
		return store.Token{}, err
	}
	u, _ := currentUser(c)
	t, err := s.deps.Store.CreateToken(c.Request().Context(), b.Name, string(b.Role), u.Name, exp)
	if errors.Is(err, store.ErrConflict) {
		return t, errorf(http.StatusConflict, "a token named %q exists; revoke it first or choose another name", strings.TrimSpace(b.Name))
	}
	if err != nil {
		return t, err
	}
	s.audit(c, "token create", t.Name+" ("+t.Role+")")
	return t, nil
}

func (s *Server) apiListTokens(c *echo.Context) error {
	ts, err := s.deps.Store.Tokens(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]tokenJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, toTokenJSON(t))
	}
	return c.JSON(http.StatusOK, map[string]any{"tokens": out})
}

func (s *Server) apiCreateToken(c *echo.Context) error {
	var b newTokenBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	t, err := s.createToken(c, b)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, toTokenJSON(t))
}

// revokeToken deletes a token by id or, failing that, by name.
func (s *Server) revokeToken(c *echo.Context, ref string) (store.Token, error) {
	ctx := c.Request().Context()
	var t store.Token
	var err error
	if id, perr := strconv.ParseInt(ref, 10, 64); perr == nil {
		t, err = s.tokenByID(c, id)
	} else {
		t, err = s.deps.Store.TokenByName(ctx, ref)
	}
	if err != nil {
		return t, err
	}
	if err := s.deps.Store.DeleteToken(ctx, t.ID); err != nil {
		return t, err
	}
	s.audit(c, "token revoke", t.Name)
	return t, nil
}

func (s *Server) tokenByID(c *echo.Context, id int64) (store.Token, error) {
	ts, err := s.deps.Store.Tokens(c.Request().Context())
	if err != nil {
		return store.Token{}, err
	}
	for _, t := range ts {
		if t.ID == id {
			return t, nil
		}
	}
	return store.Token{}, errorf(http.StatusNotFound, "no token with id %d", id)
}

func (s *Server) apiRevokeToken(c *echo.Context) error {
	if _, err := s.revokeToken(c, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// revealCache holds secrets shown once (a new API token) for the user
// who made them, so that a reload of the page after post/redirect/get
// still shows them within the same session; nothing is kept on disk.
type revealCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]reveal
}

type reveal struct {
	session string
	value   string
	expires time.Time
}

func newRevealCache(ttl time.Duration) *revealCache {
	return &revealCache{ttl: ttl, m: make(map[string]reveal)}
}

func (rc *revealCache) put(session, value string, now time.Time) (string, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, r := range rc.m {
		if now.After(r.expires) {
			delete(rc.m, k)
		}
	}
	rc.m[id] = reveal{session: session, value: value, expires: now.Add(rc.ttl)}
	return id, nil
}

func (rc *revealCache) get(id, session string, now time.Time) (string, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r, ok := rc.m[id]
	if !ok || r.session != session || now.After(r.expires) {
		return "", false
	}
	return r.value, true
}

type tokensData struct {
	Tokens   []store.Token
	NewName  string
	NewToken string
}

func (s *Server) tokensData(c *echo.Context) (tokensData, error) {
	var d tokensData
	ts, err := s.deps.Store.Tokens(c.Request().Context())
	if err != nil {
		return d, err
	}
	d.Tokens = ts
	if id := c.QueryParam("token"); id != "" {
		sess, _ := currentSession(c)
		if v, ok := s.reveals.get(id, store.HashSecret(sess.ID), s.now()); ok {
			d.NewName, d.NewToken, _ = strings.Cut(v, "\n")
		}
	}
	return d, nil
}

func (s *Server) pageTokenCreate(c *echo.Context) error {
	t, err := s.createToken(c, newTokenBody{Name: strings.TrimSpace(c.FormValue("name")), Role: Role(c.FormValue("role")), Expires: c.FormValue("expires")})
	if err != nil {
		return formError(c, "/users", err)
	}
	sess, _ := currentSession(c)
	id, err := s.reveals.put(store.HashSecret(sess.ID), t.Name+"\n"+t.Secret, s.now())
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/users?token="+id+"#tokens")
}

func (s *Server) pageTokenRevoke(c *echo.Context) error {
	t, err := s.revokeToken(c, c.Param("id"))
	if err != nil {
		return formError(c, "/users", err)
	}
	return back(c, "/users", "Token "+t.Name+" revoked.")
}
