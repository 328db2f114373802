package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// Hostile web input (issue 13 §4): session fixation, role escalation,
// path traversal, malformed and oversized bodies, and XSS through every
// string a device controls. Brute force and CSRF are TestLoginLockout,
// TestLoginBackoff, TestCSRF and TestPageRestoreMultipartCSRF.

// sessionClient is a browser holding a session cookie with the given value.
func sessionClient(e *env, value string) *client {
	return &client{e: e, cookie: &http.Cookie{Name: sessionCookie, Value: value}}
}

// setCookie returns the session cookie a response leaves set (the last
// Set-Cookie of that name wins), or nil.
func setCookie(res *http.Response) *http.Cookie {
	var last *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie {
			last = ck
		}
	}
	return last
}

func TestSessionFixation(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, pw)

	// A value the attacker planted before login is no session.
	planted := "attacker-chosen-session-id"
	fx := sessionClient(e, planted)
	fx.want(401, "GET", "/api/v1/auth/me", nil)
	if res, _ := fx.do("GET", "/", nil); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Fatalf("page with planted cookie: %d %s", res.StatusCode, res.Header.Get("Location"))
	}

	// An earlier session, logged out, is dead everywhere.
	old := e.login("admin", pw)
	oldCookie := old.cookieClient()
	lo := oldCookie.req("POST", "/api/v1/auth/logout", nil)
	lo.Header.Set("X-CSRF-Token", old.csrf)
	if res, b := oldCookie.send(lo); res.StatusCode != 204 {
		t.Fatalf("logout: %d %s", res.StatusCode, b)
	}
	oldCookie.want(401, "GET", "/api/v1/auth/me", nil)
	(&client{e: e, token: old.token}).want(401, "GET", "/api/v1/auth/me", nil)
	if res, _ := oldCookie.do("GET", "/devices", nil); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Fatalf("page with logged-out cookie: %d", res.StatusCode)
	}
	if _, err := e.db.SessionByID(context.Background(), old.token); err == nil {
		t.Fatal("logout left the session in the store")
	}

	// Logging in while holding either value issues a new one, through
	// the API and through the login form; the held value stays dead.
	for _, held := range []string{planted, old.token} {
		c := sessionClient(e, held)
		res, b := c.do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": pw})
		ck := setCookie(res)
		if res.StatusCode != 200 || ck == nil || ck.Value == held || ck.Value == "" {
			t.Fatalf("API login holding %q: %d %s cookie %+v", held, res.StatusCode, b, ck)
		}
		var j struct{ Token string }
		json.Unmarshal(b, &j)
		if j.Token == held || j.Token != ck.Value {
			t.Fatalf("API login returned token %q for held %q", j.Token, held)
		}
		sessionClient(e, held).want(401, "GET", "/api/v1/auth/me", nil)
		sessionClient(e, ck.Value).want(200, "GET", "/api/v1/auth/me", nil)

		res = c.post("/login", url.Values{"username": {"admin"}, "password": {pw}, "next": {"/"}})
		ck2 := setCookie(res)
		if res.StatusCode != http.StatusSeeOther || ck2 == nil || ck2.Value == held || ck2.Value == ck.Value {
			t.Fatalf("form login holding %q: %d cookie %+v", held, res.StatusCode, ck2)
		}
		sessionClient(e, held).want(401, "GET", "/api/v1/auth/me", nil)
		sessionClient(e, ck2.Value).want(200, "GET", "/api/v1/auth/me", nil)
	}

	// The logout form ends the server-side session too.
	a := e.login("admin", pw).cookieClient()
	if res := a.post("/logout", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout form: %d", res.StatusCode)
	}
	a.want(401, "GET", "/api/v1/auth/me", nil)
	if _, err := e.db.SessionByID(context.Background(), a.cookie.Value); err == nil {
		t.Fatal("logout form left the session in the store")
	}
}

// route is one wired URL and the least role routes.go gives it.
type route struct{ method, path, role string }

// wiredRoutes reads the role of every route from the wiring source
// (routes.go and the files its helpers live in): echo keeps no record of
// a route's middleware. The caller checks the list against the router.
func wiredRoutes(t *testing.T) []route {
	t.Helper()
	line := regexp.MustCompile(`^\s*(e|api)\.(GET|POST|PUT|PATCH|DELETE|HEAD)\("([^"]+)", s\.\w+(.*)\)$`)
	role := regexp.MustCompile(`\b(viewer|operator|admin)\b`)
	var out []route
	for _, f := range []string{"routes.go", "api_logs.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			m := line.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			r := route{method: m[2], path: m[3], role: "public"}
			if m[1] == "api" {
				r.path = "/api/v1" + r.path
			}
			if rm := role.FindString(m[4]); rm != "" {
				r.role = rm
			}
			out = append(out, r)
		}
	}
	return out
}

// concrete fills a route's parameters with things that exist.
func concrete(p string) string {
	return strings.NewReplacer(":ep", "dev-1", ":name", "vic", ":id", "1", ":action", "cancel", "*", "x").Replace(p)
}

// snapshot is everything an admin-only request could change.
func snapshot(t *testing.T, e *env) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	us, err := e.db.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		fmt.Fprintf(&b, "user %s %s %v %s\n", u.Name, u.Role, u.Disabled, u.PasswordHash)
	}
	ts, _ := e.db.Tokens(ctx)
	for _, tk := range ts {
		fmt.Fprintf(&b, "token %s %s\n", tk.Name, tk.Role)
	}
	st, _ := e.db.Settings(ctx)
	sj, _ := json.Marshal(st)
	fmt.Fprintf(&b, "settings %s\n", sj)
	eps, _, _ := e.db.ListEndpoints(ctx, store.EndpointQuery{Limit: 100})
	for _, ep := range eps {
		c, _ := e.db.Credential(ctx, ep.Name)
		fmt.Fprintf(&b, "device %s pending=%v cred=%s/%x\n", ep.Name, ep.Pending, c.Mode, c.PSKKey)
	}
	fmt.Fprintf(&b, "restored=%v updated=%v restarts=%d\n", e.sys.restored != nil, e.sys.updated != nil, e.sys.restarts)
	return b.String()
}

func TestRoleEscalation(t *testing.T) {
	e, a, o, v := adminEnv(t)
	e.addDevice("dev-1", true)
	// Named API tokens of each role, made by the admin.
	tokOf := func(name string, r Role) *client {
		m := a.want(201, "POST", "/api/v1/tokens", map[string]string{"name": name, "role": string(r)})
		return &client{e: e, token: m["token"].(string)}
	}
	opTok, viewTok := tokOf("ci-op", RoleOperator), tokOf("ci-view", RoleViewer)

	routes := wiredRoutes(t)
	registered := 0
	for _, r := range e.srv.echo.Router().Routes() {
		if r.Method != "echo_route_not_found" && r.Method != "RouteNotFound" && !strings.HasPrefix(r.Method, "echo_") {
			registered++
		}
	}
	if len(routes) != registered || len(routes) < 90 {
		t.Fatalf("parsed %d routes from the wiring source, the router has %d", len(routes), registered)
	}

	// The wiring source is the code under test: pin what must stay
	// admin-only, so that a route quietly downgraded fails here too.
	mustBeAdmin := []string{
		"GET /api/v1/users", "POST /api/v1/users", "PATCH /api/v1/users/:name", "DELETE /api/v1/users/:name", "POST /api/v1/users/:name/unlock",
		"GET /api/v1/tokens", "POST /api/v1/tokens", "DELETE /api/v1/tokens/:id", "GET /api/v1/audit", "PUT /api/v1/settings",
		"DELETE /api/v1/devices/:ep", "POST /api/v1/devices/:ep/accept", "POST /api/v1/devices/:ep/revoke", "POST /api/v1/pki/ca",
		"GET /api/v1/system/backup", "POST /api/v1/system/restore", "POST /api/v1/system/update", "POST /api/v1/system/restart",
		"GET /users", "POST /users", "POST /users/:name", "POST /tokens", "POST /tokens/:id/revoke", "POST /settings",
		"POST /devices/:ep/accept", "POST /devices/:ep/delete", "POST /devices/:ep/revoke",
		"POST /system/restore", "POST /system/update", "POST /system/restart",
	}
	roleOf := map[string]string{}
	for _, r := range routes {
		roleOf[r.method+" "+r.path] = r.role
	}
	for _, k := range mustBeAdmin {
		if roleOf[k] != "admin" {
			t.Errorf("%s: wired for %q, must be admin", k, roleOf[k])
		}
	}

	// Bodies that would succeed for an admin, so a refusal is the role check.
	bodies := map[string]any{
		"POST /api/v1/users":          map[string]string{"name": "mallory", "role": "admin", "password": pw},
		"PATCH /api/v1/users/:name":   map[string]string{"role": "admin"},
		"POST /api/v1/tokens":         map[string]string{"name": "stolen", "role": "admin"},
		"PUT /api/v1/settings":        map[string]any{"retentionDays": 1, "allowUnknownDevices": false},
		"POST /api/v1/system/restart": map[string]any{},
		"POST /api/v1/pki/ca":         map[string]string{"certificate": "x"},
	}
	forms := map[string]url.Values{
		"POST /users":                   {"name": {"mallory"}, "role": {"admin"}, "password": {pw}},
		"POST /users/:name":             {"action": {"role"}, "role": {"admin"}},
		"POST /tokens":                  {"name": {"stolen"}, "role": {"admin"}},
		"POST /settings":                {"retentionDays": {"1"}},
		"POST /tokens/:id/revoke":       {},
		"POST /devices/:ep/delete":      {},
		"POST /devices/:ep/revoke":      {},
		"POST /devices/:ep/accept":      {},
		"POST /system/restart":          {},
		"POST /system/restore":          {},
		"POST /system/update":           {},
		"POST /deployments/:id/:action": {},
	}
	callers := []struct {
		name string
		role Role
		c    *client
	}{
		{"viewer session", RoleViewer, v}, {"viewer cookie", RoleViewer, v.cookieClient()}, {"viewer token", RoleViewer, viewTok},
		{"operator session", RoleOperator, o}, {"operator cookie", RoleOperator, o.cookieClient()}, {"operator token", RoleOperator, opTok},
	}
	before := snapshot(t, e)
	refused := 0
	for _, r := range routes {
		need := Role(r.role)
		if r.role == "public" || r.role == "viewer" {
			continue
		}
		key := r.method + " " + r.path
		for _, cl := range callers {
			if cl.role.rank() >= need.rank() {
				continue
			}
			isAPI := strings.HasPrefix(r.path, "/api/")
			if !isAPI && cl.c.token != "" {
				continue // pages are cookie-only: a bearer there is no session
			}
			p := concrete(r.path)
			var res *http.Response
			var b []byte
			if isAPI || r.method != "POST" {
				req := cl.c.req(r.method, p, bodies[key])
				if cl.c.cookie != nil && cl.c.token == "" {
					req.Header.Set("X-CSRF-Token", cl.c.csrf)
				}
				res, b = cl.c.send(req)
			} else {
				f := forms[key]
				if f == nil {
					f = url.Values{}
				}
				form := url.Values{}
				for k, vs := range f {
					form[k] = vs
				}
				form.Set("csrf", cl.c.csrf)
				req := httptest.NewRequest("POST", p, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.AddCookie(cl.c.cookie)
				res, b = cl.c.send(req)
			}
			if res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "may not do this") {
				t.Errorf("%s: %s %s: got %d, want 403 with a message: %.200s", cl.name, r.method, p, res.StatusCode, b)
			}
			refused++
		}
	}
	if refused < 150 {
		t.Fatalf("only %d refusals checked", refused)
	}
	t.Logf("%d routes wired, %d refusals checked", len(routes), refused)
	if after := snapshot(t, e); after != before {
		t.Fatalf("refused requests changed state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Not even one's own role: the users API is admin's alone.
	v.want(403, "PATCH", "/api/v1/users/vic", map[string]string{"role": "admin"})
	o.want(403, "PATCH", "/api/v1/users/olga", map[string]string{"role": "admin"})
	for name, role := range map[string]string{"vic": "viewer", "olga": "operator"} {
		if u, _ := e.db.UserByName(context.Background(), name); u.Role != role {
			t.Fatalf("%s is now %s", name, u.Role)
		}
	}
	// An operator does operator things, with a session and a token.
	o.want(202, "POST", "/api/v1/devices/dev-1/operations", map[string]string{"type": "read", "path": "3/0/0"})
	opTok.want(202, "POST", "/api/v1/devices/dev-1/operations", map[string]string{"type": "read", "path": "3/0/0"})
	v.want(403, "POST", "/api/v1/devices/dev-1/operations", map[string]string{"type": "read", "path": "3/0/0"})
	// And the admin can do what they could not, so the bodies were right.
	a.want(201, "POST", "/api/v1/users", map[string]string{"name": "mallory", "role": "admin", "password": pw})
	a.want(200, "PATCH", "/api/v1/users/vic", map[string]string{"role": "operator"})
}

// rawGet sends a request line exactly as given over a real TCP
// connection, so that no client library cleans or re-encodes the path.
func rawGet(t *testing.T, addr, target, token string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", target, addr, auth)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestPathTraversal(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	e.addDevice("dev-1", true)
	ts := httptest.NewServer(e.h)
	defer ts.Close()
	addr := ts.Listener.Addr().String()

	// The parent of static/ holds openapi.yaml and templates/: their
	// contents are the markers that must never come back from /static.
	secrets := []string{"openapi: 3", "{{define", "root:x:0:0", "root:*:0:0"}
	if code, body := rawGet(t, addr, "/static/app.js", ""); code != 200 || len(body) == 0 {
		t.Fatalf("static file itself: %d", code)
	}
	for _, target := range []string{
		"/static/../openapi.yaml", "/static/../templates/layout.html", "/static/../../../../../../etc/passwd",
		"/static/%2e%2e/openapi.yaml", "/static/%2E%2E/templates/layout.html", "/static/..%2fopenapi.yaml",
		"/static/..%2Ftemplates%2Flayout.html", "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		"/static/%252e%252e/openapi.yaml", "/static/%252e%252e%252fopenapi.yaml", "/static/..%5copenapi.yaml",
		"/static/....//openapi.yaml", "/static//etc/passwd", "/static/%00/../openapi.yaml",
		"/fw/../openapi.yaml", "/fw/..%2f..%2f..%2fetc%2fpasswd", "/fw/%2e%2e/%2e%2e/etc/passwd",
		"/devices/..%2f..%2fetc%2fpasswd", "/devices/%2e%2e", "/api/v1/devices/..%2f..%2fetc%2fpasswd",
		"/api/v1/devices/%2e%2e%2fopenapi.yaml/telemetry", "/ui/devices/..%2f..%2fetc%2fpasswd/objects",
		"/api/v1/devices/../../../etc/passwd", "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
	} {
		// With a session, so that device routes reach their lookup.
		code, body := rawGet(t, addr, target, a.token)
		if code != 400 && code != 404 && code != 301 && code != 308 {
			t.Errorf("GET %s: %d, want 400 or 404: %.200s", target, code, body)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s: body holds %q from outside: %.200s", target, s, body)
			}
		}
		if (code == 400 || code == 404) && errMessage(body) == "" {
			t.Errorf("GET %s: %d without a message: %.200s", target, code, body)
		}
	}
}

// errMessage is the error a response states: the JSON error, or the
// alert of an error page.
func errMessage(body string) string {
	var j struct{ Error string }
	if json.Unmarshal([]byte(body), &j) == nil {
		return j.Error
	}
	if m := regexp.MustCompile(`<p class="error" role="alert">([^<]+)</p>`).FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

// malformed is one bad body for a JSON route.
type malformed struct {
	name string
	ct   string
	body string
	want []int
}

func TestMalformedBodies(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	e.addDevice("dev-1", true)
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	deepArr := `{"name":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "}"
	huge := `{"name":"` + strings.Repeat("A", 2<<20) + `"}`
	common := []malformed{
		{"invalid JSON", "application/json", `{"name": "x",`, []int{400}},
		{"not JSON", "application/json", `name=x&role=admin`, []int{400}},
		{"array for object", "application/json", `[{"name":"x"}]`, []int{400, 422}},
		{"string", "application/json", `"x"`, []int{400, 422}},
		{"null", "application/json", `null`, []int{400, 422}},
		{"empty body", "application/json", ``, []int{400}},
		{"unknown field", "application/json", `{"nosuchfield":1}`, []int{400, 422}},
		{"wrong content type", "text/plain", `{"name":"x"}`, []int{415}},
		{"form content type", "application/x-www-form-urlencoded", `{"name":"x"}`, []int{415}},
		{"deeply nested", "application/json", deep, []int{400, 422}},
		{"deeply nested array", "application/json", deepArr, []int{400, 422}},
		{"over the limit", "application/json", huge, []int{413}},
		{"invalid UTF-8 and NUL", "application/json", "{\"name\":\"\xff\x00\"}", []int{400, 422}},
	}
	routes := []struct {
		method, path string
		shape        []malformed // wrong types in the right shape
	}{
		{"POST", "/api/v1/auth/login", []malformed{{"number for string", "application/json", `{"username":5,"password":"x"}`, []int{400}}}},
		{"POST", "/api/v1/devices", []malformed{{"number for string", "application/json", `{"endpoint":5,"security":{"mode":"psk"}}`, []int{400}},
			{"string for object", "application/json", `{"endpoint":"d2","security":"psk"}`, []int{400}}}},
		{"POST", "/api/v1/devices/dev-1/operations", []malformed{{"number for path", "application/json", `{"type":"read","path":3}`, []int{400}},
			{"string for array", "application/json", `{"type":"read","paths":"3/0/0"}`, []int{400}}}},
		{"POST", "/api/v1/enrollments", []malformed{{"number for string", "application/json", `{"endpoint":7}`, []int{400}}}},
		{"POST", "/api/v1/users", []malformed{{"number for password", "application/json", `{"name":"x1","role":"admin","password":1234567890123}`, []int{400}}}},
		{"PATCH", "/api/v1/users/vic", []malformed{{"number for role", "application/json", `{"role":3}`, []int{400}},
			{"string for bool", "application/json", `{"disabled":"true"}`, []int{400}}}},
		{"PUT", "/api/v1/settings", []malformed{{"string for number", "application/json", `{"retentionDays":"1"}`, []int{400}},
			{"string for array", "application/json", `{"autoObserve":"3/0/0"}`, []int{400}},
			{"huge number", "application/json", `{"retentionDays":1e400}`, []int{400}}}},
		{"POST", "/api/v1/tokens", []malformed{{"number for name", "application/json", `{"name":1,"role":"admin"}`, []int{400}}}},
		{"PUT", "/api/v1/devices/dev-1/log-policy", []malformed{{"string for object", "application/json", `"on"`, []int{400}}}},
	}
	before := snapshot(t, e)
	opsBefore, _ := e.db.Operations(context.Background(), store.OperationQuery{Limit: 1000})
	for _, r := range routes {
		for _, m := range append(append([]malformed{}, common...), r.shape...) {
			c := a
			if r.path == "/api/v1/auth/login" {
				c = &client{e: e, ip: fmt.Sprintf("198.51.100.%d", len(m.name))} // not the lockout under test
			}
			req := c.req(r.method, r.path, nil)
			req.Body = io.NopCloser(strings.NewReader(m.body))
			req.ContentLength = int64(len(m.body))
			if m.name == "over the limit" {
				req.ContentLength = -1 // streamed: the limit must hold while reading too
			}
			req.Header.Set("Content-Type", m.ct)
			res, b := c.send(req)
			ok := false
			for _, w := range m.want {
				ok = ok || res.StatusCode == w
			}
			var j map[string]string
			if !ok || json.Unmarshal(b, &j) != nil || j["error"] == "" {
				t.Errorf("%s %s %s: %d %.200s, want %v with a JSON error", r.method, r.path, m.name, res.StatusCode, b, m.want)
			}
		}
	}
	if after := snapshot(t, e); after != before {
		t.Fatalf("malformed bodies changed state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if ops, _ := e.db.Operations(context.Background(), store.OperationQuery{Limit: 1000}); len(ops) != len(opsBefore) {
		t.Fatalf("malformed bodies queued %d operations", len(ops)-len(opsBefore))
	}
}

// Payloads a device controls: its endpoint name, resource values, object
// links, and registration details.
const (
	xssScript = `<script>alert(1)</script>`
	xssImg    = `"><img src=x onerror=alert(1)>`
	xssJSURL  = `javascript:alert(1)`
	xssTmpl   = `{{.CSRF}}{{template "layout"}}`
)

var xssRaw = []string{xssScript, `<img src=x onerror=alert(1)>`, `href="javascript:`, `src="javascript:`}

func TestXSSDeviceStrings(t *testing.T) {
	e, a, _, _ := adminEnv(t)
	ctx := context.Background()
	now := time.Now()
	name := "ev" + xssScript + xssImg
	pending := "pend" + xssScript
	links := `</3/0>;title="` + xssScript + `",</` + xssImg + `>,<` + xssJSURL + `>`
	for _, d := range []store.Endpoint{
		{Name: name, Online: true, LastSeen: now, Lifetime: 300, Binding: "U" + xssScript, LwM2MVersion: "1.1" + xssImg, SecurityMode: "psk",
			ObjectLinks: links, RegisteredAt: now, FirmwareVersion: "1.0" + xssScript, Address: "10.0.0.1" + xssImg},
		{Name: pending, Pending: true, LastSeen: now, Lifetime: 300, Binding: "U", ObjectLinks: links, RegisteredAt: now},
	} {
		if _, err := e.db.UpsertEndpoint(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := e.db.RecordRegistration(ctx, d.Name, store.RegRegistered, now, "lt=300 "+xssScript+xssImg+xssTmpl); err != nil {
			t.Fatal(err)
		}
	}
	e.ingest(name, now,
		"3/0/0", lwm2m.String(xssScript), "3/0/1", lwm2m.String(xssImg), "3/0/2", lwm2m.String(xssJSURL),
		"3/0/3", lwm2m.String(xssTmpl), "5/0/1", lwm2m.String(xssJSURL), "3303/0/5701", lwm2m.String(xssImg))
	// A failed operation carries text from the device too.
	op, err := e.db.CreateOperation(ctx, store.Operation{Endpoint: name, Type: "read", Paths: []string{"3/0/0"}})
	if err != nil {
		t.Fatal(err)
	}
	e.db.ClaimOperation(ctx, op.ID)
	e.db.FailOperation(ctx, op.ID, "4.00 "+xssScript+xssImg)

	ck := a.cookieClient()
	ep, pep := urlPathEscape(name), urlPathEscape(pending)
	pages := []struct {
		path    string
		showsIt bool // the page lists the hostile device by name
	}{
		{"/", false}, {"/ui/dashboard", false}, {"/devices", true}, {"/devices?pending=1", true}, {"/ui/devices/rows", true},
		{"/devices/" + ep, true}, {"/ui/devices/" + ep + "/objects", false}, {"/ui/devices/" + ep + "/events", false},
		{"/ui/devices/" + ep + "/operations", false}, {"/ui/devices/" + ep + "/firmware", false},
		{"/devices/" + pep, true}, {"/enroll?endpoint=" + url.QueryEscape(name), false}, {"/logs", false}, {"/firmware", false},
	}
	escaped := []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;"}
	seen := map[string]bool{}
	for _, p := range pages {
		res, b := ck.do("GET", p.path, nil)
		body := string(b)
		if res.StatusCode != 200 {
			t.Errorf("GET %s: %d %.300s", p.path, res.StatusCode, body)
			continue
		}
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: content type %q", p.path, res.Header.Get("Content-Type"))
		}
		for _, raw := range xssRaw {
			if strings.Contains(body, raw) {
				i := strings.Index(body, raw)
				t.Errorf("GET %s: raw %q in the page: …%s…", p.path, raw, body[max(0, i-200):min(len(body), i+100)])
			}
		}
		if strings.Contains(body, "&lt;script&gt;alert(1)") {
			seen[p.path] = true
		}
		if p.showsIt {
			for _, esc := range escaped[:1] {
				if !strings.Contains(body, esc) {
					t.Errorf("GET %s: the device name is not shown escaped (%q)", p.path, esc)
				}
			}
		}
		checkCSP(t, p.path, res)
	}
	// The device page and its partials show each hostile value, escaped.
	var all strings.Builder
	for _, p := range []string{"/devices/" + ep, "/ui/devices/" + ep + "/objects", "/ui/devices/" + ep + "/events", "/ui/devices/" + ep + "/operations"} {
		_, b := ck.do("GET", p, nil)
		all.Write(b)
	}
	for _, esc := range append(escaped, "javascript:alert(1)", "{{.CSRF}}", "&#34;&gt;&lt;img") {
		if !strings.Contains(all.String(), esc) {
			t.Errorf("device page and partials do not show %q", esc)
		}
	}
	// Each device-controlled string where it is shown, escaped.
	for p, want := range map[string][]string{
		"/devices/" + ep:                    {"ev&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img", "1.0&lt;script&gt;"},
		"/ui/devices/" + ep + "/objects":    {"&lt;script&gt;alert(1)&lt;/script&gt;", "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;", "javascript:alert(1)", "{{.CSRF}}"},
		"/ui/devices/" + ep + "/events":     {"lt=300 &lt;script&gt;alert(1)&lt;/script&gt;"},
		"/ui/devices/" + ep + "/operations": {"4.00 &lt;script&gt;alert(1)&lt;/script&gt;"},
	} {
		_, b := ck.do("GET", p, nil)
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("GET %s: %q not shown", p, w)
			}
		}
	}
	if len(seen) < 5 {
		t.Errorf("hostile strings reached only %v", seen)
	}
	// The JSON API gives the strings back as JSON strings, never as HTML.
	res, b := a.do("GET", "/api/v1/devices/"+ep, nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || !strings.Contains(string(b), `\u003cscript\u003e`) {
		t.Errorf("API device: %d %s %.300s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
}

// checkCSP asserts the policy forbids inline script and eval.
func checkCSP(t *testing.T, path string, res *http.Response) {
	t.Helper()
	p := res.Header.Get("Content-Security-Policy")
	var script string
	for _, d := range strings.Split(p, ";") {
		d = strings.TrimSpace(d)
		if strings.HasPrefix(d, "script-src ") {
			script = d
		}
		if strings.HasPrefix(d, "default-src ") && script == "" {
			script = d
		}
	}
	if script == "" || strings.Contains(script, "'unsafe-inline'") || strings.Contains(script, "'unsafe-eval'") || strings.Contains(script, "*") ||
		strings.Contains(script, "data:") || !strings.Contains(p, "object-src 'none'") || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET %s: CSP %q allows inline script", path, p)
	}
}
