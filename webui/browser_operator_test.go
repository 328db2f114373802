package webui

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/webui/browsertest"
)

func (o *testOps) queuedCopy() []OperationRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]OperationRequest(nil), o.queued...)
}

// The device page opens only objects with recent values, formats Time
// resources and units from the model, leaves constants out of the chart
// picker, lets execute arguments be typed before sending, and asks before
// a destructive execute.
func TestBrowserDevicePageOperatorFixes(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	ctx := browsertest.Start(t)
	u := srv.URL
	browsertest.CreateAdmin(t, ctx, u, "admin", pw)
	ep := "urn:imei:352656100000077"
	e.addDevice(ep, true)
	now := time.Now()
	e.ingest(ep, now.Add(-time.Minute), "3303/0/5700", lwm2m.Float(21.5), "3303/0/5603", lwm2m.Float(-40), "3303/0/5604", lwm2m.Float(85))
	e.ingest(ep, now, "3303/0/5700", lwm2m.Float(22))
	e.ingest(ep, now.Add(-2*time.Minute), "3/0/13", lwm2m.Int(1796176491), "3/0/9", lwm2m.Int(89))

	browsertest.Step(t, ctx, "device page",
		chromedp.Navigate(u+"/devices/"+ep),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
	)
	if open := browsertest.Eval(t, ctx, `[...document.querySelectorAll("details.object[open]")].map(d => d.dataset.object).join(",")`); open != "3,3303" {
		t.Errorf("open objects %q, want 3,3303 (the ones with recent values)", open)
	}
	if v := browsertest.Eval(t, ctx, `document.querySelector('.value[data-path="3/0/13"]').textContent`); v != "2026-12-02 01:54:51Z" {
		t.Errorf("Current Time shows %q, want a date", v)
	}
	if v := browsertest.Eval(t, ctx, `document.querySelector('tr[data-path="3/0/9"] .val').textContent.trim()`); v != "89 %" {
		t.Errorf("Battery Level shows %q, want 89 %%", v)
	}
	if opts := browsertest.Eval(t, ctx, `[...document.querySelectorAll("#chart-path option")].map(o => o.value).join(",")`); strings.Contains(opts, "5603") || strings.Contains(opts, "5604") || !strings.Contains(opts, "3303/0/5700") {
		t.Errorf("chart picker offers %q: want 3303/0/5700 and no range constants", opts)
	}

	// Reboot: the X fills the form and waits; Send asks, and no means no.
	browsertest.Eval(t, ctx, `(window.confirm = q => { window.asked = q; return window.answer === true; }, "")`)
	browsertest.Step(t, ctx, "X on reboot", chromedp.Click(chromedp.CSS(`button.act[data-op="execute"][data-path="3/0/4"]`)))
	if got := browsertest.Eval(t, ctx, `document.activeElement.id + " " + document.getElementById("op-type").value + " " + document.getElementById("op-path").value`); got != "op-args execute 3/0/4" {
		t.Fatalf("after X: %q, want the args field focused with execute 3/0/4 filled in", got)
	}
	if n := len(e.ops.queuedCopy()); n != 0 {
		t.Fatalf("X sent %d operations at once", n)
	}
	browsertest.Step(t, ctx, "send, answer no", chromedp.Click(chromedp.CSS(`#op-form button[type="submit"]`)))
	browsertest.Poll(t, ctx, "asked", `!!window.asked`)
	if q := browsertest.Eval(t, ctx, `window.asked`); !strings.Contains(q, "Reboot") || !strings.Contains(q, ep) {
		t.Fatalf("question %q", q)
	}
	if n := len(e.ops.queuedCopy()); n != 0 {
		t.Fatalf("declined reboot queued %d operations", n)
	}
	browsertest.Shot(t, ctx, "op-01-execute-asks")
	browsertest.Eval(t, ctx, `(window.answer = true, window.asked = "", "")`)
	browsertest.Step(t, ctx, "send, answer yes", chromedp.Click(chromedp.CSS(`#op-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(`#op-status`)))
	q := e.ops.queuedCopy()
	if len(q) != 1 || q[0].Type != "execute" || q[0].Paths[0].Relative() != "3/0/4" {
		t.Fatalf("queued %+v", q)
	}

	// A harmless execute takes its arguments before it is sent, unasked.
	browsertest.Eval(t, ctx, `(window.asked = "", "")`)
	browsertest.Step(t, ctx, "X with arguments",
		chromedp.Click(chromedp.CSS(`button.act[data-op="execute"][data-path="3303/0/5605"]`)),
		chromedp.SendKeys(chromedp.CSS(`#op-args`), "0='now'"),
		chromedp.Click(chromedp.CSS(`#op-form button[type="submit"]`)),
	)
	browsertest.Poll(t, ctx, "second execute sent", fmt.Sprintf(`document.querySelectorAll("#op-table tbody tr").length >= %d`, 2))
	q = e.ops.queuedCopy()
	if len(q) != 2 || q[1].Args != "0='now'" || q[1].Paths[0].Relative() != "3303/0/5605" {
		t.Fatalf("queued %+v", q)
	}
	if a := browsertest.Eval(t, ctx, `window.asked`); a != "" {
		t.Fatalf("a harmless execute asked %q", a)
	}
}
