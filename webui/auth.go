package webui

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// Context keys set by authenticate.
const (
	ctxUser      = "fn.user"
	ctxSession   = "fn.session"
	ctxViaCookie = "fn.cookie"
)

// authenticate resolves the bearer token or session cookie into a user. It
// never refuses: routes decide with requireRole whether they need one.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		tok, viaCookie := "", false
		if h := r.Header.Get("Authorization"); h != "" {
			if t, ok := strings.CutPrefix(h, "Bearer "); ok {
				tok = strings.TrimSpace(t)
			}
		} else if ck, err := r.Cookie(sessionCookie); err == nil {
			tok, viaCookie = ck.Value, true
		}
		if tok != "" {
			if sess, u, err := s.lookupSession(r.Context(), tok); err == nil {
				c.Set(ctxUser, u)
				c.Set(ctxSession, sess)
				c.Set(ctxViaCookie, viaCookie)
			} else if !viaCookie {
				if u, err := s.lookupNamedToken(c, tok); err == nil {
					c.Set(ctxUser, u)
				} else if u, err := s.lookupAPIToken(r.Context(), tok); err == nil {
					c.Set(ctxUser, u)
				}
			} else {
				clearSessionCookie(c.Response(), r)
			}
		}
		return next(c)
	}
}

func currentUser(c *echo.Context) (store.User, bool) {
	u, ok := c.Get(ctxUser).(store.User)
	return u, ok
}

func currentSession(c *echo.Context) (store.Session, bool) {
	s, ok := c.Get(ctxSession).(store.Session)
	return s, ok
}

// isAPI tells JSON clients from browsers navigating pages.
func isAPI(c *echo.Context) bool {
	p := c.Request().URL.Path
	return strings.HasPrefix(p, "/api/") || c.Request().Header.Get("HX-Request") != ""
}

// requireRole refuses anonymous requests (401, or a redirect to the login
// page for a browser) and users below min (403).
func (s *Server) requireRole(min Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			u, ok := currentUser(c)
			if !ok {
				if isAPI(c) {
					return errorf(http.StatusUnauthorized, "authentication required")
				}
				return c.Redirect(http.StatusSeeOther, "/login?next="+safeNext(c.Request().URL.RequestURI()))
			}
			if Role(u.Role).rank() < min.rank() {
				return errorf(http.StatusForbidden, "role %s may not do this (needs %s)", u.Role, min)
			}
			return next(c)
		}
	}
}

// csrfProtect checks, for every state-changing request that a cookie
// authenticated, that the session's CSRF token came back in the
// X-CSRF-Token header or the csrf form field. Bearer requests carry no
// ambient credential and need none.
func (s *Server) csrfProtect(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if via, _ := c.Get(ctxViaCookie).(bool); !via {
			return next(c)
		}
		// Logging in and first-run setup start a new session whatever
		// the browser held; they check the Origin instead.
		switch r.URL.Path {
		case "/api/v1/auth/login", "/api/v1/setup", "/login", "/setup":
			return next(c)
		}
		sess, _ := currentSession(c)
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = csrfFromForm(r, s.cfg.MaxUpload)
		}
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
			return errorf(http.StatusForbidden, "missing or wrong CSRF token")
		}
		return next(c)
	}
}

// csrfFromForm reads the csrf field of a urlencoded or multipart form.
func csrfFromForm(r *http.Request, maxUpload int64) string {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		return r.PostFormValue("csrf")
	case strings.HasPrefix(ct, "multipart/form-data"):
		// This runs before the route's own body limit: cap it here too.
		r.Body = http.MaxBytesReader(nil, r.Body, maxUpload)
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			return ""
		}
		return r.FormValue("csrf")
	}
	return ""
}

// sameOrigin refuses cross-site form posts to routes without a session
// (login, first-run setup): a browser always sends Origin on a POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser, or a same-origin GET-initiated form in an old one
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// loginCheck applies the rate limit and checks the password; it returns the
// user on success.
//
// A user is locked out from the address that failed, not from every
// address (else anyone on the LAN could lock the admin out), for a time
// that doubles with each lock (a mistyping user waits a minute, a guesser
// ever longer). Failures against one name from anywhere only slow that
// name down, by a backoff capped at a minute. An address that sprays many
// names is locked on its own, looser count. An admin can lift all of it
// for a user (Users page, unlock).
func (s *Server) loginCheck(c *echo.Context, name, password string) (store.User, error) {
	now := s.now()
	ip := c.RealIP()
	lname := strings.ToLower(name)
	pair, nameKey := "user:"+lname+"@"+ip, "name:"+lname
	checks := []struct {
		l   *limiter
		key string
		msg string
	}{
		{s.ipLimiter, "ip:" + ip, "too many failed logins from this address; try again in %s"},
		{s.limiter, pair, "too many failed logins; try again in %s"},
		{s.nameLimiter, nameKey, "too many failed logins for this user; try again in %s"},
	}
	for _, ch := range checks {
		if wait := ch.l.blocked(ch.key, now); wait > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			s.metrics.loginLockouts.Add(1)
			return store.User{}, errorf(http.StatusTooManyRequests, ch.msg, wait.Round(time.Second))
		}
	}
	u, err := s.deps.Store.UserByName(c.Request().Context(), name)
	ok := false
	switch {
	case err == nil:
		ok = CheckPassword(u.PasswordHash, password) && !u.Disabled
	case errors.Is(err, store.ErrNotFound):
		// Hash anyway so that timing does not tell which names exist.
		CheckPassword(s.dummyHash, password)
	default:
		return store.User{}, err
	}
	if !ok {
		s.metrics.loginFailures.Add(1)
		var wait time.Duration
		for _, ch := range checks {
			if ch.l.fail(ch.key, now) {
				wait = max(wait, ch.l.lockedUntil(ch.key, now).Sub(now))
			}
		}
		if wait > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			return store.User{}, errorf(http.StatusTooManyRequests, "too many failed logins; locked for %s", wait.Round(time.Second))
		}
		return store.User{}, errorf(http.StatusUnauthorized, "wrong user name or password")
	}
	s.limiter.succeed(pair)
	s.nameLimiter.succeed(nameKey)
	u.LastLogin = now
	if err := s.deps.Store.TouchUserLogin(c.Request().Context(), u.ID, now); err != nil {
		s.log.Warn("record last login", "user", u.Name, "err", err)
	}
	return u, nil
}

// login rotates the session: whatever session the browser had ends, and a
// new one starts.
func (s *Server) login(c *echo.Context, u store.User) (store.Session, error) {
	r := c.Request()
	s.endSessionFromRequest(r.Context(), r)
	sess, err := s.startSession(r.Context(), u)
	if err != nil {
		return store.Session{}, err
	}
	s.setSessionCookie(c.Response(), r, sess.ID)
	c.Set(ctxUser, u)
	s.audit(c, "login", u.Name)
	return sess, nil
}

// safeNext keeps post-login redirects on this site.
func safeNext(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}
