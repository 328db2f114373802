package webui

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
)

// httpMetrics counts requests by status class and route for /metrics,
// with a latency histogram.
type httpMetrics struct {
	mu            sync.Mutex
	requests      map[string]uint64 // "code route"
	buckets       []float64
	counts        []uint64
	sum           float64
	total         uint64
	loginFailures atomic.Uint64
	loginLockouts atomic.Uint64
	sseClients    atomic.Int64
}

func newHTTPMetrics() *httpMetrics {
	b := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	return &httpMetrics{requests: make(map[string]uint64), buckets: b, counts: make([]uint64, len(b))}
}

func (s *Server) countRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := time.Now()
		err := next(c)
		_, code := echo.ResolveResponseStatus(c.Response(), err)
		if err != nil {
			code, _ = statusOf(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start).Seconds()
		m := s.metrics
		m.mu.Lock()
		m.requests[fmt.Sprintf("%d %s", code, route)]++
		for i, b := range m.buckets {
			if d <= b {
				m.counts[i]++
			}
		}
		m.sum += d
		m.total++
		m.mu.Unlock()
		return err
	}
}

// metricsHandler writes the Prometheus text exposition format (version
// 0.0.4): the web UI's own counters, then the appliance's.
func (s *Server) metricsHandler(c *echo.Context) error {
	var buf bytes.Buffer
	m := s.metrics
	m.mu.Lock()
	keys := make([]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf.WriteString("# HELP flownexus_http_requests_total HTTP requests by status code and route.\n# TYPE flownexus_http_requests_total counter\n")
	for _, k := range keys {
		var code int
		var route string
		fmt.Sscanf(k, "%d %s", &code, &route)
		fmt.Fprintf(&buf, "flownexus_http_requests_total{code=\"%d\",route=%q} %d\n", code, route, m.requests[k])
	}
	buf.WriteString("# HELP flownexus_http_request_duration_seconds HTTP request latency.\n# TYPE flownexus_http_request_duration_seconds histogram\n")
	for i, b := range m.buckets {
		fmt.Fprintf(&buf, "flownexus_http_request_duration_seconds_bucket{le=\"%g\"} %d\n", b, m.counts[i])
	}
	fmt.Fprintf(&buf, "flownexus_http_request_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.total)
	fmt.Fprintf(&buf, "flownexus_http_request_duration_seconds_sum %g\nflownexus_http_request_duration_seconds_count %d\n", m.sum, m.total)
	m.mu.Unlock()
	fmt.Fprintf(&buf, "# HELP flownexus_login_failures_total Failed logins.\n# TYPE flownexus_login_failures_total counter\nflownexus_login_failures_total %d\n", m.loginFailures.Load())
	fmt.Fprintf(&buf, "# HELP flownexus_login_lockouts_total Logins refused by the lockout.\n# TYPE flownexus_login_lockouts_total counter\nflownexus_login_lockouts_total %d\n", m.loginLockouts.Load())
	fmt.Fprintf(&buf, "# HELP flownexus_sse_clients Connected live-update clients.\n# TYPE flownexus_sse_clients gauge\nflownexus_sse_clients %d\n", m.sseClients.Load())
	if st, err := s.deps.Store.CountEndpoints(c.Request().Context()); err == nil {
		fmt.Fprintf(&buf, "# HELP flownexus_devices Devices by state.\n# TYPE flownexus_devices gauge\n")
		fmt.Fprintf(&buf, "flownexus_devices{state=\"online\"} %d\nflownexus_devices{state=\"offline\"} %d\nflownexus_devices{state=\"sleeping\"} %d\nflownexus_devices{state=\"pending\"} %d\n", st.Online, st.Offline, st.Sleeping, st.Pending)
	}
	if s.deps.System != nil {
		if err := s.deps.System.WriteMetrics(&buf); err != nil {
			s.log.Warn("appliance metrics", "err", err)
		}
	}
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", buf.Bytes())
}

func (s *Server) healthz(c *echo.Context) error {
	ctx := c.Request().Context()
	if err := s.deps.Store.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
	}
	if s.deps.System != nil {
		if err := s.deps.System.Ready(ctx); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		}
	}
	// The appliance runs but refuses telemetry while the disk is full: a
	// probe must see it (503), and the reason says what to do. started
	// tells a page waiting out a restart that a new process answers.
	if ds := s.deps.Store.DiskState(); ds.Full {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "degraded", "reason": ds.Reason, "started": rfc3339(s.started)})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "started": rfc3339(s.started)})
}
