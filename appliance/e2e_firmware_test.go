package appliance

import (
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
