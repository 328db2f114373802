package webui

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDeviceLogsAPI(t *testing.T) {
	e, a, o, v := adminEnv(t)
	ctx := context.Background()
	e.addDevice("dev", true)
	e.addDevice("urn:imei:1", true)
	t0 := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	if err := e.db.AddDeviceLog(ctx, "dev", t0, "[00:00:01.000,000] <inf> app: boot", "<err> sensor: read failed", "plain text"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.AddDeviceLog(ctx, "urn:imei:1", t0.Add(time.Minute), "<wrn> modem: weak signal"); err != nil {
		t.Fatal(err)
	}
	// Viewers read logs; newest first with id, t, class, severity, line.
	m := v.want(200, "GET", "/api/v1/devices/dev/logs", nil)
	logs := m["logs"].([]any)
	if len(logs) != 3 {
		t.Fatalf("logs: %v", logs)
	}
	first := logs[0].(map[string]any)
	if first["line"] != "plain text" || first["severity"] != "" || first["t"] != "2026-04-01T10:00:00Z" || first["class"] != 0.0 || first["id"] == nil {
		t.Fatalf("first: %v", first)
	}
	if _, ok := first["endpoint"]; ok {
		t.Fatalf("per-device lines carry no endpoint: %v", first)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/logs?severity=err", nil); len(m["logs"].([]any)) != 1 {
		t.Fatalf("severity=err: %v", m)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/logs?severity=info", nil); len(m["logs"].([]any)) != 2 {
		t.Fatalf("severity=info: %v", m)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/logs?q=SENSOR", nil); len(m["logs"].([]any)) != 1 {
		t.Fatalf("q: %v", m)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/logs?limit=1&before="+jsonNum(first["id"]), nil); len(m["logs"].([]any)) != 1 || m["logs"].([]any)[0].(map[string]any)["severity"] != "err" {
		t.Fatalf("before: %v", m)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/logs?since=2026-04-01T10:00:01Z", nil); len(m["logs"].([]any)) != 0 {
		t.Fatalf("since: %v", m)
	}
	for _, bad := range []string{"severity=loud", "before=x", "since=yesterday", "class=300", "q=" + strings.Repeat("x", 201)} {
		v.want(422, "GET", "/api/v1/devices/dev/logs?"+bad, nil)
	}
	v.want(404, "GET", "/api/v1/devices/ghost/logs", nil)
	(&client{e: e}).want(401, "GET", "/api/v1/devices/dev/logs", nil)

	// Across devices, each line with its endpoint.
	m = v.want(200, "GET", "/api/v1/logs", nil)
	all := m["logs"].([]any)
	if len(all) != 4 || all[0].(map[string]any)["endpoint"] != "urn:imei:1" {
		t.Fatalf("all logs: %v", all)
	}
	if m := v.want(200, "GET", "/api/v1/logs?severity=warning", nil); len(m["logs"].([]any)) != 2 {
		t.Fatalf("all warning: %v", m)
	}
	if m := v.want(200, "GET", "/api/v1/logs?endpoint="+url.QueryEscape("urn:imei:1"), nil); len(m["logs"].([]any)) != 1 {
		t.Fatalf("all, one endpoint: %v", m)
	}

	// The text download, oldest first.
	res, body := v.do("GET", "/api/v1/devices/dev/logs.txt", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") || !strings.Contains(res.Header.Get("Content-Disposition"), "dev-logs.txt") {
		t.Fatalf("download: %d %v", res.StatusCode, res.Header)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "\tinfo\tclass=0\t[00:00:01.000,000] <inf> app: boot") || !strings.HasSuffix(lines[2], "plain text") {
		t.Fatalf("download body: %q", body)
	}

	// The per-device policy: viewers read it, operators set it.
	if m := v.want(200, "GET", "/api/v1/devices/dev/log-policy", nil); m["autoStart"] != "" {
		t.Fatalf("policy: %v", m)
	}
	v.want(403, "PUT", "/api/v1/devices/dev/log-policy", map[string]any{"autoStart": "on"})
	o.want(422, "PUT", "/api/v1/devices/dev/log-policy", map[string]any{"autoStart": "maybe"})
	o.want(422, "PUT", "/api/v1/devices/dev/log-policy", map[string]any{"autoStart": "on", "class": 256})
	o.want(404, "PUT", "/api/v1/devices/ghost/log-policy", map[string]any{"autoStart": "on"})
	o.want(200, "PUT", "/api/v1/devices/dev/log-policy", map[string]any{"autoStart": "on", "class": 2})
	if p, _ := e.db.DeviceLogPolicy(ctx, "dev"); p.AutoStart != "on" || p.Class != 2 {
		t.Fatalf("stored policy %+v", p)
	}

	// Settings carry the log fields, 0 meaning the defaults.
	st := a.want(200, "PUT", "/api/v1/settings", map[string]any{"logRetentionDays": 7, "logMaxMiB": 16, "logAutoStart": true, "logClass": 4})
	if st["logRetentionDays"] != 7.0 || st["logAutoStart"] != true || st["logClass"] != 4.0 {
		t.Fatalf("settings: %v", st)
	}
	a.want(422, "PUT", "/api/v1/settings", map[string]any{"logRetentionDays": -1})
	a.want(422, "PUT", "/api/v1/settings", map[string]any{"logClass": 256})
}

func jsonNum(v any) string { f, _ := v.(float64); return strconv.FormatInt(int64(f), 10) }

// Log lines are text on the page: HTML and script in them are escaped.
func TestLogPagesEscapeLines(t *testing.T) {
	e, _, o, v := adminEnv(t)
	e.addDevice("dev", true)
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	if err := e.db.AddDeviceLog(context.Background(), "dev", time.Now(), "<err> "+evil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/devices/dev", "/logs", "/logs?severity=err&device=dev", "/devices/dev?q=alert&severity=err"} {
		c := v.cookieClient()
		res, body := c.do("GET", path, nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, res.StatusCode, body)
		}
		page := string(body)
		if strings.Contains(page, evil) || strings.Contains(page, "<img src=x") {
			t.Fatalf("%s: the line's HTML is in the page unescaped", path)
		}
		if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Fatalf("%s: escaped line missing", path)
		}
		if !strings.Contains(page, `src="/static/logs.js"`) {
			t.Fatalf("%s: live tail script missing", path)
		}
	}
	// A bad filter is a message on the page, not an error page.
	res, body := v.cookieClient().do("GET", "/logs?severity=loud", nil)
	if res.StatusCode != 200 || !strings.Contains(string(body), "severity") {
		t.Fatalf("bad filter: %d", res.StatusCode)
	}
	// Operators see the collection controls; viewers do not.
	_, body = o.cookieClient().do("GET", "/devices/dev", nil)
	if !strings.Contains(string(body), `id="log-stop"`) {
		t.Fatal("operator: no LogStop button")
	}
	_, body = v.cookieClient().do("GET", "/devices/dev", nil)
	if strings.Contains(string(body), `id="log-stop"`) {
		t.Fatal("viewer: LogStop button shown")
	}
}

// The Settings page's log fields and a device page's log policy form.
func TestLogForms(t *testing.T) {
	e, a, o, v := adminEnv(t)
	e.addDevice("dev", true)
	ac, oc, vc := a.cookieClient(), o.cookieClient(), v.cookieClient()
	form := url.Values{"retentionDays": {"14"}, "queueWindowSeconds": {"90"}, "logAutoStart": {"on"},
		"logClass": {"4"}, "logRetentionDays": {"10"}, "logMaxMiB": {"32"}}
	if res := ac.post("/settings", form); !strings.Contains(location(res), "saved") {
		t.Fatalf("settings: %s", location(res))
	}
	m := v.want(200, "GET", "/api/v1/settings", nil)
	if m["logAutoStart"] != true || m["logClass"] != 4.0 || m["logRetentionDays"] != 10.0 || m["logMaxMiB"] != 32.0 {
		t.Fatalf("log settings saved: %v", m)
	}
	form.Set("logMaxMiB", "lots")
	if res := ac.post("/settings", form); !strings.Contains(location(res), "log size limit must be a whole number") {
		t.Fatalf("bad log size: %s", location(res))
	}
	form.Set("logMaxMiB", "32")
	form.Set("logClass", "999")
	if res := ac.post("/settings", form); !strings.Contains(location(res), "logClass") {
		t.Fatalf("bad log class: %s", location(res))
	}
	// The settings page shows the saved values.
	_, body := ac.do("GET", "/settings", nil)
	if !strings.Contains(string(body), `name="logMaxMiB" min="0" value="32"`) {
		t.Fatal("settings page lacks the log size")
	}

	if res := oc.post("/devices/dev/log-policy", url.Values{"autoStart": {"off"}, "class": {"0"}}); !strings.Contains(location(res), "Log collection saved") {
		t.Fatalf("log policy: %s", location(res))
	}
	if p, _ := e.db.DeviceLogPolicy(context.Background(), "dev"); p.AutoStart != "off" {
		t.Fatalf("policy %+v", p)
	}
	if res := oc.post("/devices/dev/log-policy", url.Values{"autoStart": {"sometimes"}}); !strings.Contains(location(res), "autoStart") {
		t.Fatalf("bad policy: %s", location(res))
	}
	if res := vc.post("/devices/dev/log-policy", url.Values{"autoStart": {"on"}}); res.StatusCode != 403 {
		t.Fatalf("viewer policy: %d", res.StatusCode)
	}
	// Back to following the global setting removes the override.
	oc.post("/devices/dev/log-policy", url.Values{"autoStart": {""}, "class": {"0"}})
	if _, body := oc.do("GET", "/devices/dev", nil); !strings.Contains(string(body), `<option value="" selected>as in Settings</option>`) {
		t.Fatal("device page does not show the policy")
	}
}
