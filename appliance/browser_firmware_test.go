package appliance

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// TestBrowserFirmware: an operator uploads an image on the Firmware page,
// deploys it to a simulated device, watches the deployment finish live
// (server-sent events refresh the list with its progress bar) and finds
// the update in the device's history.
func TestBrowserFirmware(t *testing.T) {
	ctx := browsertest.Start(t)
	cfg := testConfig(t)
	a := startBare(t, cfg)
	u := "http://" + a.Addrs().HTTP
	const pw = "correct-horse-battery"
	browsertest.CreateAdmin(t, ctx, u, "admin", pw)
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = "urn:imei:352656100000077"
	dc.Server = "coap://" + a.Addrs().CoAP
	dc.LocalAddr = "127.0.0.1:0"
	dc.CoAP = fastCoAP()
	dc.Firmware = "1.0.0"
	dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 512}
	dev := runDevice(t, dc)
	// The model (3/0/1) is read after the registration; the deploy form
	// offers it, preselected because the image's target names it.
	eventually(t, "the device's model", func() bool {
		e, err := a.db.Endpoint(context.Background(), dc.Endpoint)
		return err == nil && e.Model == "FN-SIM-9160"
	})

	img := simulation.FirmwareImage("2.0.0", 30000, 9)
	browsertest.Step(t, ctx, "firmware page",
		chromedp.Navigate(u+"/firmware"),
		chromedp.WaitVisible(chromedp.CSS(`#fw-upload`)),
		chromedp.SendKeys(chromedp.CSS(`#fw-upload input[name="version"]`), "2.0.0"),
		chromedp.SendKeys(chromedp.CSS(`#fw-upload input[name="target"]`), "FN-SIM-9160"))
	// The file goes into the form's file input as a user's choice would
	// (a DataTransfer), then the form is submitted as the button does.
	if got := browsertest.Eval(t, ctx, `(function () {
		var raw = atob("`+base64.StdEncoding.EncodeToString(img)+`");
		var b = new Uint8Array(raw.length);
		for (var i = 0; i < raw.length; i++) b[i] = raw.charCodeAt(i);
		var dt = new DataTransfer();
		dt.items.add(new File([b], "sensor-2.0.0.bin", {type: "application/octet-stream"}));
		var input = document.querySelector('#fw-upload input[name="file"]');
		input.files = dt.files;
		return String(input.files[0].size);
	})()`); got != "30000" {
		t.Fatalf("file input holds %s bytes", got)
	}
	browsertest.Step(t, ctx, "upload",
		chromedp.Click(chromedp.CSS(`#fw-upload button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#fw-library tr[data-image="1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)),
	)
	browsertest.Poll(t, ctx, "the library row names the file", `document.querySelector('#fw-library tr[data-image="1"]').textContent.includes("sensor-2.0.0.bin")`)
	browsertest.Shot(t, ctx, "firmware-01-library")
	browsertest.Poll(t, ctx, "the deploy form preselects the image's model", `document.querySelector('#fw-library tr[data-image="1"] select[name="model"]').value === "FN-SIM-9160"`)
	browsertest.Step(t, ctx, "deploy to every device at 1.0.0",
		chromedp.Click(chromedp.CSS(`#fw-library tr[data-image="1"] summary`)),
		chromedp.SetValue(chromedp.CSS(`#fw-library tr[data-image="1"] select[name="currentVersion"]`), "1.0.0"),
		chromedp.Submit(chromedp.CSS(`#fw-library tr[data-image="1"] form.deploy`)),
		chromedp.WaitVisible(chromedp.CSS(`#deployment-1`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)),
	)
	// What the page saw, for the failure message: the events and the
	// panel's reloads.
	browsertest.Eval(t, ctx, `(function () {
		window.fxSeen = [];
		document.body.addEventListener("fxdeployment", function (e) { window.fxSeen.push("event " + e.detail.status); });
		document.body.addEventListener("htmx:afterRequest", function (e) { window.fxSeen.push("reload " + e.detail.xhr.status); });
		return "";
	})()`)
	defer func() {
		if t.Failed() {
			t.Logf("the page saw: %s", browsertest.Eval(t, ctx, `window.fxSeen.join(", ")`))
			t.Logf("the panel shows: %s", browsertest.Eval(t, ctx, `document.querySelector('#fw-deployments').innerText`))
		}
	}()
	// The list refreshes itself from the event stream until it is done.
	browsertest.Step(t, ctx, "the deployment finishes live",
		chromedp.WaitVisible(chromedp.CSS(`#deployment-1[data-status="done"] tr[data-endpoint="urn:imei:352656100000077"] .badge.succeeded`)))
	browsertest.Poll(t, ctx, "a full progress bar", `document.querySelector('#deployment-1 progress').value === 100`)
	browsertest.Shot(t, ctx, "firmware-02-deployment-done")
	if v := dev.FirmwareVersion(); v != "2.0.0" {
		t.Fatalf("device runs %q", v)
	}
	browsertest.Step(t, ctx, "device history",
		chromedp.Navigate(u+"/devices/urn:imei:352656100000077"),
		chromedp.WaitVisible(chromedp.CSS(`#dev-firmware .badge.succeeded`)),
	)
	browsertest.Shot(t, ctx, "firmware-03-device-history")
}
