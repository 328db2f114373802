package appliance

import (
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// TestFirmwareServedMetrics: /metrics counts every Block2 response of a
// device's CoAP download and the image bytes in them — a 10,000-byte image
// in 512-byte blocks is 20 blocks and 10,000 bytes (the benchmark's
// blocks-served figure comes from these counters).
func TestFirmwareServedMetrics(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	names := []string{"flownexus_firmware_blocks_served_total", "flownexus_firmware_bytes_served_total", "flownexus_firmware_coap_bytes_served_total"}
	for _, n := range names {
		if v := ta.metric(n); v != 0 {
			t.Fatalf("%s before any download: %v", n, v)
		}
	}
	ta.startFWDevice("mx-1", false, func(dc *simulation.DeviceConfig) {
		dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 512}
	})
	id := ta.mustUpload("2.0.0", simulation.FirmwareImage("2.0.0", 10000, 3))
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"mx-1"}})
	if d := ta.waitDeployment(t, dep, "the update", 60*time.Second, finished); d.Counts["succeeded"] != 1 {
		t.Fatalf("deployment: %+v", d)
	}
	for n, want := range map[string]float64{names[0]: 20, names[1]: 10000, names[2]: 10000} {
		if v := ta.metric(n); v != want {
			t.Errorf("%s = %v, want %v", n, v, want)
		}
	}
}
