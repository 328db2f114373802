package appliance

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// TestFirmwareOTAOneDevice: upload → deploy → the device pulls the image
// over CoAP with Block2, checks its hash, updates and re-registers with
// the new version → succeeded.
func TestFirmwareOTAOneDevice(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	d, _ := ta.startDevice("fw-one", func(dc *simulation.DeviceConfig) {
		dc.Firmware = "1.0.0"
		dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 256}
	})
	img := simulation.FirmwareImage("2.0.0", 20000, 1)
	id := ta.mustUpload("2.0.0", img)
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"fw-one"}})
	got := ta.waitDeployment(t, dep, "the update", 30*time.Second, finished)
	dd := got.Devices[0]
	if got.Status != "done" || dd.State != "succeeded" || dd.ResultCode != 1 || dd.Method != "coap" || dd.Progress != int64(len(img)) || dd.FromVersion != "1.0.0" {
		t.Fatalf("deployment %+v", got)
	}
	if v := d.FirmwareVersion(); v != "2.0.0" {
		t.Fatalf("device runs %q", v)
	}
}

// TestFirmwareFromVersionReadAtStart: a deployment created before the
// appliance knew the device's version (as right after its first
// registration, here made so by clearing the recorded one) still records
// the version the device ran before the update: it is read from 3/0/3
// when the update starts.
func TestFirmwareFromVersionReadAtStart(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	ta.startDevice("fw-from", func(dc *simulation.DeviceConfig) {
		dc.Firmware = "1.0.0"
		dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 1024}
	})
	db, ctx := ta.a.db, context.Background()
	eventually(t, "the device's version recorded", func() bool {
		e, err := db.Endpoint(ctx, "fw-from")
		return err == nil && e.FirmwareVersion == "1.0.0"
	})
	if err := db.SetEndpointFirmwareVersion(ctx, "fw-from", ""); err != nil {
		t.Fatal(err)
	}
	id := ta.mustUpload("2.0.0", simulation.FirmwareImage("2.0.0", 4096, 1))
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"fw-from"}})
	got := ta.waitDeployment(t, dep, "the update", 30*time.Second, finished)
	if dd := got.Devices[0]; dd.State != "succeeded" || dd.FromVersion != "1.0.0" {
		t.Fatalf("deployment device %+v, want succeeded from 1.0.0", dd)
	}
}

// TestFirmwareProgressPerDeviceBehindOneAddress: devices that download
// from one IP address (a NAT; here ports of 127.0.4.1) and from sockets of
// their own, as Zephyr does, each get their own progress: the token in
// their CoAP Package URI names them, where the address alone would credit
// every block to whichever of them it matched first.
func TestFirmwareProgressPerDeviceBehindOneAddress(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	eps := []string{"nat-0", "nat-1", "nat-2"}
	for _, ep := range eps {
		ta.startDevice(ep, func(dc *simulation.DeviceConfig) {
			dc.LocalAddr = "127.0.4.1:0"
			dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 512}
		})
	}
	img := simulation.FirmwareImage("2.0.0", 6000, 2)
	dep := ta.deploy(ta.mustUpload("2.0.0", img), webui.DeployRequest{Endpoints: eps})
	got := ta.waitDeployment(t, dep, "the update", 30*time.Second, finished)
	for _, dd := range got.Devices {
		if dd.State != "succeeded" || dd.Progress != int64(len(img)) {
			t.Errorf("%s: %s with %d of %d bytes served", dd.Endpoint, dd.State, dd.Progress, len(img))
		}
	}
}

// fleetPlan is the 100-device mix: how device i gets the image and which
// failure it simulates.
func fleetPlan(i int) (psk bool, mutate func(*simulation.DeviceConfig), failure string) {
	blocks := []int{64, 256, 1024, 512}
	switch {
	case i%10 == 3:
		failure = simulation.FailIntegrity
	case i%10 == 7:
		failure = simulation.FailUpdate
	case i == 12 || i == 41 || i == 55:
		failure = simulation.FailStorage
	case i == 22 || i == 33 || i == 58:
		failure = simulation.FailConnection
	}
	fc := simulation.FirmwareConfig{BlockSize: blocks[i%len(blocks)], Failure: failure}
	queue := false
	switch {
	case i < 30 || i >= 90:
		fc.Protocols = []int64{0}
	case i < 50:
		psk = true
		fc.Protocols = []int64{0, 1}
	case i < 65:
		fc.Protocols = []int64{2}
	case i < 75:
		fc.Delivery = 1 // push only
	default:
		fc.Protocols = []int64{0}
		queue = true
	}
	return psk, func(dc *simulation.DeviceConfig) {
		dc.FirmwareUpdate.Protocols, dc.FirmwareUpdate.Delivery = fc.Protocols, fc.Delivery
		dc.FirmwareUpdate.BlockSize, dc.FirmwareUpdate.Failure = fc.BlockSize, fc.Failure
		// Plain CoAP devices are told apart by their source address.
		dc.LocalAddr = fmt.Sprintf("127.0.%d.%d:0", 1+i/200, 2+i%200)
		if queue {
			dc.QueueMode, dc.AwakeWindow, dc.Lifetime = true, 10*time.Second, 20*time.Second
		}
	}, failure
}

var failureResult = map[string]int{simulation.FailIntegrity: 5, simulation.FailStorage: 2, simulation.FailConnection: 4, simulation.FailUpdate: 8}

// TestFirmwareOTAFleet: one deployment to 100 simulated devices — pull over
// coap, coaps and http at several block sizes, push-only and queue-mode
// devices, with injected failures — ends with each device in its right
// final state and reason.
func TestFirmwareOTAFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("100 devices")
	}
	cfg := testConfig(t)
	cfg.LwM2M.QueueAwakeWindow = 10 * time.Second
	ta := startAppliance(t, cfg, WithFirmwareSweep(500*time.Millisecond))
	var fleet []*fleetDevice
	for i := range 100 {
		psk, mutate, _ := fleetPlan(i)
		fleet = append(fleet, ta.startFWDevice(fmt.Sprintf("fleet-%03d", i), psk, mutate))
	}
	img := simulation.FirmwareImage("2.0.0", 8000, 2)
	id := ta.mustUpload("2.0.0", img)
	eps := make([]string, len(fleet))
	for i, f := range fleet {
		eps[i] = f.ep
	}
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: eps, MaxConcurrent: 40, TimeoutSeconds: 120})
	got := ta.waitDeployment(t, dep, "all 100 devices", 3*time.Minute, finished)
	if got.Status != "done" {
		t.Errorf("status %s (%s)", got.Status, got.Reason)
	}
	byEP := map[string]webui.DeploymentDevice{}
	for _, dd := range got.Devices {
		byEP[dd.Endpoint] = dd
	}
	methods := map[string]int{}
	for i, f := range fleet {
		dd := byEP[f.ep]
		methods[dd.Method]++
		_, _, failure := fleetPlan(i)
		if failure == "" {
			if dd.State != "succeeded" || dd.ResultCode != 1 || f.dev.FirmwareVersion() != "2.0.0" {
				t.Errorf("%s: %+v, device runs %q", f.ep, dd, f.dev.FirmwareVersion())
			}
			if dd.Progress != int64(len(img)) {
				t.Errorf("%s: progress %d of %d", f.ep, dd.Progress, len(img))
			}
			continue
		}
		if dd.State != "failed" || dd.ResultCode != failureResult[failure] || dd.Error == "" || f.dev.FirmwareVersion() != "1.0.0" {
			t.Errorf("%s (%s): %+v, device runs %q", f.ep, failure, dd, f.dev.FirmwareVersion())
		}
	}
	if methods["coap"] != 55 || methods["coaps"] != 20 || methods["http"] != 15 || methods["push"] != 10 {
		t.Errorf("methods %v", methods)
	}
}

// TestFirmwareOTAHaltRetryCancel: a deployment whose failures pass its
// threshold halts with devices still waiting; retry runs it again; cancel
// ends it.
func TestFirmwareOTAHaltRetryCancel(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	var eps []string
	for i := range 10 {
		ep := fmt.Sprintf("halt-%02d", i)
		ta.startFWDevice(ep, false, func(dc *simulation.DeviceConfig) {
			dc.LocalAddr = fmt.Sprintf("127.0.4.%d:0", 1+i)
			dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, Failure: simulation.FailIntegrity}
		})
		eps = append(eps, ep)
	}
	id := ta.mustUpload("4.0.0", simulation.FirmwareImage("4.0.0", 3000, 5))
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: eps, MaxConcurrent: 2, FailureThreshold: 0.3})
	got := ta.waitDeployment(t, dep, "the halt", 30*time.Second, func(d webui.Deployment) bool {
		return d.Status == "halted" && d.Counts["downloading"]+d.Counts["downloaded"]+d.Counts["updating"] == 0
	})
	if got.Counts["failed"] < 4 || got.Counts["pending"] == 0 || got.Counts["succeeded"] != 0 || !strings.Contains(got.Reason, "threshold") {
		t.Fatalf("halted deployment: %+v", got)
	}
	pending := got.Counts["pending"]
	// Nothing starts while halted: the sweep runs many times meanwhile.
	for range 3 {
		ta.a.fw.Kick(eps[len(eps)-1])
	}
	if d := ta.deployment(dep); d.Counts["pending"] != pending || d.Status != "halted" {
		t.Fatalf("a halted deployment moved on: %+v", d)
	}
	var after webui.Deployment
	ta.do("POST", "/api/v1/deployments/"+dep+"/retry", nil, http.StatusOK, &after)
	if after.Status != "running" || after.Counts["failed"] != 0 {
		t.Fatalf("after retry: %+v", after)
	}
	ta.waitDeployment(t, dep, "the second halt", 30*time.Second, func(d webui.Deployment) bool {
		return d.Status == "halted" && d.Counts["downloading"]+d.Counts["downloaded"]+d.Counts["updating"] == 0
	})
	var cancelled webui.Deployment
	ta.do("POST", "/api/v1/deployments/"+dep+"/cancel", nil, http.StatusOK, &cancelled)
	if after = cancelled; after.Status != "cancelled" || after.Counts["pending"] != 0 || after.Counts["failed"] != 10 {
		t.Fatalf("after cancel: %+v", after)
	}
	var e struct{ Error string }
	ta.do("POST", "/api/v1/deployments/"+dep+"/cancel", nil, http.StatusConflict, &e)
	ta.do("POST", "/api/v1/deployments/999/cancel", nil, http.StatusNotFound, &e)
	ta.do("POST", "/api/v1/deployments/x/retry", nil, http.StatusNotFound, &e)
	// The image is in use: it cannot be deleted.
	ta.do("DELETE", "/api/v1/firmware/"+id, nil, http.StatusConflict, &e)
}

// TestFirmwareOTASurvivesRestart: the appliance stops in the middle of a
// rollout; the next start resumes every device where it was: finished ones
// keep their result, waiting ones update when they come online.
func TestFirmwareOTASurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Listen = ListenConfig{HTTP: freeAddr(t, "tcp"), CoAP: freeAddr(t, "udp"), CoAPS: freeAddr(t, "udp")}
	ta := startAppliance(t, cfg, WithFirmwareSweep(200*time.Millisecond))
	mutate := func(i int) func(*simulation.DeviceConfig) {
		return func(dc *simulation.DeviceConfig) {
			dc.LocalAddr = fmt.Sprintf("127.0.5.%d:0", 1+i)
			dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 128}
		}
	}
	var eps []string
	var late []*fleetDevice
	for i := range 8 {
		ep := fmt.Sprintf("rs-%02d", i)
		f := ta.startFWDevice(ep, false, mutate(i))
		if i >= 5 {
			f.stop() // known, offline: they wait as pending across the restart
			late = append(late, f)
		}
		eps = append(eps, ep)
	}
	// One device takes its Package URI and downloads later: it is
	// mid-download across the restart.
	held := ta.startFWDevice("rs-held", false, func(dc *simulation.DeviceConfig) {
		dc.LocalAddr = "127.0.5.99:0"
		dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, Hold: true}
	})
	img := simulation.FirmwareImage("5.0.0", 6000, 6)
	id := ta.mustUpload("5.0.0", img)
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: append(eps, "rs-held"), MaxConcurrent: 2})
	before := ta.waitDeployment(t, dep, "the online devices", 30*time.Second, func(d webui.Deployment) bool {
		return d.Counts["succeeded"] == 5 && d.Counts["downloading"] == 1
	})
	if before.Counts["pending"] != 3 || before.Status != "running" {
		t.Fatalf("before the restart: %+v", before)
	}
	waitURI(t, held)
	uri, _ := url.Parse(held.dev.PackageURI())
	ta.shutdown()

	tb := startAppliance2(t, cfg)
	resumed := tb.deployment(dep)
	if resumed.Counts["succeeded"] != 5 || resumed.Counts["pending"] != 3 || resumed.Counts["downloading"] != 1 || resumed.Status != "running" {
		t.Fatalf("after the restart: %+v", resumed)
	}
	// The held device's permission survived: once it is registered again
	// it downloads from where it left off (block 2 of 512 bytes).
	eventually(t, "the held device back", func() bool { d, ok := tb.device("rs-held"); return ok && d.Online })
	if r := coapGet(t, "127.0.5.99:0", cfg.Listen.CoAP, uri.Path, 2, 5); r.Code != coap.Content || !bytes.Equal(r.Payload, img[1024:1536]) {
		t.Fatalf("resumed download: %s", r.Code)
	}
	for i := 5; i < 8; i++ {
		tb.startFWDevice(eps[i], false, mutate(i))
	}
	done := tb.waitDeployment(t, dep, "the late devices", 30*time.Second, func(d webui.Deployment) bool {
		return d.Counts["succeeded"] == 8 && d.Counts["downloading"] == 1
	})
	for _, dd := range done.Devices {
		if dd.Endpoint == "rs-held" {
			continue
		}
		if dd.Progress != int64(len(img)) || dd.ResultCode != 1 {
			t.Errorf("%s: %+v", dd.Endpoint, dd)
		}
	}
	_ = late
}

// startAppliance2 starts a second appliance on cfg's data dir, logging in
// as the admin the first one created.
func startAppliance2(t *testing.T, cfg Config) *testAppliance {
	t.Helper()
	a, err := New(cfg, WithLogger(testLogger()), WithFirmwareSweep(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("second start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("second start not ready")
	}
	tb := &testAppliance{t: t, a: a, cfg: cfg, url: "http://" + a.Addrs().HTTP, client: http.DefaultClient}
	tb.stop = func() { cancel(); <-errc }
	t.Cleanup(tb.shutdown)
	var out struct{ Token string }
	tb.do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "correct-horse-battery"}, http.StatusOK, &out)
	tb.token = out.Token
	return tb
}
