package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// upload posts an image as the web UI's form does; fields may come after
// the file. It returns the status and the decoded answer.
func (ta *testAppliance) upload(fields map[string]string, fieldsFirst bool, image []byte) (int, map[string]any) {
	ta.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	writeFields := func() {
		for k, v := range fields {
			mw.WriteField(k, v)
		}
	}
	if fieldsFirst {
		writeFields()
	}
	if image != nil {
		fw, _ := mw.CreateFormFile("file", "app.bin")
		fw.Write(image)
	}
	if !fieldsFirst {
		writeFields()
	}
	mw.Close()
	req, _ := http.NewRequest("POST", ta.url+"/api/v1/firmware", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := ta.client.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (ta *testAppliance) mustUpload(version string, image []byte) string {
	ta.t.Helper()
	code, out := ta.upload(map[string]string{"version": version}, false, image)
	if code != http.StatusCreated {
		ta.t.Fatalf("upload %s: %d %v", version, code, out)
	}
	return out["id"].(string)
}

func (ta *testAppliance) deploy(imageID string, req webui.DeployRequest) string {
	ta.t.Helper()
	var out struct{ ID string }
	ta.do("POST", "/api/v1/firmware/"+imageID+"/deployments", req, http.StatusCreated, &out)
	return out.ID
}

func (ta *testAppliance) deployment(id string) webui.Deployment {
	ta.t.Helper()
	var d webui.Deployment
	ta.do("GET", "/api/v1/deployments/"+id, nil, http.StatusOK, &d)
	return d
}

// waitDeployment polls until cond holds for the deployment.
func (ta *testAppliance) waitDeployment(t *testing.T, id string, what string, timeout time.Duration, cond func(webui.Deployment) bool) webui.Deployment {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := ta.deployment(id)
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finished: every device ended and the deployment says so (its status
// follows the last device's result).
func finished(d webui.Deployment) bool {
	return d.Counts["succeeded"]+d.Counts["failed"] == len(d.Devices) && d.Status != "running"
}

// fleetDevice is one device of a firmware test fleet.
type fleetDevice struct {
	ep      string
	dev     *simulation.Device
	failure string
	stop    func()
}

// startFWDevice runs a simulated device (over DTLS with a provisioned PSK
// when psk is set) and returns it once registered.
func (ta *testAppliance) startFWDevice(ep string, psk bool, mutate func(*simulation.DeviceConfig)) *fleetDevice {
	ta.t.Helper()
	var key []byte
	if psk {
		key, _ = GeneratePSK(0)
	}
	return ta.startFWDeviceKey(ep, key, mutate)
}

// startFWDeviceKey is startFWDevice with a given PSK (nil: plain CoAP).
func (ta *testAppliance) startFWDeviceKey(ep string, key []byte, mutate func(*simulation.DeviceConfig)) *fleetDevice {
	ta.t.Helper()
	psk := key != nil
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = ep
	dc.Server = "coap://" + ta.a.Addrs().CoAP
	dc.LocalAddr = "127.0.0.1:0"
	dc.CoAP = fastCoAP()
	dc.Firmware = "1.0.0"
	var opts []simulation.DeviceOption
	if psk {
		if err := ta.a.db.SetCredential(context.Background(), store.Credential{Endpoint: ep, Mode: store.ModePSK, PSKIdentity: ep, PSKKey: key}); err != nil {
			ta.t.Fatal(err)
		}
		dial := func(ctx context.Context, addr string) (coap.Transport, coap.Peer, error) {
			c, err := dtls.Dial(ctx, addr, dtls.ClientConfig{PSKIdentity: ep, PSK: key, HandshakeTimeout: 10 * time.Second})
			if err != nil {
				return nil, coap.Peer{}, err
			}
			return c, c.Peer(), nil
		}
		coaps := ta.a.Addrs().CoAPS
		opts = append(opts, simulation.WithDeviceDial(func(ctx context.Context, _, _ string) (coap.Transport, coap.Peer, error) {
			return dial(ctx, coaps)
		}))
		dc.Server = "coaps://" + coaps
		dc.FirmwareUpdate.Dial = func(ctx context.Context, _, hostport string) (coap.Transport, coap.Peer, error) {
			return dial(ctx, hostport)
		}
	}
	if mutate != nil {
		mutate(&dc)
	}
	d, err := simulation.NewDevice(dc, opts...)
	if err != nil {
		ta.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	ta.t.Cleanup(stop)
	select {
	case <-d.Client().Registered():
	case <-done:
		ta.t.Fatalf("device %s stopped before registering", ep)
	case <-time.After(30 * time.Second):
		ta.t.Fatalf("device %s did not register", ep)
	}
	return &fleetDevice{ep: ep, dev: d, failure: dc.FirmwareUpdate.Failure, stop: stop}
}

// waitURI waits until the devices hold their Package URI.
func waitURI(t *testing.T, devs ...*fleetDevice) {
	t.Helper()
	for _, d := range devs {
		eventually(t, d.ep+"'s Package URI", func() bool { return d.dev.PackageURI() != "" })
	}
}
