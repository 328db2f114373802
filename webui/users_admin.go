package webui

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// deleteUser removes an account with its sessions; its audit entries stay
// (they name the user, they do not point at the row). The last enabled
// admin and oneself cannot be deleted (409).
func (s *Server) deleteUser(c *echo.Context, name string) (store.User, error) {
	ctx := c.Request().Context()
	u, err := s.deps.Store.UserByName(ctx, name)
	if err != nil {
		return u, err
	}
	if me, _ := currentUser(c); me.ID == u.ID {
		return u, errorf(http.StatusConflict, "you cannot delete your own account")
	}
	if u.Role == store.RoleAdmin && !u.Disabled {
		n, err := s.deps.Store.CountAdmins(ctx)
		if err != nil {
			return u, err
		}
		if n <= 1 {
			return u, errorf(http.StatusConflict, "%s is the last enabled admin", u.Name)
		}
	}
	if err := s.deps.Store.DeleteUser(ctx, u.ID); err != nil {
		return u, err
	}
	s.unlockUser(u.Name)
	s.audit(c, "user delete", u.Name)
	return u, nil
}

// unlockUser lifts every login lock and backoff on a user name.
func (s *Server) unlockUser(name string) int {
	l := strings.ToLower(name)
	return s.limiter.forget("user:"+l+"@") + s.nameLimiter.forget("name:"+l)
}

// lockedUsers maps each locked user name (lower case) to the end of its
// longest lock.
func (s *Server) lockedUsers() map[string]time.Time {
	now := s.now()
	out := map[string]time.Time{}
	add := func(name string, until time.Time) {
		if until.After(out[name]) {
			out[name] = until
		}
	}
	for k, until := range s.limiter.locked("user:", now) {
		k = strings.TrimPrefix(k, "user:")
		if i := strings.LastIndex(k, "@"); i >= 0 {
			add(k[:i], until)
		}
	}
	for k, until := range s.nameLimiter.locked("name:", now) {
		add(strings.TrimPrefix(k, "name:"), until)
	}
	return out
}

func (s *Server) apiDeleteUser(c *echo.Context) error {
	if _, err := s.deleteUser(c, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiUnlockUser(c *echo.Context) error {
	u, err := s.deps.Store.UserByName(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	n := s.unlockUser(u.Name)
	s.audit(c, "user unlock", u.Name)
	return c.JSON(http.StatusOK, map[string]any{"name": u.Name, "cleared": n})
}

type userRow struct {
	store.User
	LockedUntil time.Time
}

type usersData struct {
	Users  []userRow
	Tokens tokensData
}

func (s *Server) usersData(c *echo.Context) (usersData, error) {
	var d usersData
	us, err := s.deps.Store.Users(c.Request().Context())
	if err != nil {
		return d, err
	}
	locked := s.lockedUsers()
	for _, u := range us {
		d.Users = append(d.Users, userRow{User: u, LockedUntil: locked[strings.ToLower(u.Name)]})
	}
	sort.SliceStable(d.Users, func(i, j int) bool { return d.Users[i].Name < d.Users[j].Name })
	d.Tokens, err = s.tokensData(c)
	return d, err
}
