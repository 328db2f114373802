package webui

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

const pw = "correct horse battery"

// adminEnv is an env with an admin, an operator and a viewer logged in.
func adminEnv(t *testing.T) (*env, *client, *client, *client) {
	e := newEnv(t)
	anon := &client{e: e}
	anon.want(201, "POST", "/api/v1/setup", map[string]string{"username": "admin", "password": pw})
	e.user("olga", RoleOperator, pw)
	e.user("vic", RoleViewer, pw)
	return e, e.login("admin", pw), e.login("olga", pw), e.login("vic", pw)
}

func TestHealthzMetricsOpenAPI(t *testing.T) {
	e := newEnv(t)
	c := &client{e: e}
	if m := c.want(200, "GET", "/healthz", nil); m["status"] != "ok" {
		t.Fatalf("healthz: %v", m)
	}
	res, b := c.do("GET", "/metrics", nil)
	if res.StatusCode != 200 || !strings.Contains(string(b), "flownexus_http_requests_total{code=\"200\",route=\"/healthz\"} 1") ||
		!strings.Contains(string(b), "flownexus_ingest_accepted_total") || !strings.Contains(string(b), `flownexus_devices{state="online"} 0`) {
		t.Fatalf("metrics: %d\n%s", res.StatusCode, b)
	}
	res, b = c.do("GET", "/api/v1/openapi.yaml", nil)
	if res.StatusCode != 200 || !bytes.HasPrefix(b, []byte("openapi: 3")) {
		t.Fatalf("openapi: %d %.40q", res.StatusCode, b)
	}
	e.db.Close() // the store going away makes the appliance unhealthy
	c.want(503, "GET", "/healthz", nil)
}

func TestSetupOnlyOnce(t *testing.T) {
	e := newEnv(t)
	c := &client{e: e}
	c.want(422, "POST", "/api/v1/setup", map[string]string{"username": "admin", "password": "short"})
	c.want(422, "POST", "/api/v1/setup", map[string]string{"username": "bad name", "password": pw})
	c.want(400, "POST", "/api/v1/setup", "{not json")
	m := c.want(201, "POST", "/api/v1/setup", map[string]string{"username": "admin", "password": pw})
	if m["token"] == "" || m["user"].(map[string]any)["role"] != "admin" {
		t.Fatalf("setup: %v", m)
	}
	c.want(409, "POST", "/api/v1/setup", map[string]string{"username": "evil", "password": pw})
}

func TestLoginLogoutAndSessions(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, pw)
	c := &client{e: e}
	c.want(401, "GET", "/api/v1/auth/me", nil)
	c.want(400, "POST", "/api/v1/auth/login", `{"username":"admin"`)
	c.want(400, "POST", "/api/v1/auth/login", map[string]string{"username": "admin"})
	c.want(401, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "wrong password"})
	c.want(401, "POST", "/api/v1/auth/login", map[string]string{"username": "nobody", "password": "wrong password"})

	a := e.login("admin", pw)
	if a.cookie == nil || !a.cookie.HttpOnly || a.cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", a.cookie)
	}
	if m := a.want(200, "GET", "/api/v1/auth/me", nil); m["user"].(map[string]any)["name"] != "admin" {
		t.Fatalf("me: %v", m)
	}
	// Logging in again from the same browser rotates the session: the old
	// cookie stops working.
	old := a.cookieClient()
	r := (&client{e: e, cookie: a.cookie}).req("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
	res, _ := a.send(r)
	if res.StatusCode != 200 {
		t.Fatalf("relogin: %d", res.StatusCode)
	}
	old.want(401, "GET", "/api/v1/auth/me", nil)

	b := e.login("admin", pw)
	b.want(204, "POST", "/api/v1/auth/logout", nil)
	b.want(401, "GET", "/api/v1/auth/me", nil)

	// Idle timeout.
	d := e.login("admin", pw)
	e.clock.advance(31 * time.Minute)
	d.want(401, "GET", "/api/v1/auth/me", nil)
}

func TestLoginLockout(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, pw)
	c := &client{e: e, ip: "192.0.2.7"}
	for i := 0; i < 4; i++ {
		c.want(401, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "guess " + fmt.Sprint(i)})
	}
	c.want(429, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "guess 5"})
	// Locked from that address: even the right password waits there.
	res, b := c.do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("locked login: %d %s", res.StatusCode, b)
	}
	// Another address is not locked out: a mistyping user elsewhere on
	// the LAN cannot lock the admin out.
	other := &client{e: e, ip: "192.0.2.8"}
	other.want(200, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
	e.clock.advance(16 * time.Minute)
	e.login("admin", pw)

	// An address that sprays names is locked for every name.
	spray := &client{e: e, ip: "192.0.2.9"}
	for i := 0; i < 19; i++ {
		spray.want(401, "POST", "/api/v1/auth/login", map[string]string{"username": fmt.Sprint("user", i), "password": "x"})
	}
	spray.want(429, "POST", "/api/v1/auth/login", map[string]string{"username": "user19", "password": "x"})
	spray.want(429, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
}

func TestCSRF(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	e.addDevice("dev-1", true)
	ck := a.cookieClient()
	body := map[string]any{"type": "read", "path": "3/0/0"}
	r := ck.req("POST", "/api/v1/devices/dev-1/operations", body)
	r.Header.Del("X-CSRF-Token")
	if res, b := ck.send(r); res.StatusCode != 403 || !strings.Contains(string(b), "CSRF") {
		t.Fatalf("cookie write without CSRF: %d %s", res.StatusCode, b)
	}
	r = ck.req("POST", "/api/v1/devices/dev-1/operations", body)
	r.Header.Set("X-CSRF-Token", "wrong")
	if res, _ := ck.send(r); res.StatusCode != 403 {
		t.Fatalf("cookie write with a wrong CSRF token: %d", res.StatusCode)
	}
	r = ck.req("POST", "/api/v1/devices/dev-1/operations", body)
	r.Header.Set("X-CSRF-Token", a.csrf)
	if res, b := ck.send(r); res.StatusCode != 202 {
		t.Fatalf("cookie write with CSRF: %d %s", res.StatusCode, b)
	}
	// Form field works too (the pages' plain forms).
	form := url.Values{"csrf": {a.csrf}, "action": {"role"}, "role": {"viewer"}}
	r = httptest.NewRequest("POST", "/users/olga", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(a.cookie)
	if res, _ := ck.send(r); res.StatusCode != 303 || !strings.Contains(res.Header.Get("Location"), "flash=") {
		t.Fatalf("form with CSRF field: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestDevicesAPI(t *testing.T) {
	e, a, _, v := adminEnv(t)
	(&client{e: e}).want(401, "GET", "/api/v1/devices", nil)
	for i := 0; i < 30; i++ {
		e.addDevice(fmt.Sprintf("urn:imei:3526561000%05d", i), i%3 != 0)
	}
	now := time.Now()
	e.ingest("urn:imei:352656100000001", now, "3/0/0", lwm2m.String("Acme"), "3303/0/5700", lwm2m.Float(21.5), "3303/0/5701", lwm2m.String("Cel"))

	m := v.want(200, "GET", "/api/v1/devices?limit=10&sort=-endpoint&online=true", nil)
	devs := m["devices"].([]any)
	if len(devs) != 10 || m["total"].(float64) != 20 {
		t.Fatalf("list: %d devices of %v", len(devs), m["total"])
	}
	first := devs[0].(map[string]any)
	if first["endpoint"] != "urn:imei:352656100000029" || first["online"] != true || first["security"] != "psk" || first["lifetime"].(float64) != 300 {
		t.Fatalf("first device: %v", first)
	}
	m = v.want(200, "GET", "/api/v1/devices?q=0000001", nil)
	if m["total"].(float64) != 11 {
		t.Fatalf("search: %v", m["total"])
	}
	v.want(400, "GET", "/api/v1/devices?sort=color", nil)
	v.want(400, "GET", "/api/v1/devices?online=maybe", nil)
	v.want(400, "GET", "/api/v1/devices?limit=-1", nil)
	v.want(400, "GET", "/api/v1/devices?security=wep", nil)

	m = v.want(200, "GET", "/api/v1/devices/"+url.PathEscape("urn:imei:352656100000001"), nil)
	if m["values"].(map[string]any)["3303/0/5700"] != 21.5 || m["device"].(map[string]any)["objects"] == "" {
		t.Fatalf("device: %v", m)
	}
	res := m["resources"].([]any)
	found := false
	for _, r := range res {
		r := r.(map[string]any)
		if r["path"] == "3303/0/5700" && r["units"] == "Cel" && r["name"] == "Sensor Value" {
			found = true
		}
	}
	if !found {
		t.Fatalf("resources lack 3303/0/5700 with name and units: %v", res)
	}
	v.want(404, "GET", "/api/v1/devices/nope", nil)
	_ = a
}

func TestProvisionAPI(t *testing.T) {
	_, a, o, v := adminEnv(t)
	m := o.want(201, "POST", "/api/v1/devices", map[string]any{"endpoint": "urn:imei:1", "security": map[string]string{"mode": "psk"}})
	sec := m["security"].(map[string]any)
	if sec["pskIdentity"] != "urn:imei:1" || len(sec["pskKey"].(string)) != 32 || sec["mode"] != "psk" {
		t.Fatalf("provision psk: %v", m)
	}
	m = a.want(201, "POST", "/api/v1/devices", map[string]any{"endpoint": "cert-dev", "security": map[string]string{"mode": "x509"}})
	if !strings.Contains(m["security"].(map[string]any)["certificate"].(string), "BEGIN CERTIFICATE") {
		t.Fatalf("provision x509: %v", m)
	}
	m = o.want(201, "POST", "/api/v1/devices", map[string]any{"endpoint": "given", "security": map[string]string{"mode": "psk", "pskIdentity": "id-9", "pskKey": "000102030405060708090a0b0c0d0e0f"}})
	if m["security"].(map[string]any)["pskKey"] != "000102030405060708090a0b0c0d0e0f" {
		t.Fatalf("given key: %v", m)
	}
	o.want(409, "POST", "/api/v1/devices", map[string]any{"endpoint": "urn:imei:1", "security": map[string]string{"mode": "psk"}})
	o.want(422, "POST", "/api/v1/devices", map[string]any{"endpoint": "x", "security": map[string]string{"mode": "wep"}})
	o.want(422, "POST", "/api/v1/devices", map[string]any{"endpoint": "", "security": map[string]string{"mode": "psk"}})
	o.want(422, "POST", "/api/v1/devices", map[string]any{"endpoint": "a/b", "security": map[string]string{"mode": "psk"}})
	o.want(422, "POST", "/api/v1/devices", map[string]any{"endpoint": "k", "security": map[string]string{"mode": "psk", "pskKey": "zz"}})
	v.want(403, "POST", "/api/v1/devices", map[string]any{"endpoint": "v", "security": map[string]string{"mode": "psk"}})
	o.want(413, "POST", "/api/v1/devices", `{"endpoint":"`+strings.Repeat("a", 2<<20)+`"}`)
}

func TestOperationsAPI(t *testing.T) {
	e, _, o, v := adminEnv(t)
	e.addDevice("dev", true)
	e.ops.values.Store("3/0/0", lwm2m.String("Acme"))
	e.ops.values.Store("3303/0/5700", lwm2m.Float(22.25))

	m := o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "read", "path": "3303/0/5700"})
	id := int64(m["id"].(float64))
	if m["status"] != "queued" || id <= 0 {
		t.Fatalf("queue: %v", m)
	}
	m = o.want(200, "POST", "/api/v1/devices/dev/operations?wait=10", map[string]any{"type": "read", "path": "3/0/0"})
	if m["status"] != "confirmed" || m["result"].(map[string]any)["values"].(map[string]any)["3/0/0"] != "Acme" {
		t.Fatalf("read with wait: %v", m)
	}
	got := v.want(200, "GET", fmt.Sprintf("/api/v1/operations/%d", int64(m["id"].(float64))), nil)
	if got["status"] != "confirmed" || got["attempts"].(float64) != 1 {
		t.Fatalf("get: %v", got)
	}
	m = o.want(200, "POST", "/api/v1/devices/dev/operations?wait=10", map[string]any{"type": "read", "path": "5/0/3"})
	if m["status"] != "failed" || m["error"] != "4.04 Not Found" {
		t.Fatalf("failed read: %v", m)
	}
	m = o.want(200, "POST", "/api/v1/devices/dev/operations?wait=10", map[string]any{"type": "write", "path": "1/0/1", "value": "120"})
	if m["status"] != "confirmed" {
		t.Fatalf("write: %v", m)
	}
	if val, _ := e.ops.values.Load("1/0/1"); val.(lwm2m.Value).Type() != lwm2m.TypeInteger || val.(lwm2m.Value).Int() != 120 {
		t.Fatalf("write typed from the model: %v", val)
	}
	o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "execute", "path": "3/0/4"})
	o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "write-attributes", "path": "3303/0/5700", "attributes": map[string]string{"pmin": "10", "pmax": "60"}})
	o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "read-composite", "paths": []string{"3/0/0", "3303/0/5700"}, "format": "senml-cbor"})
	o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "write-composite", "value": map[string]any{"1/0/1": 60, "1/0/2": 10}})
	o.want(202, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "observe", "path": "3303/0/5700", "format": 112})

	for _, bad := range []map[string]any{
		{"type": "explode", "path": "3/0/0"},
		{"type": "read"},
		{"type": "read", "path": "3/x/0"},
		{"type": "write", "path": "3/0/0", "value": "x"},    // read-only
		{"type": "write", "path": "1/0/1", "value": "soon"}, // wrong type
		{"type": "write", "path": "1/0/1"},                  // no value
		{"type": "execute", "path": "3/0/0"},                // not executable
		{"type": "execute", "path": "3/0"},                  // not a resource
		{"type": "read", "path": "3/0/4"},                   // executable, not readable
		{"type": "write-attributes", "path": "3/0/0", "attributes": map[string]string{"color": "1"}},
		{"type": "write-attributes", "path": "3/0/0", "attributes": map[string]string{"pmin": "soon"}},
		{"type": "read", "path": "3/0/0", "format": "xml"},
		{"type": "delete", "path": "3"},
		{"type": "read", "paths": []string{"3/0/0", "3/0/1"}},
	} {
		o.want(422, "POST", "/api/v1/devices/dev/operations", bad)
	}
	o.want(400, "POST", "/api/v1/devices/dev/operations?wait=soon", map[string]any{"type": "read", "path": "3/0/0"})
	o.want(404, "POST", "/api/v1/devices/ghost/operations", map[string]any{"type": "read", "path": "3/0/0"})
	v.want(403, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "read", "path": "3/0/0"})
	v.want(404, "GET", "/api/v1/operations/999999", nil)
	v.want(400, "GET", "/api/v1/operations/abc", nil)
	l := v.want(200, "GET", "/api/v1/devices/dev/operations", nil)
	if n := len(l["operations"].([]any)); n < 9 {
		t.Fatalf("history: %d operations", n)
	}
	_ = id
}

func TestOperationsUnavailable(t *testing.T) {
	e := newEnv(t, func(c *Config, d *Deps) { d.Operations = nil; d.Firmware = nil })
	e.user("admin", RoleAdmin, pw)
	a := e.login("admin", pw)
	e.addDevice("dev", true)
	a.want(503, "POST", "/api/v1/devices/dev/operations", map[string]any{"type": "read", "path": "3/0/0"})
	a.want(501, "GET", "/api/v1/firmware", nil)
	a.want(501, "POST", "/api/v1/firmware/1/deployments", map[string]any{"endpoints": []string{"dev"}})
	a.want(501, "GET", "/api/v1/deployments/1", nil)
}

func TestTelemetryEventsLogs(t *testing.T) {
	e, _, _, v := adminEnv(t)
	e.addDevice("dev", true)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < 5; i++ {
		e.ingest("dev", base.Add(time.Duration(i)*time.Minute), "3303/0/5700", lwm2m.Float(20+float64(i)))
	}
	if err := e.db.AddDeviceLog(context.Background(), "dev", time.Now(), "boot ok", "lte attached"); err != nil {
		t.Fatal(err)
	}
	q := "/api/v1/devices/dev/telemetry?path=3303/0/5700&from=" + url.QueryEscape(base.Add(-time.Minute).Format(time.RFC3339)) + "&to=" + url.QueryEscape(time.Now().Add(time.Minute).Format(time.RFC3339))
	m := v.want(200, "GET", q, nil)
	pts := m["points"].([]any)
	if len(pts) != 5 || pts[0].(map[string]any)["v"] != 20.0 || pts[4].(map[string]any)["v"] != 24.0 {
		t.Fatalf("points: %v", pts)
	}
	if _, err := time.Parse(time.RFC3339, pts[0].(map[string]any)["t"].(string)); err != nil {
		t.Fatal(err)
	}
	res, b := v.do("GET", strings.Replace(q, "telemetry?", "telemetry.csv?", 1), nil)
	lines := strings.Split(strings.TrimSpace(string(b)), "\r\n")
	if res.StatusCode != 200 || len(lines) != 6 || lines[0] != "time,endpoint,path,value" || !strings.HasSuffix(lines[1], ",dev,3303/0/5700,20") {
		t.Fatalf("csv: %d %q", res.StatusCode, lines)
	}
	if m := v.want(200, "GET", "/api/v1/devices/dev/telemetry?path=3303/0/5701", nil); len(m["points"].([]any)) != 0 {
		t.Fatalf("empty series: %v", m)
	}
	v.want(400, "GET", "/api/v1/devices/dev/telemetry", nil)
	v.want(400, "GET", "/api/v1/devices/dev/telemetry?path=3303", nil)
	v.want(400, "GET", "/api/v1/devices/dev/telemetry?path=3303/0/5700&from=yesterday", nil)
	v.want(400, "GET", "/api/v1/devices/dev/telemetry?path=3303/0/5700&from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", nil)
	v.want(404, "GET", "/api/v1/devices/ghost/telemetry?path=3303/0/5700", nil)

	m = v.want(200, "GET", "/api/v1/devices/dev/events", nil)
	evs := m["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["kind"] != "registered" {
		t.Fatalf("events: %v", evs)
	}
	v.want(404, "GET", "/api/v1/devices/ghost/events", nil)
	m = v.want(200, "GET", "/api/v1/devices/dev/logs", nil)
	if logs := m["logs"].([]any); len(logs) != 2 || logs[0].(map[string]any)["line"] != "lte attached" {
		t.Fatalf("logs: %v", logs)
	}
	v.want(404, "GET", "/api/v1/devices/ghost/logs", nil)
	if m := v.want(200, "GET", "/api/v1/events", nil); len(m["events"].([]any)) != 1 {
		t.Fatalf("all events: %v", m)
	}
}

func TestEnrollmentAPI(t *testing.T) {
	e, a, o, v := adminEnv(t)
	m := o.want(201, "POST", "/api/v1/enrollments", map[string]any{"endpoint": "urn:imei:7", "security": map[string]string{"mode": "psk"}})
	if !strings.Contains(m["kconfig"].(string), "CONFIG_LWM2M") || !strings.Contains(m["atCommands"].(string), "AT%CMNG=0,16842753,4,\"urn:imei:7\"") {
		t.Fatalf("enrollment: %v", m)
	}
	res, b := o.do("GET", m["bundle"].(string), nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("bundle: %d %s", res.StatusCode, b)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(zr.File) != 2 {
		t.Fatalf("bundle zip: %v", err)
	}
	a.want(404, "GET", m["bundle"].(string), nil) // another user's enrollment
	o.want(409, "POST", "/api/v1/enrollments", map[string]any{"endpoint": "urn:imei:7", "security": map[string]string{"mode": "psk"}})
	v.want(403, "POST", "/api/v1/enrollments", map[string]any{"endpoint": "urn:imei:8", "security": map[string]string{"mode": "psk"}})
	e.clock.advance(31 * time.Minute)
	o2 := e.login("olga", pw)
	o2.want(404, "GET", m["bundle"].(string), nil) // expired
}

func TestUsersAPI(t *testing.T) {
	_, a, o, _ := adminEnv(t)
	o.want(403, "GET", "/api/v1/users", nil)
	o.want(403, "POST", "/api/v1/users", map[string]any{"name": "x", "role": "viewer", "password": pw})
	m := a.want(200, "GET", "/api/v1/users", nil)
	if len(m["users"].([]any)) != 3 {
		t.Fatalf("users: %v", m)
	}
	a.want(201, "POST", "/api/v1/users", map[string]any{"name": "nina", "role": "viewer", "password": pw})
	a.want(409, "POST", "/api/v1/users", map[string]any{"name": "nina", "role": "viewer", "password": pw})
	a.want(422, "POST", "/api/v1/users", map[string]any{"name": "x", "role": "god", "password": pw})
	a.want(422, "POST", "/api/v1/users", map[string]any{"name": "x", "role": "viewer", "password": "123"})
	n := a.e.login("nina", pw)
	if m := a.want(200, "PATCH", "/api/v1/users/nina", map[string]any{"role": "operator"}); m["role"] != "operator" {
		t.Fatalf("patch: %v", m)
	}
	n.want(202-202+200, "GET", "/api/v1/auth/me", nil) // a role change applies at once, session kept
	a.want(200, "PATCH", "/api/v1/users/nina", map[string]any{"disabled": true})
	n.want(401, "GET", "/api/v1/auth/me", nil)
	c := &client{e: a.e}
	c.want(401, "POST", "/api/v1/auth/login", map[string]string{"username": "nina", "password": pw})
	a.want(200, "PATCH", "/api/v1/users/nina", map[string]any{"disabled": false, "password": "a brand new passphrase"})
	a.e.login("nina", "a brand new passphrase")
	a.want(409, "PATCH", "/api/v1/users/admin", map[string]any{"role": "viewer"})
	a.want(409, "PATCH", "/api/v1/users/admin", map[string]any{"disabled": true})
	a.want(404, "PATCH", "/api/v1/users/ghost", map[string]any{"role": "viewer"})
	a.want(422, "PATCH", "/api/v1/users/nina", map[string]any{"role": "root"})
	a.want(422, "PATCH", "/api/v1/users/nina", map[string]any{"password": "short"})
}

func TestSettingsAndSystemAPI(t *testing.T) {
	e, a, o, v := adminEnv(t)
	m := v.want(200, "GET", "/api/v1/settings", nil)
	if m["retentionDays"].(float64) != 30 {
		t.Fatalf("settings: %v", m)
	}
	st := map[string]any{"retentionDays": 7, "autoObserve": []string{"3303/0/5700", "3/0/9"}, "queueWindowSeconds": 30, "allowUnknownDevices": false}
	o.want(403, "PUT", "/api/v1/settings", st)
	a.want(200, "PUT", "/api/v1/settings", st)
	if m := v.want(200, "GET", "/api/v1/settings", nil); m["retentionDays"].(float64) != 7 || m["allowUnknownDevices"] != false {
		t.Fatalf("saved settings: %v", m)
	}
	a.want(422, "PUT", "/api/v1/settings", map[string]any{"retentionDays": 0, "queueWindowSeconds": 30})
	a.want(422, "PUT", "/api/v1/settings", map[string]any{"retentionDays": 7, "queueWindowSeconds": 30, "autoObserve": []string{"/"}})

	m = v.want(200, "GET", "/api/v1/system", nil)
	if m["version"] != "1.2.3-test" || len(m["ports"].([]any)) != 3 {
		t.Fatalf("system: %v", m)
	}
	res, b := v.do("GET", "/api/v1/system/ca.pem", nil)
	if res.StatusCode != 200 || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("ca: %d %s", res.StatusCode, b)
	}
	o.want(403, "GET", "/api/v1/system/backup", nil)
	res, b = a.do("GET", "/api/v1/system/backup", nil)
	if res.StatusCode != 200 || !bytes.HasPrefix(b, []byte("SQLite format 3")) {
		t.Fatalf("backup: %d", res.StatusCode)
	}
	// A backup is a .tar.gz: the download's name and type say so.
	if ct, cd := res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"); ct != "application/gzip" ||
		!strings.HasPrefix(cd, `attachment; filename="flownexus-backup-`) || !strings.HasSuffix(cd, `.tar.gz"`) {
		t.Fatalf("backup download: Content-Type %q, Content-Disposition %q", ct, cd)
	}
	upload := func(c *client, path string, files map[string][]byte) (*http.Response, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range files {
			w, _ := mw.CreateFormFile(k, k+".bin")
			w.Write(v)
		}
		mw.Close()
		r := c.req("POST", path, nil)
		r.Body = ioNopCloser(&buf)
		r.ContentLength = int64(buf.Len())
		r.Header.Set("Content-Type", mw.FormDataContentType())
		return c.send(r)
	}
	if res, b := upload(a, "/api/v1/system/restore", map[string][]byte{"file": b}); res.StatusCode != 200 || e.sys.restored == nil {
		t.Fatalf("restore: %d %s", res.StatusCode, b)
	}
	if res, _ := upload(a, "/api/v1/system/restore", map[string][]byte{"file": []byte("garbage")}); res.StatusCode != 422 {
		t.Fatalf("restore garbage: %d", res.StatusCode)
	}
	if res, _ := upload(a, "/api/v1/system/restore", map[string][]byte{"other": []byte("x")}); res.StatusCode != 400 {
		t.Fatalf("restore without file: %d", res.StatusCode)
	}
	if res, _ := upload(o, "/api/v1/system/restore", map[string][]byte{"file": b}); res.StatusCode != 403 {
		t.Fatalf("operator restore: %d", res.StatusCode)
	}
	if res, b := upload(a, "/api/v1/system/update", map[string][]byte{"file": []byte("ELF"), "signature": []byte("good signature")}); res.StatusCode != 200 || string(e.sys.updated) != "ELF" {
		t.Fatalf("update: %d %s", res.StatusCode, b)
	}
	if res, _ := upload(a, "/api/v1/system/update", map[string][]byte{"file": []byte("ELF"), "signature": []byte("forged")}); res.StatusCode != 422 {
		t.Fatalf("forged update: %d", res.StatusCode)
	}
}

func TestUploadTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config, d *Deps) { c.MaxUpload = 1024 })
	e.user("admin", RoleAdmin, pw)
	a := e.login("admin", pw)
	r := a.req("POST", "/api/v1/system/restore", nil)
	r.Body = ioNopCloser(strings.NewReader(strings.Repeat("x", 4096)))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "multipart/form-data; boundary=zzz")
	if res, b := a.send(r); res.StatusCode != 413 {
		t.Fatalf("large upload: %d %s", res.StatusCode, b)
	}
}

func TestEventStream(t *testing.T) {
	e, _, _, v := adminEnv(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(res.Body)
	if l, _ := rd.ReadString('\n'); !strings.HasPrefix(l, "retry:") {
		t.Fatalf("first line %q", l)
	}
	// Subscribed once the preamble arrived; now a device registers.
	e.addDevice("live-1", true)
	e.ingest("live-1", time.Now(), "3303/0/5700", lwm2m.Float(19.5))
	var kinds []string
	for len(kinds) < 2 {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v after %v", err, kinds)
		}
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "data: "); ok {
			var ev LiveEvent
			var raw map[string]any
			json.Unmarshal([]byte(d), &raw)
			json.Unmarshal([]byte(d), &ev.Kind)
			kinds = append(kinds, raw["kind"].(string))
			if raw["kind"] == "value" && (raw["path"] != "3303/0/5700" || raw["value"] != 19.5) {
				t.Fatalf("value event: %s", d)
			}
		}
	}
	if kinds[0] != "registered" || kinds[1] != "value" {
		t.Fatalf("events: %v", kinds)
	}
	(&client{e: e}).want(401, "GET", "/api/v1/events/stream", nil)
}

func TestPagesAuthAndHeaders(t *testing.T) {
	e := newEnv(t)
	c := &client{e: e}
	res, _ := c.do("GET", "/", nil)
	if res.StatusCode != 303 || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Fatalf("anonymous dashboard: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = c.do("GET", "/login", nil)
	if res.StatusCode != 303 || res.Header.Get("Location") != "/setup" {
		t.Fatalf("login before setup: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, b := c.do("GET", "/setup", nil)
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("setup page: %d %v", res.StatusCode, res.Header)
	}
	if bytes.Contains(b, []byte("<script>")) || bytes.Contains(b, []byte(" onclick=")) {
		t.Fatal("inline script in a page")
	}
	form := url.Values{"username": {"admin"}, "password": {pw}, "confirm": {pw}}
	r := httptest.NewRequest("POST", "/setup", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://evil.example")
	if res, _ := c.send(r); res.StatusCode != 403 {
		t.Fatalf("cross-site setup: %d", res.StatusCode)
	}
	r = httptest.NewRequest("POST", "/setup", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, _ = c.send(r)
	if res.StatusCode != 303 || len(res.Cookies()) == 0 {
		t.Fatalf("setup post: %d", res.StatusCode)
	}
	e.user("vic", RoleViewer, pw)
	vc := e.login("vic", pw).cookieClient()
	for _, p := range []string{"/", "/devices", "/settings", "/system", "/firmware", "/static/app.js", "/static/vendor/htmx.min.js", "/static/vendor/uPlot.LICENSE"} {
		if res, b := vc.do("GET", p, nil); res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, res.StatusCode, b)
		}
	}
	for _, p := range []string{"/users", "/enroll"} {
		if res, _ := vc.do("GET", p, nil); res.StatusCode != 403 {
			t.Fatalf("viewer %s: %d", p, res.StatusCode)
		}
	}
	if res, _ := vc.do("GET", "/devices/ghost", nil); res.StatusCode != 404 {
		t.Fatalf("unknown device page: %d", res.StatusCode)
	}
	if res, _ := vc.do("GET", "/static/../deps.go", nil); res.StatusCode != 404 {
		t.Fatalf("static escape: %d", res.StatusCode)
	}
}

func TestPagesRender(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	e.addDevice("urn:imei:42", true)
	e.ingest("urn:imei:42", time.Now(), "3303/0/5700", lwm2m.Float(21), "3303/0/5701", lwm2m.String("Cel"), "3/0/0", lwm2m.String("Acme"))
	ac := a.cookieClient()
	for _, p := range []string{"/", "/devices", "/devices?q=42&online=true&sort=-lastSeen", "/devices/urn:imei:42", "/enroll", "/users", "/settings", "/system",
		"/ui/devices/rows?q=42", "/ui/devices/urn:imei:42/objects", "/ui/devices/urn:imei:42/operations", "/ui/devices/urn:imei:42/events", "/ui/dashboard"} {
		res, b := ac.do("GET", p, nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, res.StatusCode, b)
		}
		if p == "/devices/urn:imei:42" && (!bytes.Contains(b, []byte("Sensor Value")) || !bytes.Contains(b, []byte("Cel")) || !bytes.Contains(b, []byte("Acme"))) {
			t.Fatalf("device page lacks the object tree:\n%s", b)
		}
	}
	_ = store.RoleAdmin
}

type nopCloser struct{ *bytes.Buffer }

func ioNopCloser(r interface{ Read([]byte) (int, error) }) *readCloser { return &readCloser{r} }

type readCloser struct {
	r interface{ Read([]byte) (int, error) }
}

func (r *readCloser) Read(b []byte) (int, error) { return r.r.Read(b) }
func (r *readCloser) Close() error               { return nil }

func TestAdmission(t *testing.T) {
	e, a, o, v := adminEnv(t)
	if _, err := e.db.UpsertEndpoint(context.Background(), store.Endpoint{Name: "stranger", Pending: true, Online: false}); err != nil {
		t.Fatal(err)
	}
	if m := v.want(200, "GET", "/api/v1/devices?pending=true", nil); m["total"].(float64) != 1 {
		t.Fatalf("pending list: %v", m)
	}
	o.want(403, "POST", "/api/v1/devices/stranger/accept", nil)
	if m := a.want(200, "POST", "/api/v1/devices/stranger/accept", nil); m["pending"] == true {
		t.Fatalf("accept: %v", m)
	}
	a.want(409, "POST", "/api/v1/devices/stranger/accept", nil)
	a.want(404, "POST", "/api/v1/devices/ghost/accept", nil)
	o.want(403, "DELETE", "/api/v1/devices/stranger", nil)
	a.want(204, "DELETE", "/api/v1/devices/stranger", nil)
	a.want(404, "DELETE", "/api/v1/devices/stranger", nil)
	v.want(404, "GET", "/api/v1/devices/stranger", nil)
}

// After a restore the System page says a restart applies it and offers
// one when the appliance can restart itself, or says to restart by hand.
func TestRestoreThenRestart(t *testing.T) {
	e, a, o, _ := adminEnv(t)
	page := func() string {
		res, b := a.cookieClient().do("GET", "/system", nil)
		if res.StatusCode != 200 {
			t.Fatalf("system page: %d", res.StatusCode)
		}
		return string(b)
	}
	if p := page(); strings.Contains(p, "restore-pending") {
		t.Fatal("restart offered with nothing staged")
	}
	e.sys.restored = []byte("SQLite format 3\x00")
	if p := page(); !strings.Contains(p, `id="restart-by-hand"`) || strings.Contains(p, `id="restart-form"`) {
		t.Fatalf("not under systemd: want the by-hand hint, no button:\n%s", p)
	}
	if m := a.want(503, "POST", "/api/v1/system/restart", nil); !strings.Contains(m["error"].(string), "start it again") {
		t.Fatalf("restart by hand: %v", m)
	}
	e.sys.canRestart = true
	if p := page(); !strings.Contains(p, `id="restart-form"`) {
		t.Fatalf("under systemd: want the restart button:\n%s", p)
	}
	o.want(403, "POST", "/api/v1/system/restart", nil)
	a.want(202, "POST", "/api/v1/system/restart", nil)
	if e.sys.restarts != 1 {
		t.Fatalf("restarts = %d", e.sys.restarts)
	}
	// /healthz carries the start time a waiting page compares.
	if m := (&client{e: e}).want(200, "GET", "/healthz", nil); m["started"] == "" || m["started"] == nil {
		t.Fatalf("healthz: %v", m)
	}
}
