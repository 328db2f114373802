package webui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// auditEntryJSON is one line of the audit trail as GET /api/v1/audit
// shows it (../shared/API.md).
type auditEntryJSON struct {
	ID     int64  `json:"id"`
	T      string `json:"t"`
	User   string `json:"user"`
	Action string `json:"action"`
	Target string `json:"target"`
	Detail string `json:"detail"`
}

func toAuditJSON(e store.AuditEntry) auditEntryJSON {
	return auditEntryJSON{ID: e.ID, T: rfc3339(e.Time), User: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail}
}

// apiAudit pages through the audit trail, newest first: ?before=<id>
// continues after the last id seen, ?limit= (1–1000, default 100).
func (s *Server) apiAudit(c *echo.Context) error {
	var before int64
	if v := c.QueryParam("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "before must be an entry id")
		}
		before = n
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, "limit must be from 1 to 1000")
		}
		limit = n
	}
	es, err := s.deps.Store.AuditLog(c.Request().Context(), before, limit)
	if err != nil {
		return err
	}
	out := make([]auditEntryJSON, 0, len(es))
	for _, e := range es {
		out = append(out, toAuditJSON(e))
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": out})
}

// auditSettings records a settings change with what changed
// ("retentionDays 30 → 7; allowUnknownDevices true → false").
func (s *Server) auditSettings(c *echo.Context, old, cur Settings) {
	var parts []string
	add := func(name string, a, b any) {
		if fa, fb := fmt.Sprint(a), fmt.Sprint(b); fa != fb {
			parts = append(parts, name+" "+fa+" → "+fb)
		}
	}
	add("retentionDays", old.RetentionDays, cur.RetentionDays)
	add("autoObserve", old.AutoObserve, cur.AutoObserve)
	add("queueWindowSeconds", old.QueueWindowSeconds, cur.QueueWindowSeconds)
	add("allowUnknownDevices", old.AllowUnknownDevices, cur.AllowUnknownDevices)
	add("compositeObjects", old.CompositeObjects, cur.CompositeObjects)
	who := "anonymous"
	if u, ok := currentUser(c); ok {
		who = u.Name
	}
	detail := strings.Join(parts, "; ")
	if detail == "" {
		detail = "no change"
	}
	if _, err := s.deps.Store.Audit(c.Request().Context(), store.AuditEntry{Actor: who, Action: "settings", Detail: detail}); err != nil {
		s.log.Warn("audit", "action", "settings", "err", err)
	}
}
