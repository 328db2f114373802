package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNamedAPITokens(t *testing.T) {
	e, a, o, _ := adminEnv(t)
	o.want(403, "POST", "/api/v1/tokens", map[string]string{"name": "x", "role": "viewer"})
	o.want(403, "GET", "/api/v1/tokens", nil)
	m := a.want(201, "POST", "/api/v1/tokens", map[string]string{"name": "ci-deploy", "role": "operator", "expires": "90d"})
	secret, _ := m["token"].(string)
	if !strings.HasPrefix(secret, "fnx_") || m["role"] != "operator" || m["expires"] == nil {
		t.Fatalf("create: %v", m)
	}
	a.want(409, "POST", "/api/v1/tokens", map[string]string{"name": "CI-deploy", "role": "viewer"})
	for _, bad := range []map[string]string{{"name": "", "role": "viewer"}, {"name": "x", "role": "root"}, {"name": "x", "role": "viewer", "expires": "yesterday"},
		{"name": "x", "role": "viewer", "expires": "2001-01-01"}, {"name": "a b", "role": "viewer"}} {
		a.want(422, "POST", "/api/v1/tokens", bad)
	}
	// The token authenticates with its own role: an operator may queue,
	// not manage users.
	tc := &client{e: e, token: secret}
	tc.want(200, "GET", "/api/v1/devices", nil)
	tc.want(403, "GET", "/api/v1/users", nil)
	e.addDevice("urn:imei:1", true)
	tc.want(202, "POST", "/api/v1/devices/urn:imei:1/operations", map[string]any{"type": "read", "path": "3/0/0"})
	// Listed without the secret, with its last use.
	list := a.want(200, "GET", "/api/v1/tokens", nil)["tokens"].([]any)
	tok := list[0].(map[string]any)
	if len(list) != 1 || tok["token"] != nil || tok["lastUsed"] == nil || tok["createdBy"] != "admin" {
		t.Fatalf("list: %v", list)
	}
	// What it did is in the audit trail under its name.
	entries := a.want(200, "GET", "/api/v1/audit", nil)["entries"].([]any)
	if first := entries[0].(map[string]any); first["user"] != "token:ci-deploy" || !strings.HasPrefix(first["action"].(string), "operation read") {
		t.Fatalf("newest audit entry: %v", first)
	}
	a.want(404, "DELETE", "/api/v1/tokens/999", nil)
	a.want(204, "DELETE", fmt.Sprintf("/api/v1/tokens/%v", tok["id"]), nil)
	tc.want(401, "GET", "/api/v1/devices", nil)
	// Expired tokens stop working.
	m = a.want(201, "POST", "/api/v1/tokens", map[string]string{"name": "short", "role": "viewer", "expires": "1h"})
	e.clock.advance(2 * time.Hour)
	(&client{e: e, token: m["token"].(string)}).want(401, "GET", "/api/v1/devices", nil)
}

// The Users page creates a token, shows it once — still there on a
// reload in the same session, not in another — and revokes it.
func TestTokenPagePostRedirectGet(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	ck := a.cookieClient()
	form := url.Values{"csrf": {ck.csrf}, "name": {"nightly"}, "role": {"viewer"}, "expires": {"never"}}
	r := ck.req("POST", "/tokens", nil)
	r.Body = ioNopCloser(strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, _ := ck.send(r)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/users?token=") {
		t.Fatalf("create: %d %q", res.StatusCode, loc)
	}
	loc = strings.TrimSuffix(loc, "#tokens")
	show := func(c *client) string {
		res, b := c.do("GET", loc, nil)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d", loc, res.StatusCode)
		}
		return string(b)
	}
	first := show(ck)
	i := strings.Index(first, `id="new-token">`)
	if i < 0 {
		t.Fatal("token not shown after create")
	}
	secret := first[i+len(`id="new-token">`):]
	secret = secret[:strings.Index(secret, "<")]
	if !strings.Contains(show(ck), secret) {
		t.Fatal("token gone on reload in the same session")
	}
	other := e.login("admin", pw).cookieClient()
	if strings.Contains(show(other), secret) {
		t.Fatal("token shown to another session")
	}
	(&client{e: e, token: secret}).want(200, "GET", "/api/v1/devices", nil)
	toks, _ := e.db.Tokens(t.Context())
	form = url.Values{"csrf": {ck.csrf}}
	r = ck.req("POST", fmt.Sprintf("/tokens/%d/revoke", toks[0].ID), nil)
	r.Body = ioNopCloser(strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, _ := ck.send(r); res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "revoked") {
		t.Fatalf("revoke: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	(&client{e: e, token: secret}).want(401, "GET", "/api/v1/devices", nil)
}

func TestDeleteAndUnlockUsers(t *testing.T) {
	e, a, o, _ := adminEnv(t)
	o.want(403, "DELETE", "/api/v1/users/vic", nil)
	a.want(409, "DELETE", "/api/v1/users/admin", nil) // oneself, the last admin
	a.want(204, "DELETE", "/api/v1/users/vic", nil)
	a.want(404, "DELETE", "/api/v1/users/vic", nil)
	(&client{e: e}).want(401, "POST", "/api/v1/auth/login", map[string]string{"username": "vic", "password": pw})
	// The audit trail keeps what vic did and that vic was deleted.
	found := false
	for _, x := range a.want(200, "GET", "/api/v1/audit?limit=1000", nil)["entries"].([]any) {
		en := x.(map[string]any)
		if en["user"] == "vic" && en["action"] == "login" {
			found = true
		}
	}
	if !found {
		t.Fatal("the deleted user's login left the audit trail")
	}
	// A settings change says what changed.
	a.want(200, "PUT", "/api/v1/settings", map[string]any{"retentionDays": 7})
	if en := a.want(200, "GET", "/api/v1/audit?limit=1", nil)["entries"].([]any)[0].(map[string]any); en["action"] != "settings" || en["detail"] != "retentionDays 30 → 7" {
		t.Fatalf("settings audit: %v", en)
	}
	// Composite auto-observe is a setting too.
	a.want(200, "PUT", "/api/v1/settings", map[string]any{"compositeObjects": []int{3304, 3313}})
	if m := a.want(200, "GET", "/api/v1/settings", nil); fmt.Sprint(m["compositeObjects"]) != "[3304 3313]" {
		t.Fatalf("compositeObjects: %v", m)
	}
	a.want(422, "PUT", "/api/v1/settings", map[string]any{"compositeObjects": []int{-1}})
	if p := string(mustGet(t, a.cookieClient(), "/settings")); !strings.Contains(p, `id="composite-objects" value="3304, 3313"`) {
		t.Fatal("Settings page does not show the composite objects")
	}
	a.want(400, "GET", "/api/v1/audit?limit=0", nil)
	a.want(400, "GET", "/api/v1/audit?before=x", nil)
	o.want(403, "GET", "/api/v1/audit", nil)

	// Locked out from one address; an admin unlocks.
	c := &client{e: e, ip: "192.0.2.50"}
	for i := 0; i < 5; i++ {
		c.do("POST", "/api/v1/auth/login", map[string]string{"username": "olga", "password": "wrong"})
	}
	c.want(429, "POST", "/api/v1/auth/login", map[string]string{"username": "olga", "password": pw})
	if p := string(mustGet(t, a.cookieClient(), "/users")); !strings.Contains(p, `class="inline locked"`) {
		t.Fatal("Users page does not show the lock")
	}
	a.want(200, "POST", "/api/v1/users/olga/unlock", nil)
	c.want(200, "POST", "/api/v1/auth/login", map[string]string{"username": "olga", "password": pw})
}

// Locks from one address back off: the first is short, each next twice
// as long, up to the lockout; failures against a name from many addresses
// only slow it down by a capped backoff.
func TestLoginBackoff(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, pw)
	c := &client{e: e, ip: "192.0.2.7"}
	lock := func() time.Duration {
		for i := 0; i < 5; i++ {
			res, _ := c.do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "wrong"})
			if res.StatusCode == 429 {
				until := e.srv.limiter.lockedUntil("user:admin@192.0.2.7", e.clock.now())
				return until.Sub(e.clock.now()).Round(time.Minute)
			}
		}
		t.Fatal("never locked")
		return 0
	}
	if d := lock(); d != time.Minute {
		t.Fatalf("first lock %v, want 1m", d)
	}
	e.clock.advance(61 * time.Second)
	if d := lock(); d != 2*time.Minute {
		t.Fatalf("second lock %v, want 2m", d)
	}
	// Many addresses against one name: a backoff of at most a minute,
	// never a lock of the name everywhere.
	e2 := newEnv(t)
	e2.user("admin", RoleAdmin, pw)
	for i := 0; i < 30; i++ {
		(&client{e: e2, ip: fmt.Sprintf("192.0.2.%d", 100+i)}).do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "wrong"})
	}
	if w := e2.srv.nameLimiter.blocked("name:admin", e2.clock.now()); w <= 0 || w > time.Minute {
		t.Fatalf("name backoff %v, want (0, 1m]", w)
	}
	e2.clock.advance(time.Minute + time.Second)
	(&client{e: e2, ip: "192.0.2.1"}).want(200, "POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
}

func mustGet(t *testing.T, c *client, path string) []byte {
	t.Helper()
	res, b := c.do("GET", path, nil)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, res.StatusCode)
	}
	return b
}
