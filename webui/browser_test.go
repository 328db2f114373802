package webui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/flownexus/flownexus/lwm2m"
)

// browser starts Debian's chromium headless for the test, or skips loudly
// (fails under CI=true, where the browser must be installed).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed: the browser tests need `apt-get install -y chromium`")
		}
		t.Skip("!!! SKIPPING BROWSER TEST: chromium is not installed (apt-get install -y chromium) !!!")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs actions with a bound so that a missing element fails the test
// instead of hanging it.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		shot(t, ctx, "FAILED-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a full-page screenshot under testdata/screenshots.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join("testdata", "screenshots")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// poll waits until a JavaScript condition holds in the page.
func poll(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(sctx, chromedp.Poll[bool](cond)); err != nil {
		shot(t, ctx, "FAILED-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

func evalString(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %q: %v", js, err)
	}
	return s
}

// waitLive waits until the page's EventSource is connected and the broker
// holds its subscription, so that what the test publishes next reaches it.
func waitLive(t *testing.T, ctx context.Context, e *env, before int) {
	t.Helper()
	step(t, ctx, "live connection", chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)))
	for e.broker.Subscribers() <= before {
		step(t, ctx, "poll subscribers", chromedp.Evaluate[chromedp.Void](`0`))
	}
}

func TestBrowserEndToEnd(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	// Cleanups run last-in first-out: the browser goes first, so that its
	// live connection is gone when the server waits for its requests.
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	ctx := browser(t)
	u := srv.URL

	// First run: the dashboard sends us to the admin creation page.
	step(t, ctx, "first run",
		chromedp.Navigate(u+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#setup-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), pw),
	)
	shot(t, ctx, "01-first-run")
	step(t, ctx, "create admin",
		chromedp.Submit(chromedp.CSS(`#setup-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)

	// Log out and in again.
	step(t, ctx, "logout", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	step(t, ctx, "login",
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.Submit(chromedp.CSS(`#login-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)
	shot(t, ctx, "02-dashboard-empty")

	// A device registers while the device list is open: it appears live.
	e.addDevice("urn:imei:351111111111111", true)
	step(t, ctx, "devices page", chromedp.Navigate(u+"/devices"), chromedp.WaitVisible(chromedp.CSS(`#device-table`)))
	waitLive(t, ctx, e, 0)
	e.addDevice("urn:imei:352656100123456", true)
	step(t, ctx, "device appears live", chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="urn:imei:352656100123456"]`)))
	shot(t, ctx, "03-device-appeared-live")

	// A day of temperatures for the chart.
	ep := "urn:imei:352656100123456"
	now := time.Now()
	for i := 0; i < 48; i++ {
		e.ingest(ep, now.Add(-23*time.Hour+time.Duration(i)*28*time.Minute), "3303/0/5700", lwm2m.Float(20+3*float64(i%12)/12), "3303/0/5701", lwm2m.String("Cel"))
	}
	e.ingest(ep, now.Add(-time.Minute), "3/0/0", lwm2m.String("Nordic Semiconductor"), "3/0/1", lwm2m.String("nRF9160-DK"), "3/0/9", lwm2m.Int(87))
	e.ops.values.Store("3/0/0", lwm2m.String("Nordic Semiconductor ASA"))

	step(t, ctx, "device page",
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart .uplot canvas`)),
	)
	if n := evalString(t, ctx, `document.getElementById("chart").dataset.points || ""`); n != "48" {
		t.Fatalf("chart has %q points, want 48", n)
	}
	shot(t, ctx, "04-device-chart")

	// Read from the device page.
	waitLive(t, ctx, e, 0)
	step(t, ctx, "read 3/0/0",
		chromedp.Click(chromedp.CSS(`button.act[data-op="read"][data-path="3/0/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-value-out`)),
	)
	if got := evalString(t, ctx, `document.getElementById("op-value-out").textContent`); !strings.Contains(got, "Nordic Semiconductor ASA") {
		t.Fatalf("read result %q", got)
	}
	if got := evalString(t, ctx, `document.getElementById("op-status").textContent`); got != "confirmed" {
		t.Fatalf("read status %q", got)
	}
	// The value read is stored and the tree updates by itself.
	poll(t, ctx, "tree shows the read value", `document.querySelector('.value[data-path="3/0/0"]').textContent === "Nordic Semiconductor ASA"`)
	step(t, ctx, "history shows the read", chromedp.WaitVisible(chromedp.CSS(`#op-table`)))
	shot(t, ctx, "05-read-from-device-page")

	// A new value arrives live on the chart.
	e.ingest(ep, time.Now(), "3303/0/5700", lwm2m.Float(25.5))
	poll(t, ctx, "chart grows live", `document.getElementById("chart").dataset.points === "49"`)

	// Enrollment wizard end to end.
	step(t, ctx, "enroll form",
		chromedp.Navigate(u+"/enroll"),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-form`)),
		chromedp.SendKeys(chromedp.CSS(`#endpoint`), "urn:imei:359999999999999"),
		chromedp.Click(chromedp.CSS(`input[name="mode"][value="psk"]`)),
	)
	shot(t, ctx, "06-enroll-choose")
	step(t, ctx, "provision",
		chromedp.Submit(chromedp.CSS(`#enroll-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#kconfig`)),
		chromedp.WaitVisible(chromedp.CSS(`#atcmds`)),
		chromedp.WaitVisible(chromedp.CSS(`#bundle`)),
	)
	if at := evalString(t, ctx, `document.getElementById("atcmds").textContent`); !strings.Contains(at, `AT%CMNG=0,16842753,4,"urn:imei:359999999999999"`) {
		t.Fatalf("AT commands: %q", at)
	}
	if st := evalString(t, ctx, `fetch(document.getElementById("bundle").href).then(r => r.status + " " + r.headers.get("content-type"))`); st != "200 application/zip" {
		t.Fatalf("bundle download: %s", st)
	}
	shot(t, ctx, "07-enroll-credentials")
	waitLive(t, ctx, e, 0)
	e.addDevice("urn:imei:359999999999999", true)
	step(t, ctx, "first registration seen", chromedp.WaitVisible(chromedp.CSS(`#enroll-wait[data-registered="1"]`)))
	if s := evalString(t, ctx, `document.getElementById("enroll-status").textContent`); !strings.Contains(s, "registered") {
		t.Fatalf("wizard says %q", s)
	}
	shot(t, ctx, "08-enroll-registered")

	step(t, ctx, "dashboard", chromedp.Navigate(u+"/"), chromedp.WaitVisible(chromedp.CSS(`#recent-registrations`)))
	shot(t, ctx, "09-dashboard")
	step(t, ctx, "settings", chromedp.Navigate(u+"/settings"), chromedp.WaitVisible(chromedp.CSS(`#settings-form`)))
	shot(t, ctx, "10-settings")
	step(t, ctx, "users", chromedp.Navigate(u+"/users"), chromedp.WaitVisible(chromedp.CSS(`#add-user`)),
		chromedp.SendKeys(chromedp.CSS(`#new-name`), "vic"),
		chromedp.SetValue(chromedp.CSS(`#new-role`), "viewer"),
		chromedp.SendKeys(chromedp.CSS(`#new-password`), pw),
		chromedp.Submit(chromedp.CSS(`#add-user`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="vic"]`)),
	)
	shot(t, ctx, "11-users")
	step(t, ctx, "system", chromedp.Navigate(u+"/system"), chromedp.WaitVisible(chromedp.CSS(`#version`)))
	shot(t, ctx, "12-system")

	// A viewer sees the device but cannot act on it.
	step(t, ctx, "viewer login",
		chromedp.Click(chromedp.CSS(`header form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "vic"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.Submit(chromedp.CSS(`#login-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
	)
	if n := evalString(t, ctx, `String(document.querySelectorAll("#op-form, button.act").length)`); n != "0" {
		t.Fatalf("viewer sees %s operation controls", n)
	}
	js := fmt.Sprintf(`fetch("/ui/devices/%s/op", {method: "POST", headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
		"Content-Type": "application/x-www-form-urlencoded"}, body: "type=write&path=1/0/1&value=5"}).then(r => r.status + "")`, ep)
	if st := evalString(t, ctx, js); st != "403" {
		t.Fatalf("viewer write: %s", st)
	}
	js = `fetch("/api/v1/devices/` + ep + `/operations", {method: "POST", headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
		"Content-Type": "application/json"}, body: JSON.stringify({type: "write", path: "1/0/1", value: 5})}).then(r => r.json()).then(j => j.error)`
	if msg := evalString(t, ctx, js); !strings.Contains(msg, "viewer") {
		t.Fatalf("viewer API write: %q", msg)
	}
	shot(t, ctx, "13-viewer-device")
	step(t, ctx, "viewer refused users page", chromedp.Navigate(u+"/users"), chromedp.WaitVisible(chromedp.CSS(`p.error`)))
	shot(t, ctx, "14-viewer-refused")
}
