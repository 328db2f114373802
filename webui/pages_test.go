package webui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// post sends a browser form with the session cookie and CSRF field.
func (c *client) post(path string, form url.Values) *http.Response {
	c.e.t.Helper()
	if c.csrf != "" {
		form.Set("csrf", c.csrf)
	}
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.cookie != nil {
		r.AddCookie(c.cookie)
	}
	if c.ip != "" {
		r.RemoteAddr = c.ip + ":1234"
	}
	res, _ := c.send(r)
	return res
}

func location(res *http.Response) string {
	l, _ := url.QueryUnescape(res.Header.Get("Location"))
	return l
}

func TestPageForms(t *testing.T) {
	e, a, o, v := adminEnv(t)
	ac, oc, vc := a.cookieClient(), o.cookieClient(), v.cookieClient()

	// Users.
	if res := ac.post("/users", url.Values{"name": {"neo"}, "role": {"operator"}, "password": {pw}}); !strings.Contains(location(res), "Added neo") {
		t.Fatalf("add user: %d %s", res.StatusCode, location(res))
	}
	if res := ac.post("/users", url.Values{"name": {"neo"}, "role": {"operator"}, "password": {pw}}); !strings.Contains(location(res), "error=") {
		t.Fatalf("duplicate user: %s", location(res))
	}
	if res := ac.post("/users/neo", url.Values{"action": {"password"}, "password": {"x"}}); !strings.Contains(location(res), "at least 10") {
		t.Fatalf("short password: %s", location(res))
	}
	if res := ac.post("/users/admin", url.Values{"action": {"disable"}}); !strings.Contains(location(res), "last enabled admin") {
		t.Fatalf("disable last admin: %s", location(res))
	}
	if res := ac.post("/users/neo", url.Values{"action": {"fly"}}); !strings.Contains(location(res), "unknown action") {
		t.Fatalf("unknown action: %s", location(res))
	}
	if res := oc.post("/users", url.Values{"name": {"x"}, "role": {"viewer"}, "password": {pw}}); res.StatusCode != 403 {
		t.Fatalf("operator adds user: %d", res.StatusCode)
	}
	if res := (&client{e: e, cookie: a.cookie}).post("/users", url.Values{"name": {"x"}, "role": {"viewer"}, "password": {pw}}); res.StatusCode != 403 {
		t.Fatalf("form without CSRF: %d", res.StatusCode)
	}

	// Settings.
	if res := ac.post("/settings", url.Values{"retentionDays": {"14"}, "queueWindowSeconds": {"90"}, "autoObserve": {"3303/0/5700\n3/0/9\n"}, "allowUnknownDevices": {"on"}}); !strings.Contains(location(res), "saved") {
		t.Fatalf("settings: %s", location(res))
	}
	if m := v.want(200, "GET", "/api/v1/settings", nil); m["retentionDays"].(float64) != 14 || len(m["autoObserve"].([]any)) != 2 {
		t.Fatalf("settings saved: %v", m)
	}
	if res := ac.post("/settings", url.Values{"retentionDays": {"forever"}, "queueWindowSeconds": {"90"}}); !strings.Contains(location(res), "whole number") {
		t.Fatalf("bad settings: %s", location(res))
	}
	if res := vc.post("/settings", url.Values{"retentionDays": {"1"}, "queueWindowSeconds": {"1"}}); res.StatusCode != 403 {
		t.Fatalf("viewer settings: %d", res.StatusCode)
	}

	// Enrollment wizard refusals stay on the form with the reason.
	for _, f := range []url.Values{{"endpoint": {""}, "mode": {"psk"}}, {"endpoint": {"a b"}, "mode": {"psk"}}, {"endpoint": {"ok"}, "mode": {"wep"}}} {
		if res := oc.post("/enroll", f); res.StatusCode != 422 {
			t.Fatalf("enroll %v: %d", f, res.StatusCode)
		}
	}
	if res := oc.post("/enroll", url.Values{"endpoint": {"dev-e"}, "mode": {"x509"}}); res.StatusCode != 303 || !strings.HasPrefix(location(res), "/enroll/") {
		t.Fatalf("enroll x509: %d %s", res.StatusCode, location(res))
	}
	if res := oc.post("/enroll", url.Values{"endpoint": {"dev-e"}, "mode": {"x509"}}); res.StatusCode != 409 {
		t.Fatalf("enroll twice: %d", res.StatusCode)
	}
	if res := vc.post("/enroll", url.Values{"endpoint": {"v"}, "mode": {"psk"}}); res.StatusCode != 403 {
		t.Fatalf("viewer enroll: %d", res.StatusCode)
	}

	// Operations from the device page.
	e.addDevice("dev", true)
	r := httptest.NewRequest("POST", "/ui/devices/dev/op", strings.NewReader("type=write&path=3/0/0&value=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-CSRF-Token", o.csrf)
	r.Header.Set("HX-Request", "true")
	r.AddCookie(o.cookie)
	if res, b := oc.send(r); res.StatusCode != 200 || !strings.Contains(string(b), "cannot be written") {
		t.Fatalf("page write to read-only: %d %s", res.StatusCode, b)
	}

	// Login page: wrong password stays on the page with 401, the lockout
	// with 429.
	anon := &client{e: e, ip: "198.51.100.1"}
	for i := 0; i < 4; i++ {
		if res := anon.post("/login", url.Values{"username": {"olga"}, "password": {fmt.Sprint("nope", i)}}); res.StatusCode != 401 {
			t.Fatalf("wrong login page: %d", res.StatusCode)
		}
	}
	if res := anon.post("/login", url.Values{"username": {"olga"}, "password": {"nope"}}); res.StatusCode != 429 {
		t.Fatalf("login page lockout: %d", res.StatusCode)
	}
	if res := (&client{e: e}).post("/login", url.Values{"username": {"admin"}, "password": {pw}, "next": {"//evil.example/"}}); res.StatusCode != 303 || location(res) != "/" {
		t.Fatalf("login redirect: %d %s", res.StatusCode, location(res))
	}
	// Setup is closed once an admin exists.
	if res := anon.post("/setup", url.Values{"username": {"x"}, "password": {pw}, "confirm": {pw}}); location(res) != "/login" {
		t.Fatalf("setup after setup: %s", location(res))
	}
	// Logout ends the session.
	if res := ac.post("/logout", url.Values{}); location(res) != "/login" {
		t.Fatalf("logout: %s", location(res))
	}
	ac.want(401, "GET", "/api/v1/auth/me", nil)
}

func TestDeviceListPaging(t *testing.T) {
	e, _, _, v := adminEnv(t)
	for i := 0; i < 120; i++ {
		e.addDevice(fmt.Sprintf("d%03d", i), true)
	}
	vc := v.cookieClient()
	res, b := vc.do("GET", "/devices?offset=50&limit=50", nil)
	body := string(b)
	if res.StatusCode != 200 || !strings.Contains(body, "51–100 of 120") || !strings.Contains(body, "offset=0") || !strings.Contains(body, "offset=100") || !strings.Contains(body, ">d050<") {
		t.Fatalf("page 2: %d %s", res.StatusCode, body)
	}
	res, b = vc.do("GET", "/ui/devices/rows?q=d11", nil)
	if res.StatusCode != 200 || !strings.Contains(string(b), "1–10 of 10") {
		t.Fatalf("search rows: %d %s", res.StatusCode, b)
	}
	if res, _ := vc.do("GET", "/devices?sort=shoe", nil); res.StatusCode != 400 {
		t.Fatalf("bad sort page: %d", res.StatusCode)
	}
}

func TestPageRestoreMultipartCSRF(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	send := func(csrf string, body string) *http.Response {
		var buf strings.Builder
		buf.WriteString("--zz\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + csrf + "\r\n")
		buf.WriteString("--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.db\"\r\n\r\n" + body + "\r\n--zz--\r\n")
		r := httptest.NewRequest("POST", "/system/restore", strings.NewReader(buf.String()))
		r.Header.Set("Content-Type", "multipart/form-data; boundary=zz")
		r.AddCookie(a.cookie)
		res, _ := a.cookieClient().send(r)
		return res
	}
	if res := send("wrong", "SQLite format 3\x00x"); res.StatusCode != 403 {
		t.Fatalf("restore form with a wrong CSRF token: %d", res.StatusCode)
	}
	if res := send(a.csrf, "SQLite format 3\x00x"); res.StatusCode != 303 || !strings.Contains(location(res), "staged") || !strings.Contains(location(res), "restarts") || e.sys.restored == nil {
		t.Fatalf("restore form: %d %s", res.StatusCode, location(res))
	}
	if res := send(a.csrf, "junk"); !strings.Contains(location(res), "not a FlowNexus backup") {
		t.Fatalf("restore junk: %s", location(res))
	}
}
