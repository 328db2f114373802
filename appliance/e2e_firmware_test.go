package appliance

import (
	"fmt"
	"testing"
	"time"

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
