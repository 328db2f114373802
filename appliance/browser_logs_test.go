package appliance

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// TestBrowserDeviceLogsLive: a device's log lines appear on its page in
// headless Chromium as they arrive, by Observe and by Send, without a
// reload; a line carrying HTML and script shows as text and runs nothing;
// the site-wide page filters by severity.
func TestBrowserDeviceLogsLive(t *testing.T) {
	ctx := browsertest.Start(t)
	ta := startAppliance(t, testConfig(t))
	ta.enableLogAutoStart(0)
	d, _ := ta.startDevice("urn:imei:352656100000077", nil)
	ta.waitLogObserved("urn:imei:352656100000077", "")

	browsertest.Step(t, ctx, "log in",
		chromedp.Navigate(ta.url+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`#login-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "correct-horse-battery"),
		chromedp.Submit(chromedp.CSS(`#login-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)
	browsertest.Step(t, ctx, "device page, log view empty, live tail open",
		chromedp.Navigate(ta.url+"/devices/urn:imei:352656100000077#logs"),
		chromedp.WaitVisible(chromedp.CSS(`#log-table`)),
		chromedp.WaitVisible(chromedp.CSS(`#log-empty`)),
		chromedp.WaitReady(chromedp.CSS(`body[data-logsse="open"]`)),
	)
	// Lines by Observe: the device logs, its notification carries them.
	for i := 0; i < 3; i++ {
		d.Step(time.Now())
	}
	browsertest.Poll(t, ctx, "three observed lines shown live",
		`document.querySelectorAll("#log-rows tr").length === 3 && document.querySelector("#log-rows tr td.logline").textContent.includes("step 3 temp=")`)

	// A line by Send, with HTML and script in it.
	evil := `<err> <script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	if err := d.Client().SendRecords(context.Background(), []lwm2m.Record{{Path: simulation.PathLogData, Value: lwm2m.Opaque([]byte(evil)), Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	browsertest.Poll(t, ctx, "sent line shown live, as text",
		`document.querySelectorAll("#log-rows tr").length === 4 && document.querySelector("#log-rows tr td.logline").textContent === `+jsString(evil))
	browsertest.Poll(t, ctx, "nothing of the line ran or became markup",
		`window.pwned === undefined && document.querySelectorAll("#log-rows img, #log-rows script").length === 0`)
	browsertest.Shot(t, ctx, "logs-01-device-live")

	// Reloaded, the server renders the same line escaped.
	browsertest.Step(t, ctx, "reload",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#log-table`)),
	)
	browsertest.Poll(t, ctx, "server-rendered line is text",
		`document.querySelectorAll("#log-rows tr").length === 4 && document.querySelector("#log-rows tr td.logline").textContent === `+jsString(evil)+` && window.pwned === undefined && document.querySelectorAll("#log-rows img").length === 0`)

	// The site-wide page, filtered to errors: the sent line only, and new
	// error lines arrive live while other severities do not.
	browsertest.Step(t, ctx, "site-wide logs, errors only",
		chromedp.Navigate(ta.url+"/logs?severity=err"),
		chromedp.WaitVisible(chromedp.CSS(`#log-table`)),
		chromedp.WaitReady(chromedp.CSS(`body[data-logsse="open"]`)),
	)
	browsertest.Poll(t, ctx, "one error line", `document.querySelectorAll("#log-rows tr").length === 1`)
	if err := d.Client().SendRecords(context.Background(), []lwm2m.Record{{Path: simulation.PathLogData, Value: lwm2m.Opaque([]byte("<inf> fine\n<err> modem: lost the network\n")), Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	browsertest.Poll(t, ctx, "the new error line, not the info line",
		`document.querySelectorAll("#log-rows tr").length === 2 && document.querySelector("#log-rows tr td.logline").textContent === "<err> modem: lost the network"`)
	browsertest.Shot(t, ctx, "logs-02-site-wide")
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	out := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			out = append(out, '\\', byte(r))
		default:
			out = append(out, string(r)...)
		}
	}
	return string(append(out, '"'))
}
