package appliance

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// TestFirmwareDownloadOverLossyNetwork (issue 13 §3, issue 11): a device
// behind a relay that loses, duplicates and reorders datagrams both ways
// is updated over plain CoAP: the appliance's requests, the device's
// notifications and every Block2 exchange of the download cross the
// relay. The image arrives whole (the device checks its SHA-256) and the
// device ends succeeded with the new version.
func TestFirmwareDownloadOverLossyNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	px := newFaultProxy(t, ta.a.Addrs().CoAP, impairment{loss: 0.1, duplicate: 0.05, reorder: 0.2, delay: 5 * time.Millisecond}, 11)
	fd := ta.startFWDevice("fw-lossy", false, func(dc *simulation.DeviceConfig) {
		dc.Server = "coap://" + px.Addr()
		dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: []int64{0}, BlockSize: 256,
			DialPlain: func(ctx context.Context, _ string) (coap.Transport, coap.Peer, error) {
				return coap.DialUDP("127.0.0.1:0", px.Addr())
			}}
	})
	img := simulation.FirmwareImage("2.1.0", 48<<10, 4)
	id := ta.mustUpload("2.1.0", img)
	relayed := px.relayed.Load()
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"fw-lossy"}})
	got := ta.waitDeployment(t, dep, "the update over the lossy relay", 3*time.Minute, finished)
	dd := got.Devices[0]
	if got.Status != "done" || dd.State != "succeeded" || dd.Method != "coap" || dd.Progress != int64(len(img)) {
		t.Fatalf("deployment %+v", got)
	}
	if v := fd.dev.FirmwareVersion(); v != "2.1.0" {
		t.Fatalf("device runs %q", v)
	}
	t.Logf("relay: %d datagrams relayed, %d dropped, %d duplicated, %d reordered",
		px.relayed.Load(), px.dropped.Load(), px.duplicated.Load(), px.reordered.Load())
	// 192 blocks went through the relay, not around it.
	if px.relayed.Load()-relayed < 2*uint64(len(img)/256) || px.dropped.Load() == 0 || px.reordered.Load() == 0 || px.duplicated.Load() == 0 {
		t.Fatal("the download did not cross the impaired relay: the test proved nothing")
	}
}
