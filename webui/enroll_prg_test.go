package webui

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func postForm(c *client, path string, form url.Values) *http.Response {
	form.Set("csrf", c.csrf)
	r := c.req("POST", path, nil)
	r.Body = ioNopCloser(strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, _ := c.send(r)
	return res
}

var pskKeyRE = regexp.MustCompile(`id="psk-key">([0-9a-f]+)<`)

// The wizard posts, redirects and gets: a reload shows the same
// credentials instead of a 409, another user does not see them, and an
// existing device is offered a re-key.
func TestEnrollPostRedirectGetAndRekey(t *testing.T) {
	e, a, o, _ := adminEnv(t)
	ac, oc := a.cookieClient(), o.cookieClient()
	const ep = "urn:imei:359000000000001"
	res := postForm(oc, "/enroll", url.Values{"endpoint": {ep}, "mode": {"psk"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/enroll/") {
		t.Fatalf("enroll: %d %q", res.StatusCode, loc)
	}
	key := func(c *client, path string) string {
		res, b := c.do("GET", path, nil)
		if res.StatusCode != 200 {
			return ""
		}
		m := pskKeyRE.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no PSK on %s", path)
		}
		return string(m[1])
	}
	k1 := key(oc, loc)
	if k1 == "" || key(oc, loc) != k1 {
		t.Fatal("a reload does not show the same credentials")
	}
	if key(ac, loc) != "" {
		t.Fatal("another user sees the credentials")
	}
	// Enrolling the same name again offers a re-key, to admins.
	r := oc.req("POST", "/enroll", nil)
	r.Body = ioNopCloser(strings.NewReader(url.Values{"csrf": {oc.csrf}, "endpoint": {ep}, "mode": {"psk"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, b := oc.send(r)
	if res.StatusCode != http.StatusConflict || !strings.Contains(string(b), "provisioned already") || !strings.Contains(string(b), "Ask an admin") {
		t.Fatalf("operator enrolling twice: %d %s", res.StatusCode, b)
	}
	r = ac.req("POST", "/enroll", nil)
	r.Body = ioNopCloser(strings.NewReader(url.Values{"csrf": {ac.csrf}, "endpoint": {ep}, "mode": {"psk"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, b = ac.send(r); !strings.Contains(string(b), `id="rekey-form"`) {
		t.Fatalf("admin enrolling twice: %d, no re-key offered", res.StatusCode)
	}
	if res := postForm(oc, "/enroll", url.Values{"endpoint": {ep}, "mode": {"psk"}, "rekey": {"1"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("operator re-key: %d", res.StatusCode)
	}
	res = postForm(ac, "/enroll", url.Values{"endpoint": {ep}, "mode": {"psk"}, "rekey": {"1"}})
	loc2 := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasSuffix(loc2, "?rekeyed=1") {
		t.Fatalf("re-key: %d %q", res.StatusCode, loc2)
	}
	k2 := key(ac, loc2)
	cred, err := e.db.Credential(t.Context(), ep)
	if k2 == "" || k2 == k1 || err != nil || string(cred.PSKKey) == "" {
		t.Fatalf("re-key: old %s new %s, stored %+v %v", k1, k2, cred, err)
	}
	if res := postForm(ac, "/enroll", url.Values{"endpoint": {"urn:imei:unknown1"}, "mode": {"psk"}, "rekey": {"1"}}); res.StatusCode != http.StatusNotFound {
		t.Fatalf("re-key of an unknown device: %d", res.StatusCode)
	}
	// Expired or unknown enrollments say why.
	if res, b := oc.do("GET", "/enroll/0000", nil); res.StatusCode != 404 || !strings.Contains(string(b), "re-key") {
		t.Fatalf("unknown enrollment: %d", res.StatusCode)
	}
	// The audit trail names both.
	log, _ := e.db.AuditLog(t.Context(), 0, 10)
	var actions []string
	for _, l := range log {
		actions = append(actions, l.Actor+" "+l.Action+" "+l.Target)
	}
	all := strings.Join(actions, "\n")
	if !strings.Contains(all, "admin re-key psk "+ep) || !strings.Contains(all, "olga provision psk "+ep) {
		t.Fatalf("audit:\n%s", all)
	}
}
