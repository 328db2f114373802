package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
)

// apiEventStream is the live feed as server-sent events (WHATWG HTML
// §9.2): one "message" per LiveEvent with its JSON as data, and a comment
// every 20 s so that proxies and the browser keep the connection open.
// ?endpoint= narrows it to one device.
func (s *Server) apiEventStream(c *echo.Context) error {
	if s.deps.Events == nil {
		return errorf(http.StatusServiceUnavailable, "live events are not available")
	}
	return s.stream(c, s.deps.Events)
}

// stream serves one Events feed as server-sent events.
func (s *Server) stream(c *echo.Context, feed Events) error {
	w := c.Response()
	rc := http.NewResponseController(w)
	only := c.QueryParam("endpoint")
	events, cancel := feed.Subscribe()
	defer cancel()
	s.metrics.sseClients.Add(1)
	defer s.metrics.sseClients.Add(-1)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry tells EventSource how soon to reconnect after a restart.
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil {
		return nil
	}
	_ = rc.Flush()
	tick := time.NewTicker(20 * time.Second)
	defer tick.Stop()
	ctx := c.Request().Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		case ev := <-events:
			if only != "" && ev.Endpoint != only {
				continue
			}
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, b); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
