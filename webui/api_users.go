package webui

import (
	"context"
	"net/http"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

func (s *Server) apiListUsers(c *echo.Context) error {
	us, err := s.deps.Store.Users(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]userJSON, len(us))
	for i, u := range us {
		out[i] = toUserJSON(u)
	}
	return c.JSON(http.StatusOK, map[string]any{"users": out})
}

type newUserBody struct {
	Name     string `json:"name"`
	Role     Role   `json:"role"`
	Password string `json:"password"`
}

// createUser validates and adds an account (API and users page).
func (s *Server) createUser(ctx context.Context, b newUserBody) (store.User, error) {
	if err := checkUserName(b.Name); err != nil {
		return store.User{}, err
	}
	if !b.Role.Valid() {
		return store.User{}, unprocessable("role must be admin, operator or viewer")
	}
	if err := checkPasswordPolicy(b.Password); err != nil {
		return store.User{}, err
	}
	h, err := HashPassword(b.Password)
	if err != nil {
		return store.User{}, err
	}
	return s.deps.Store.CreateUser(ctx, b.Name, h, string(b.Role))
}

func (s *Server) apiCreateUser(c *echo.Context) error {
	var b newUserBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	u, err := s.createUser(c.Request().Context(), b)
	if err != nil {
		return err
	}
	s.audit(c, "user add", u.Name)
	return c.JSON(http.StatusCreated, toUserJSON(u))
}

type userPatch struct {
	Role     *Role   `json:"role"`
	Disabled *bool   `json:"disabled"`
	Password *string `json:"password"`
}

// updateUser applies a change. Nobody may demote or disable the last
// enabled admin (409): that would lock everyone out of user management.
// store ends the user's sessions on a password reset or when disabling.
func (s *Server) updateUser(c *echo.Context, name string, p userPatch) (store.User, error) {
	ctx := c.Request().Context()
	u, err := s.deps.Store.UserByName(ctx, name)
	if err != nil {
		return store.User{}, err
	}
	if p.Role != nil && !p.Role.Valid() {
		return store.User{}, unprocessable("role must be admin, operator or viewer")
	}
	if p.Password != nil {
		if err := checkPasswordPolicy(*p.Password); err != nil {
			return store.User{}, err
		}
	}
	losesAdmin := u.Role == store.RoleAdmin && !u.Disabled &&
		(p.Role != nil && *p.Role != RoleAdmin || p.Disabled != nil && *p.Disabled)
	if losesAdmin {
		n, err := s.deps.Store.CountAdmins(ctx)
		if err != nil {
			return store.User{}, err
		}
		if n <= 1 {
			return store.User{}, errorf(http.StatusConflict, "%s is the last enabled admin", u.Name)
		}
	}
	if p.Role != nil && string(*p.Role) != u.Role {
		if err := s.deps.Store.SetUserRole(ctx, u.ID, string(*p.Role)); err != nil {
			return store.User{}, err
		}
	}
	if p.Disabled != nil && *p.Disabled != u.Disabled {
		if err := s.deps.Store.SetUserDisabled(ctx, u.ID, *p.Disabled); err != nil {
			return store.User{}, err
		}
	}
	if p.Password != nil {
		h, err := HashPassword(*p.Password)
		if err != nil {
			return store.User{}, err
		}
		if err := s.deps.Store.SetUserPassword(ctx, u.ID, h); err != nil {
			return store.User{}, err
		}
	}
	s.audit(c, "user update", u.Name)
	return s.deps.Store.User(ctx, u.ID)
}

func (s *Server) apiUpdateUser(c *echo.Context) error {
	var p userPatch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	u, err := s.updateUser(c, c.Param("name"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toUserJSON(u))
}
