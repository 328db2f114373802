package appliance

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// TestFirmwareDeployByModel: the appliance reads each device's model
// (3/0/1) after it registers; a deployment to a model reaches that model's
// devices only, a model and a version together narrow it to that model's
// devices at that version, and a selection that matches no device is
// refused with 422 and leaves no deployment behind.
func TestFirmwareDeployByModel(t *testing.T) {
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	fleet := []struct{ ep, model, version string }{
		{"mdl-a1", "sensor-a", "1.0.0"}, {"mdl-a2", "sensor-a", "1.0.0"}, {"mdl-a3", "sensor-a", "0.9.0"},
		{"mdl-b1", "sensor-b", "1.0.0"}, {"mdl-b2", "sensor-b", "1.0.0"},
	}
	devs := map[string]*fleetDevice{}
	for i, f := range fleet {
		devs[f.ep] = ta.startFWDevice(f.ep, false, func(dc *simulation.DeviceConfig) {
			dc.Model, dc.Firmware = f.model, f.version
			dc.FirmwareUpdate.Protocols = []int64{0}
			dc.LocalAddr = fmt.Sprintf("127.0.5.%d:0", i+1)
		})
	}
	models := func(query string) []string {
		var out struct{ Devices []apiDevice }
		ta.do("GET", "/api/v1/devices?"+query, nil, http.StatusOK, &out)
		var l []string
		for _, d := range out.Devices {
			l = append(l, d.Endpoint+"="+d.Model)
		}
		return l
	}
	eventually(t, "every model read", func() bool { return len(models("model=sensor-a"))+len(models("model=sensor-b")) == len(fleet) })
	if l := models("model=sensor-b"); fmt.Sprint(l) != "[mdl-b1=sensor-b mdl-b2=sensor-b]" {
		t.Fatalf("devices of sensor-b: %v", l)
	}

	imgB := simulation.FirmwareImage("2.0.0-b", 3000, 7)
	idB := ta.mustUpload("2.0.0-b", imgB)
	imgA := simulation.FirmwareImage("2.0.0-a", 3000, 8)
	idA := ta.mustUpload("2.0.0-a", imgA)

	// Refusals: an unknown model; a model none of whose devices runs the
	// version. Nothing is created.
	for _, r := range []struct {
		req  webui.DeployRequest
		want string
	}{
		{webui.DeployRequest{Model: "sensor-c"}, `model "sensor-c"`},
		{webui.DeployRequest{Model: "sensor-b", CurrentVersion: "0.9.0"}, `model "sensor-b" at version "0.9.0"`},
		{webui.DeployRequest{Model: "sensor-c", Endpoints: []string{"mdl-b1"}}, `model "sensor-c"`},
	} {
		var e struct{ Error string }
		ta.do("POST", "/api/v1/firmware/"+idB+"/deployments", r.req, http.StatusUnprocessableEntity, &e)
		if !strings.Contains(e.Error, "no device matches") || !strings.Contains(e.Error, r.want) {
			t.Errorf("%+v: %q", r.req, e.Error)
		}
	}
	if l, _ := ta.a.db.Deployments(context.Background()); len(l) != 0 {
		t.Fatalf("refused deployments left rows: %+v", l)
	}

	targets := func(d webui.Deployment) []string {
		var l []string
		for _, dd := range d.Devices {
			l = append(l, dd.Endpoint)
		}
		slices.Sort(l)
		return l
	}
	depB := ta.deploy(idB, webui.DeployRequest{Model: "sensor-b"})
	depA := ta.deploy(idA, webui.DeployRequest{Model: "sensor-a", CurrentVersion: "1.0.0"})
	gotB := ta.waitDeployment(t, depB, "the sensor-b rollout", 60*time.Second, finished)
	gotA := ta.waitDeployment(t, depA, "the sensor-a rollout", 60*time.Second, finished)
	if l := targets(gotB); fmt.Sprint(l) != "[mdl-b1 mdl-b2]" || gotB.Counts["succeeded"] != 2 {
		t.Fatalf("by model: %v %+v", l, gotB)
	}
	if l := targets(gotA); fmt.Sprint(l) != "[mdl-a1 mdl-a2]" || gotA.Counts["succeeded"] != 2 {
		t.Fatalf("by model and version: %v %+v", l, gotA)
	}
	want := map[string]string{"mdl-a1": "2.0.0-a", "mdl-a2": "2.0.0-a", "mdl-a3": "0.9.0", "mdl-b1": "2.0.0-b", "mdl-b2": "2.0.0-b"}
	for ep, v := range want {
		if got := devs[ep].dev.FirmwareVersion(); got != v {
			t.Errorf("%s runs %q, want %q", ep, got, v)
		}
	}
	// The model survives the devices' re-registration with new firmware.
	eventually(t, "sensor-a devices at 2.0.0-a in the list", func() bool {
		return fmt.Sprint(models("model=sensor-a&firmware=2.0.0-a")) == "[mdl-a1=sensor-a mdl-a2=sensor-a]"
	})
}
