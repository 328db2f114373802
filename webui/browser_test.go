package webui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// waitLive waits until the page's EventSource is connected and the broker
// holds its subscription, so that what the test publishes next reaches it.
func waitLive(t *testing.T, ctx context.Context, e *env, before int) {
	t.Helper()
	browsertest.Step(t, ctx, "live connection", chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)))
	for e.broker.Subscribers() <= before {
		browsertest.Step(t, ctx, "poll subscribers", chromedp.Evaluate[chromedp.Void](`0`))
	}
}

func TestBrowserEndToEnd(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	// Cleanups run last-in first-out: the browser goes first, so that its
	// live connection is gone when the server waits for its requests.
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	ctx := browsertest.Start(t)
	u := srv.URL

	// First run: the dashboard sends us to the admin creation page.
	browsertest.Step(t, ctx, "first run",
		chromedp.Navigate(u+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#setup-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), pw),
	)
	browsertest.Shot(t, ctx, "01-first-run")
	browsertest.Step(t, ctx, "create admin",
		chromedp.Submit(chromedp.CSS(`#setup-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)

	// Log out and in again.
	browsertest.Step(t, ctx, "logout", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	browsertest.Step(t, ctx, "login",
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.Submit(chromedp.CSS(`#login-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)
	browsertest.Shot(t, ctx, "02-dashboard-empty")

	// A device registers while the device list is open: it appears live.
	e.addDevice("urn:imei:351111111111111", true)
	browsertest.Step(t, ctx, "devices page", chromedp.Navigate(u+"/devices"), chromedp.WaitVisible(chromedp.CSS(`#device-table`)))
	waitLive(t, ctx, e, 0)
	e.addDevice("urn:imei:352656100123456", true)
	browsertest.Step(t, ctx, "device appears live", chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="urn:imei:352656100123456"]`)))
	browsertest.Shot(t, ctx, "03-device-appeared-live")

	// A day of temperatures for the chart.
	ep := "urn:imei:352656100123456"
	now := time.Now()
	for i := 0; i < 48; i++ {
		e.ingest(ep, now.Add(-23*time.Hour+time.Duration(i)*28*time.Minute), "3303/0/5700", lwm2m.Float(20+3*float64(i%12)/12), "3303/0/5701", lwm2m.String("Cel"))
	}
	e.ingest(ep, now.Add(-time.Minute), "3/0/0", lwm2m.String("Nordic Semiconductor"), "3/0/1", lwm2m.String("nRF9160-DK"), "3/0/9", lwm2m.Int(87))
	e.ops.values.Store("3/0/0", lwm2m.String("Nordic Semiconductor ASA"))

	browsertest.Step(t, ctx, "device page",
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart .uplot canvas`)),
	)
	if n := browsertest.Eval(t, ctx, `document.getElementById("chart").dataset.points || ""`); n != "48" {
		t.Fatalf("chart has %q points, want 48", n)
	}
	browsertest.Shot(t, ctx, "04-device-chart")

	// Read from the device page.
	waitLive(t, ctx, e, 0)
	browsertest.Step(t, ctx, "read 3/0/0",
		chromedp.Click(chromedp.CSS(`button.act[data-op="read"][data-path="3/0/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-value-out`)),
	)
	if got := browsertest.Eval(t, ctx, `document.getElementById("op-value-out").textContent`); !strings.Contains(got, "Nordic Semiconductor ASA") {
		t.Fatalf("read result %q", got)
	}
	if got := browsertest.Eval(t, ctx, `document.getElementById("op-status").textContent`); got != "confirmed" {
		t.Fatalf("read status %q", got)
	}
	// The value read is stored and the tree updates by itself.
	browsertest.Poll(t, ctx, "tree shows the read value", `document.querySelector('.value[data-path="3/0/0"]').textContent === "Nordic Semiconductor ASA"`)
	browsertest.Step(t, ctx, "history shows the read", chromedp.WaitVisible(chromedp.CSS(`#op-table`)))
	browsertest.Shot(t, ctx, "05-read-from-device-page")

	// A new value arrives live on the chart.
	e.ingest(ep, time.Now(), "3303/0/5700", lwm2m.Float(25.5))
	browsertest.Poll(t, ctx, "chart grows live", `document.getElementById("chart").dataset.points === "49"`)

	// Enrollment wizard end to end.
	browsertest.Step(t, ctx, "enroll form",
		chromedp.Navigate(u+"/enroll"),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-form`)),
		chromedp.SendKeys(chromedp.CSS(`#endpoint`), "urn:imei:359999999999999"),
		chromedp.Click(chromedp.CSS(`input[name="mode"][value="psk"]`)),
	)
	browsertest.Shot(t, ctx, "06-enroll-choose")
	browsertest.Step(t, ctx, "provision",
		chromedp.Submit(chromedp.CSS(`#enroll-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#kconfig`)),
		chromedp.WaitVisible(chromedp.CSS(`#atcmds`)),
		chromedp.WaitVisible(chromedp.CSS(`#bundle`)),
	)
	if at := browsertest.Eval(t, ctx, `document.getElementById("atcmds").textContent`); !strings.Contains(at, `AT%CMNG=0,16842753,4,"urn:imei:359999999999999"`) {
		t.Fatalf("AT commands: %q", at)
	}
	if st := browsertest.Eval(t, ctx, `fetch(document.getElementById("bundle").href).then(r => r.status + " " + r.headers.get("content-type"))`); st != "200 application/zip" {
		t.Fatalf("bundle download: %s", st)
	}
	browsertest.Shot(t, ctx, "07-enroll-credentials")
	waitLive(t, ctx, e, 0)
	e.addDevice("urn:imei:359999999999999", true)
	browsertest.Step(t, ctx, "first registration seen", chromedp.WaitVisible(chromedp.CSS(`#enroll-wait[data-registered="1"]`)))
	if s := browsertest.Eval(t, ctx, `document.getElementById("enroll-status").textContent`); !strings.Contains(s, "registered") {
		t.Fatalf("wizard says %q", s)
	}
	browsertest.Shot(t, ctx, "08-enroll-registered")

	browsertest.Step(t, ctx, "dashboard", chromedp.Navigate(u+"/"), chromedp.WaitVisible(chromedp.CSS(`#recent-registrations`)))
	browsertest.Shot(t, ctx, "09-dashboard")
	browsertest.Step(t, ctx, "settings", chromedp.Navigate(u+"/settings"), chromedp.WaitVisible(chromedp.CSS(`#settings-form`)))
	browsertest.Shot(t, ctx, "10-settings")
	browsertest.Step(t, ctx, "users", chromedp.Navigate(u+"/users"), chromedp.WaitVisible(chromedp.CSS(`#add-user`)),
		chromedp.SendKeys(chromedp.CSS(`#new-name`), "vic"),
		chromedp.SetValue(chromedp.CSS(`#new-role`), "viewer"),
		chromedp.SendKeys(chromedp.CSS(`#new-password`), pw),
		chromedp.Submit(chromedp.CSS(`#add-user`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="vic"]`)),
	)
	browsertest.Shot(t, ctx, "11-users")
	browsertest.Step(t, ctx, "system", chromedp.Navigate(u+"/system"), chromedp.WaitVisible(chromedp.CSS(`#version`)))
	browsertest.Shot(t, ctx, "12-system")

	// A viewer sees the device but cannot act on it.
	browsertest.Step(t, ctx, "viewer login",
		chromedp.Click(chromedp.CSS(`header form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "vic"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.Submit(chromedp.CSS(`#login-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
	)
	if n := browsertest.Eval(t, ctx, `String(document.querySelectorAll("#op-form, button.act").length)`); n != "0" {
		t.Fatalf("viewer sees %s operation controls", n)
	}
	js := fmt.Sprintf(`fetch("/ui/devices/%s/op", {method: "POST", headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
		"Content-Type": "application/x-www-form-urlencoded"}, body: "type=write&path=1/0/1&value=5"}).then(r => r.status + "")`, ep)
	if st := browsertest.Eval(t, ctx, js); st != "403" {
		t.Fatalf("viewer write: %s", st)
	}
	js = `fetch("/api/v1/devices/` + ep + `/operations", {method: "POST", headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
		"Content-Type": "application/json"}, body: JSON.stringify({type: "write", path: "1/0/1", value: 5})}).then(r => r.json()).then(j => j.error)`
	if msg := browsertest.Eval(t, ctx, js); !strings.Contains(msg, "viewer") {
		t.Fatalf("viewer API write: %q", msg)
	}
	browsertest.Shot(t, ctx, "13-viewer-device")
	browsertest.Step(t, ctx, "viewer refused users page", chromedp.Navigate(u+"/users"), chromedp.WaitVisible(chromedp.CSS(`p.error`)))
	browsertest.Shot(t, ctx, "14-viewer-refused")
}
