package webui

import (
	"net/http"
	"strconv"

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
