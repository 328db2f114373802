package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/flownexus/flownexus/store"
)

const sessionCookie = "fn_session"

// startSession creates a fresh session for u; store hands out a new random
// secret every time, which is what stops session fixation.
func (s *Server) startSession(ctx context.Context, u store.User) (store.Session, error) {
	sess, err := s.deps.Store.CreateSession(ctx, u.ID, s.cfg.SessionAbsolute)
	if err != nil {
		return store.Session{}, fmt.Errorf("webui: create session: %w", err)
	}
	return sess, nil
}

// lookupSession returns the live session and its user for a secret,
// ending it when it has been idle too long (store enforces the absolute
// expiry).
func (s *Server) lookupSession(ctx context.Context, tok string) (store.Session, store.User, error) {
	sess, err := s.deps.Store.SessionByID(ctx, tok)
	if err != nil {
		return store.Session{}, store.User{}, err
	}
	now := s.now()
	if !now.Before(sess.Expires) || now.Sub(sess.LastSeen) > s.cfg.SessionIdle {
		_ = s.deps.Store.DeleteSession(ctx, tok)
		return store.Session{}, store.User{}, fmt.Errorf("session expired: %w", ErrNotFound)
	}
	u, err := s.deps.Store.User(ctx, sess.UserID)
	if err != nil {
		return store.Session{}, store.User{}, err
	}
	if u.Disabled {
		_ = s.deps.Store.DeleteSession(ctx, tok)
		return store.Session{}, store.User{}, fmt.Errorf("user disabled: %w", ErrNotFound)
	}
	// Recording every request would turn reads into writes; a minute's
	// precision is plenty for a 30-minute idle timeout.
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := s.deps.Store.TouchSession(ctx, tok, 0); err == nil {
			sess.LastSeen = now
		}
	}
	return sess, u, nil
}

// lookupAPIToken resolves a long-lived API token (made by `flownexus
// token`); its user must still be enabled.
func (s *Server) lookupAPIToken(ctx context.Context, tok string) (store.User, error) {
	t, err := s.deps.Store.APITokenBySecret(ctx, tok)
	if err != nil {
		return store.User{}, err
	}
	u, err := s.deps.Store.User(ctx, t.UserID)
	if err != nil {
		return store.User{}, err
	}
	if u.Disabled {
		return store.User{}, fmt.Errorf("user disabled: %w", ErrNotFound)
	}
	return u, nil
}

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, tok string) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    tok,
		Path:     "/",
		MaxAge:   int(s.cfg.SessionAbsolute / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// endSessionFromRequest deletes the session the request's cookie names.
func (s *Server) endSessionFromRequest(ctx context.Context, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.deps.Store.DeleteSession(ctx, c.Value); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("end session", "err", err)
		}
	}
}
