package appliance

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// TestBrowserWholeAppliance uses the running appliance the way an operator
// does, in Debian's headless Chromium: create the first admin, watch a
// simulated device appear live, read a resource from its page, see its
// chart, then enroll a PSK device with the wizard, check the real Zephyr
// and nRF91 output, and watch that device arrive over DTLS with the key the
// page showed. Screenshots land in testdata/screenshots.
func TestBrowserWholeAppliance(t *testing.T) {
	ctx := browsertest.Start(t)
	cfg := testConfig(t)
	a := startBare(t, cfg)
	u := "http://" + a.Addrs().HTTP
	const pw = "correct-horse-battery"

	browsertest.CreateAdmin(t, ctx, u, "admin", pw)
	browsertest.Step(t, ctx, "devices page", chromedp.Navigate(u+"/devices"), chromedp.WaitVisible(chromedp.CSS(`#device-table`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)))

	// A device registers while the page is open; it appears without reload.
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = "urn:imei:352656100000001"
	dc.Server = "coap://" + a.Addrs().CoAP
	dc.LocalAddr = "127.0.0.1:0"
	dc.CoAP = fastCoAP()
	dev := runDevice(t, dc)
	browsertest.Step(t, ctx, "device appears live", chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="urn:imei:352656100000001"]`)))
	browsertest.Shot(t, ctx, "appliance-01-device-live")

	// The chart shows what is stored: move the temperature until the
	// auto-observation has brought a few readings in.
	temp := lwm2m.MustParsePath("/3303/0/5700")
	eventually(t, "stored temperature readings", func() bool {
		dev.Step(time.Now())
		pts, err := a.db.Readings(context.Background(), dc.Endpoint, temp, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 10)
		return err == nil && len(pts) >= 3
	})
	browsertest.Step(t, ctx, "device page with chart",
		chromedp.Navigate(u+"/devices/urn:imei:352656100000001"),
		chromedp.WaitVisible(chromedp.CSS(`#objects-tree`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart .uplot canvas`)),
		chromedp.Click(chromedp.CSS(`button.act[data-op="read"][data-path="3/0/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#op-value-out`)),
	)
	browsertest.Poll(t, ctx, "read result shown", `document.getElementById("op-value-out").textContent.includes("3/0/0")`)
	browsertest.Shot(t, ctx, "appliance-02-device-read")

	// The enrollment wizard with the appliance's real PKI and output.
	const ep = "urn:imei:359000000000042"
	browsertest.Step(t, ctx, "enroll",
		chromedp.Navigate(u+"/enroll"),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-form`)),
		chromedp.SendKeys(chromedp.CSS(`#endpoint`), ep),
		chromedp.Click(chromedp.CSS(`input[name="mode"][value="psk"]`)),
		chromedp.Submit(chromedp.CSS(`#enroll-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#kconfig`)),
		chromedp.WaitVisible(chromedp.CSS(`#atcmds`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-sse="open"]`)),
	)
	kconfig := browsertest.Eval(t, ctx, `document.getElementById("kconfig").textContent`)
	at := browsertest.Eval(t, ctx, `document.getElementById("atcmds").textContent`)
	for _, want := range []string{"CONFIG_LWM2M_DTLS_SUPPORT=y", `CONFIG_LWM2M_APP_ID="` + ep + `"`, "CONFIG_LWM2M_APP_PSK="} {
		if !strings.Contains(kconfig, want) {
			t.Errorf("Kconfig fragment lacks %s:\n%s", want, kconfig)
		}
	}
	if !strings.Contains(at, `AT%CMNG=0,35724861,4,"`+ep+`"`) {
		t.Errorf("AT commands:\n%s", at)
	}
	browsertest.Shot(t, ctx, "appliance-03-enroll")

	// The device uses the key exactly as the page shows it.
	key := pskFromKconfig(t, kconfig)
	pdc := simulation.DefaultDeviceConfig()
	pdc.Endpoint = ep
	pdc.Server = "coaps://" + a.Addrs().CoAPS
	pdc.CoAP = fastCoAP()
	runDevice(t, pdc, simulation.WithDeviceDial(func(ctx context.Context, endpoint, _ string) (coap.Transport, coap.Peer, error) {
		c, err := dtls.Dial(ctx, a.Addrs().CoAPS, dtls.ClientConfig{PSKIdentity: endpoint, PSK: key})
		if err != nil {
			return nil, coap.Peer{}, err
		}
		return c, c.Peer(), nil
	}))
	browsertest.Step(t, ctx, "wizard sees the first registration", chromedp.WaitVisible(chromedp.CSS(`#enroll-wait[data-registered="1"]`)))
	browsertest.Shot(t, ctx, "appliance-04-enrolled")
}

func pskFromKconfig(t *testing.T, kconfig string) []byte {
	t.Helper()
	for _, line := range strings.Split(kconfig, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "CONFIG_LWM2M_APP_PSK="); ok {
			key, err := hex.DecodeString(strings.Trim(v, `"`))
			if err != nil {
				t.Fatalf("PSK in the Kconfig fragment: %v", err)
			}
			return key
		}
	}
	t.Fatalf("no PSK in the Kconfig fragment:\n%s", kconfig)
	return nil
}

// startBare starts the appliance without creating a user, for first-run
// tests.
func startBare(t *testing.T, cfg Config) *Appliance {
	t.Helper()
	a, err := New(cfg, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute): // a bound against hangs
			t.Error("appliance did not stop")
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("appliance stopped: %v", err)
	case <-time.After(time.Minute): // a bound against hangs
		t.Fatal("appliance not ready")
	}
	return a
}

func runDevice(t *testing.T, dc simulation.DeviceConfig, opts ...simulation.DeviceOption) *simulation.Device {
	t.Helper()
	d, err := simulation.NewDevice(dc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Client().Registered():
	case <-done:
		t.Fatalf("%s stopped before registering", dc.Endpoint)
	case <-time.After(time.Minute): // a bound against hangs
		t.Fatalf("%s did not register", dc.Endpoint)
	}
	return d
}
