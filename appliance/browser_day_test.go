package appliance

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// supervisor runs the appliance the way systemd's Restart= does: when Run
// ends with ErrRestart it starts a new one on the same addresses.
type supervisor struct {
	t       *testing.T
	mu      sync.Mutex
	cur     *Appliance
	starts  int
	started chan *Appliance
	cancel  context.CancelFunc
	done    chan error
}

func supervise(t *testing.T, cfg Config) *supervisor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{t: t, started: make(chan *Appliance, 4), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- s.loop(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("appliance: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("appliance did not stop")
		}
	})
	s.next()
	return s
}

func (s *supervisor) loop(ctx context.Context, cfg Config) error {
	for {
		a, err := New(cfg, WithLogger(testLogger()), WithSelfRestart())
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		select {
		case <-a.Ready():
		case err := <-done:
			return err
		}
		s.mu.Lock()
		s.cur, s.starts = a, s.starts+1
		s.mu.Unlock()
		s.started <- a
		// A restart binds the very addresses the browser and devices use.
		ad := a.Addrs()
		cfg.Listen = ListenConfig{HTTP: ad.HTTP, CoAP: ad.CoAP, CoAPS: ad.CoAPS, Bootstrap: ad.Bootstrap, BootstrapDTLS: ad.BootstrapDTLS}
		if err := <-done; !errors.Is(err, ErrRestart) {
			return err
		}
	}
}

// next waits for the next start.
func (s *supervisor) next() *Appliance {
	s.t.Helper()
	select {
	case a := <-s.started:
		return a
	case err := <-s.done:
		s.t.Fatalf("appliance stopped: %v", err)
	case <-time.After(60 * time.Second):
		s.t.Fatal("appliance did not start")
	}
	return nil
}

func (s *supervisor) app() *Appliance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// fetchBase64 downloads url in the page (with its session) and returns
// "status content-type content-disposition" and the body.
func fetchBase64(t *testing.T, ctx context.Context, url string) (string, []byte) {
	t.Helper()
	js := fmt.Sprintf(`fetch(%q, {credentials: "same-origin"}).then(async r => {
		const b = new Uint8Array(await r.arrayBuffer()); let s = "";
		for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));
		return r.status + " " + r.headers.get("content-type") + " " + (r.headers.get("content-disposition") || "") + "\n" + btoa(s); })`, url)
	out := browsertest.Eval(t, ctx, js)
	head, b64, _ := strings.Cut(out, "\n")
	body, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("fetch %s: %v", url, err)
	}
	return head, body
}

// shotAt saves a screenshot at a viewport width, then goes back to 1280.
func shotAt(t *testing.T, ctx context.Context, width int64, name string) {
	t.Helper()
	browsertest.Step(t, ctx, "viewport "+name, chromedp.EmulateViewport(width, 844))
	browsertest.Shot(t, ctx, name)
	browsertest.Step(t, ctx, "viewport back", chromedp.EmulateViewport(1280, 900))
}

// enrollInWizard enrolls ep in mode through the wizard, reloads the
// credentials page (it must survive), and returns the bundle.
func enrollInWizard(t *testing.T, ctx context.Context, u, ep, mode, shot string) simulation.Bundle {
	t.Helper()
	browsertest.Step(t, ctx, "enroll "+mode,
		chromedp.Navigate(u+"/enroll"),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-form`)),
		chromedp.SendKeys(chromedp.CSS(`#endpoint`), ep),
		chromedp.Click(chromedp.CSS(`input[name="mode"][value="`+mode+`"]`)),
		chromedp.Submit(chromedp.CSS(`#enroll-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#kconfig`)),
	)
	before := browsertest.Eval(t, ctx, `document.getElementById("kconfig").textContent`)
	browsertest.Step(t, ctx, "reload credentials page", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#kconfig`)), chromedp.WaitVisible(chromedp.CSS(`#bundle`)))
	if after := browsertest.Eval(t, ctx, `document.getElementById("kconfig").textContent`); after != before || strings.Contains(browsertest.Eval(t, ctx, `document.body.textContent`), "already exists") {
		t.Fatalf("%s: the credentials page did not survive a reload", mode)
	}
	browsertest.Shot(t, ctx, shot)
	head, zip := fetchBase64(t, ctx, browsertest.Eval(t, ctx, `document.getElementById("bundle").href`))
	if !strings.HasPrefix(head, "200 application/zip") {
		t.Fatalf("bundle: %s", head)
	}
	b, err := simulation.ReadBundle(bytes.NewReader(zip))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBrowserOperatorsDay walks a technician's day on the real appliance
// in headless Chromium: first run, enrolling a PSK and a certificate
// device and connecting the simulator with the wizard's bundles, operating
// a device, live values, a backup, a restore applied by a restart, an API
// token created and revoked, and the audit trail; with screenshots at
// 1280 and 390 px in testdata/screenshots (day-*.png).
func TestBrowserOperatorsDay(t *testing.T) {
	ctx := browsertest.Start(t)
	sup := supervise(t, testConfig(t))
	a := sup.app()
	u := "http://" + a.Addrs().HTTP
	const pw = "correct-horse-battery"

	browsertest.Step(t, ctx, "first run",
		chromedp.Navigate(u+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#setup-form`)),
	)
	shotAt(t, ctx, 390, "day-01-first-run-390")
	browsertest.Step(t, ctx, "create the admin",
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), pw),
		chromedp.Submit(chromedp.CSS(`#setup-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)

	// Enroll a PSK and a certificate device; each connects with the
	// wizard's bundle and the wizard sees it arrive.
	devs := map[string]*simulation.Device{}
	for _, m := range []struct{ ep, mode string }{{"urn:imei:359000000000201", "psk"}, {"urn:imei:359000000000202", "x509"}} {
		b := enrollInWizard(t, ctx, u, m.ep, m.mode, "day-02-enroll-"+m.mode)
		browsertest.Step(t, ctx, "live", chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)))
		dial, err := simulation.DTLSDialer(b.ServerURI, b.Credentials, nil)
		if err != nil {
			t.Fatal(err)
		}
		dc := simulation.DefaultDeviceConfig()
		dc.Endpoint, dc.Server, dc.CoAP = b.Endpoint, b.ServerURI, fastCoAP()
		devs[m.mode] = runDevice(t, dc, simulation.WithDeviceDial(dial))
		browsertest.Step(t, ctx, m.mode+" device registered", chromedp.WaitVisible(chromedp.CSS(`#enroll-wait[data-registered="1"]`)))
	}
	browsertest.Shot(t, ctx, "day-03-enrolled")

	// The device list, live.
	browsertest.Step(t, ctx, "devices", chromedp.Navigate(u+"/devices"), chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="urn:imei:359000000000202"]`)))
	browsertest.Shot(t, ctx, "day-04-devices")
	shotAt(t, ctx, 390, "day-04-devices-390")

	// Operate the PSK device: read, and a reboot that asks first.
	ep := "urn:imei:359000000000201"
	temp := lwm2m.MustParsePath("/3303/0/5700")
	eventually(t, "temperature readings", func() bool {
		devs["psk"].Step(time.Now())
		pts, err := sup.app().db.Readings(context.Background(), ep, temp, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 10)
		return err == nil && len(pts) >= 2
	})
	browsertest.Step(t, ctx, "device page",
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#chart .uplot canvas`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)),
		chromedp.Click(chromedp.CSS(`button.act[data-op="read"][data-path="3/0/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-value-out`)),
	)
	browsertest.Eval(t, ctx, `(window.confirm = q => { window.asked = q; return false; }, "")`)
	// The objects tree reloads itself as values arrive, so the button is
	// found and clicked in one step in the page (a node looked up first
	// may be swapped out before the click reaches it).
	browsertest.Poll(t, ctx, "reboot button clicked", `(function () {
		var b = document.querySelector('button.act[data-op="execute"][data-path="3/0/4"]');
		if (!b) return false;
		b.click();
		return true;
	})()`)
	browsertest.Step(t, ctx, "reboot asks",
		chromedp.Click(chromedp.CSS(`#op-form button[type="submit"]`)),
	)
	browsertest.Poll(t, ctx, "reboot question", `(window.asked || "").includes("Reboot")`)

	// Live values: the chart grows and Last seen moves without a reload.
	points := browsertest.Eval(t, ctx, `document.getElementById("chart").dataset.points`)
	seen := browsertest.Eval(t, ctx, `document.getElementById("dev-lastseen").textContent`)
	eventually(t, "a live value on the page", func() bool {
		devs["psk"].Step(time.Now())
		return browsertest.Eval(t, ctx, `document.getElementById("chart").dataset.points`) != points
	})
	// Last seen shows seconds: new values a second later move it.
	eventually(t, "last seen moves on the page", func() bool {
		devs["psk"].Step(time.Now())
		return browsertest.Eval(t, ctx, `document.getElementById("dev-lastseen").textContent`) != seen
	})
	browsertest.Shot(t, ctx, "day-05-device")
	shotAt(t, ctx, 390, "day-05-device-390")

	// Back up: a .tar.gz by name and type.
	browsertest.Step(t, ctx, "system", chromedp.Navigate(u+"/system"), chromedp.WaitVisible(chromedp.CSS(`#version`)))
	head, backup := fetchBase64(t, ctx, "/api/v1/system/backup")
	if !strings.HasPrefix(head, "200 application/gzip") || !strings.Contains(head, `.tar.gz"`) || !bytes.HasPrefix(backup, []byte{0x1f, 0x8b}) {
		t.Fatalf("backup download: %s (%d bytes)", head, len(backup))
	}
	file := filepath.Join(t.TempDir(), "flownexus-backup.tar.gz")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	// A device enrolled after the backup is gone once it is restored.
	sup.app().db.Audit(context.Background(), auditAfterBackup)
	browsertest.Step(t, ctx, "restore",
		chromedp.SetUploadFiles(chromedp.CSS(`#restore-file`), []string{file}),
		chromedp.Click(chromedp.CSS(`#restore-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#restore-pending`)),
	)
	if f := browsertest.Eval(t, ctx, `document.querySelector(".flash").textContent`); !strings.Contains(f, "staged") || !strings.Contains(f, "restarts") {
		t.Fatalf("restore says %q", f)
	}
	browsertest.Shot(t, ctx, "day-06-restore-staged")
	browsertest.Eval(t, ctx, `(window.confirm = q => true, "")`)
	browsertest.Step(t, ctx, "restart", chromedp.Click(chromedp.CSS(`#restart-form button`)), chromedp.WaitVisible(chromedp.CSS(`#restarting`)))
	sup.next()
	browsertest.Step(t, ctx, "back after the restart", chromedp.WaitVisible(chromedp.CSS(`#version`)))
	if f := browsertest.Eval(t, ctx, `document.querySelector(".flash") ? document.querySelector(".flash").textContent : ""`); !strings.Contains(f, "restarted") {
		t.Fatalf("after the restart the page says %q", f)
	}
	if n := browsertest.Eval(t, ctx, `String(document.querySelectorAll("#restore-pending").length)`); n != "0" {
		t.Fatal("the restore is still pending after the restart")
	}
	log, _ := sup.app().db.AuditLog(context.Background(), 0, 1000)
	for _, e := range log {
		if e.Action == auditAfterBackup.Action {
			t.Fatal("the restore did not replace the data: an entry made after the backup is still there")
		}
	}

	// An API token: created and shown once, survives a reload, works,
	// revoked, stops working.
	browsertest.Step(t, ctx, "users", chromedp.Navigate(u+"/users"), chromedp.WaitVisible(chromedp.CSS(`#add-token`)),
		chromedp.SendKeys(chromedp.CSS(`#token-name`), "ci-deploy"),
		chromedp.SetValue(chromedp.CSS(`#token-role`), "operator"),
		chromedp.Submit(chromedp.CSS(`#add-token`)),
		chromedp.WaitVisible(chromedp.CSS(`#new-token`)),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#new-token`)),
	)
	token := strings.TrimSpace(browsertest.Eval(t, ctx, `document.getElementById("new-token").textContent`))
	bearer := func() int {
		req, _ := http.NewRequest("GET", u+"/api/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := bearer(); c != 200 {
		t.Fatalf("new token: %d", c)
	}
	browsertest.Shot(t, ctx, "day-07-token")
	shotAt(t, ctx, 390, "day-07-users-390")
	browsertest.Eval(t, ctx, `(window.confirm = q => { window.asked = q; return true; }, "")`)
	browsertest.Step(t, ctx, "revoke the token",
		chromedp.Click(chromedp.CSS(`tr[data-token="ci-deploy"] button.revoke`)),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-token="ci-deploy"]`)),
	)
	if c := bearer(); c != 401 {
		t.Fatalf("revoked token: %d", c)
	}

	// The audit trail on the System page.
	browsertest.Step(t, ctx, "audit", chromedp.Navigate(u+"/system"), chromedp.WaitVisible(chromedp.CSS(`#audit-table`)))
	audit := browsertest.Eval(t, ctx, `document.getElementById("audit-table").textContent`)
	for _, want := range []string{"restore applied", "token create", "token revoke", "ci-deploy", "login"} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit trail lacks %q:\n%s", want, audit)
		}
	}
	browsertest.Shot(t, ctx, "day-08-system-audit")
	shotAt(t, ctx, 390, "day-08-system-390")

	// At 390 px nothing overflows sideways and the header stays small.
	browsertest.Step(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(u+"/devices"), chromedp.WaitVisible(chromedp.CSS(`#device-table`)))
	if w := browsertest.Eval(t, ctx, `String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("at 390 px the page is %s px wide", w)
	}
	if h := browsertest.Eval(t, ctx, `String(document.querySelector("header.top").getBoundingClientRect().height < 844 / 6)`); h != "true" {
		t.Errorf("at 390 px the header takes more than a sixth of the screen")
	}
}

// auditAfterBackup is written after the backup: a restore removes it.
var auditAfterBackup = store.AuditEntry{Actor: "test", Action: "marker after backup"}
