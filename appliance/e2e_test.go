package appliance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
)

// TestEndToEndDeviceLifecycle drives the appliance as a user would: a
// simulated device registers, shows up online, is read, written and
// executed on through the REST API, its telemetry is stored, and its
// de-registration takes it offline.
func TestEndToEndDeviceLifecycle(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	dev, stop := ta.startDevice("e2e-dev-1", nil)

	eventually(t, "device online in the API", func() bool {
		d, ok := ta.device("e2e-dev-1")
		return ok && d.Online
	})
	d, _ := ta.device("e2e-dev-1")
	if d.LwM2MVersion != "1.1" || d.Security != "nosec" || !strings.Contains(d.Objects, "</3303/0>") {
		t.Errorf("device = %+v", d)
	}
	eventually(t, "firmware version read after registration", func() bool {
		d, _ := ta.device("e2e-dev-1")
		return d.FirmwareVersion != ""
	})

	// Read the Device object: every resource, typed, whatever format the
	// device answered in.
	op := ta.operation("e2e-dev-1", map[string]any{"type": "read", "path": "/3/0"}, 10)
	if op.Status != "confirmed" {
		t.Fatalf("read: %+v", op)
	}
	var res struct{ Values map[string]any }
	if err := json.Unmarshal(op.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Values["3/0/0"] == nil || res.Values["3/0/3"] == nil || res.Values["3/0/7/0"] == nil {
		t.Errorf("read /3/0 values = %v", res.Values)
	}

	// Write a writable resource, then read it back in another format.
	op = ta.operation("e2e-dev-1", map[string]any{"type": "write", "path": "/3/0/14", "value": "+02:00"}, 10)
	if op.Status != "confirmed" {
		t.Fatalf("write: %+v", op)
	}
	op = ta.operation("e2e-dev-1", map[string]any{"type": "read", "path": "/3/0/14", "format": "senml-json"}, 10)
	if op.Status != "confirmed" || !strings.Contains(string(op.Result), `"+02:00"`) {
		t.Fatalf("read back: %+v %s", op, op.Result)
	}

	// A read of a resource the device does not have fails with the
	// device's 4.04, and is not retried.
	op = ta.operation("e2e-dev-1", map[string]any{"type": "read", "path": "/3/0/999"}, 10)
	if op.Status != "failed" || op.Attempts != 1 || !strings.Contains(strings.ToLower(op.Error), "not found") {
		t.Fatalf("read of a missing resource: %+v", op)
	}

	// Discover lists the instance's resources.
	op = ta.operation("e2e-dev-1", map[string]any{"type": "discover", "path": "/3303/0"}, 10)
	var links struct{ Links string }
	if err := json.Unmarshal(op.Result, &links); err != nil || op.Status != "confirmed" || !strings.Contains(links.Links, "</3303/0/5700>") {
		t.Fatalf("discover: %+v %s", op, op.Result)
	}

	// The auto-observation of 3303/0/5700 stores every change as telemetry.
	before := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	dev.Step(time.Now())
	eventually(t, "temperature telemetry", func() bool {
		var pts struct {
			Points []struct {
				T string
				V any
			}
		}
		ta.do("GET", "/api/v1/devices/e2e-dev-1/telemetry?path=3303/0/5700&from="+before, nil, http.StatusOK, &pts)
		return len(pts.Points) >= 2
	})

	var evs struct {
		Events []struct{ Kind string } `json:"events"`
	}
	ta.do("GET", "/api/v1/devices/e2e-dev-1/events", nil, http.StatusOK, &evs)
	if len(evs.Events) == 0 || evs.Events[len(evs.Events)-1].Kind != "registered" {
		t.Errorf("events = %+v, want the registration last (newest first)", evs.Events)
	}

	// Stopping the device de-registers it.
	stop()
	eventually(t, "device offline", func() bool {
		d, ok := ta.device("e2e-dev-1")
		return ok && !d.Online
	})
}

// TestEndToEndUnknownEndpointRefused: with unknown endpoints refused (the
// packaged default), an unprovisioned device cannot register and waits as
// pending; once provisioned for plain CoAP it can.
func TestEndToEndUnknownEndpointRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.LwM2M.AllowUnknownEndpoints = false
	ta := startAppliance(t, cfg)

	if err := ta.registerFails("stranger"); !strings.Contains(err.Error(), "4.03") {
		t.Fatalf("an unknown endpoint: register error %v, want 4.03 Forbidden", err)
	}
	eventually(t, "stranger pending", func() bool {
		d, ok := ta.device("stranger")
		return ok && d.Pending && !d.Online
	})

	// An admin accepts it from the pending list; then it may register.
	ta.do("POST", "/api/v1/devices/stranger/accept", nil, http.StatusOK, nil)
	ta.startDevice("stranger", nil)
	eventually(t, "accepted device online", func() bool {
		d, ok := ta.device("stranger")
		return ok && d.Online && !d.Pending
	})

	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "known-1", "security": map[string]string{"mode": "nosec"}}, http.StatusCreated, nil)
	ta.startDevice("known-1", nil)
	eventually(t, "provisioned device online", func() bool {
		d, ok := ta.device("known-1")
		return ok && d.Online
	})
}

// TestEndToEndProvisionedPSKRefusedOverPlainCoAP: a device provisioned for
// DTLS cannot register over plain CoAP.
func TestEndToEndProvisionedPSKRefusedOverPlainCoAP(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	var cred struct {
		Security struct {
			Mode, ServerURI, PSKIdentity, PSKKey string
		}
	}
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "psk-1", "security": map[string]string{"mode": "psk"}}, http.StatusCreated, &cred)
	if cred.Security.PSKKey == "" || !strings.HasPrefix(cred.Security.ServerURI, "coaps://") {
		t.Fatalf("provisioning answer = %+v", cred)
	}
	if err := ta.registerFails("psk-1"); !strings.Contains(err.Error(), "4.03") {
		t.Fatalf("a PSK device over plain CoAP: register error %v, want 4.03 Forbidden", err)
	}
}

// TestEndToEndQueueModeOperation: an operation for a sleeping queue-mode
// device waits in the queue and goes out right after the device's next
// Update.
func TestEndToEndQueueModeOperation(t *testing.T) {
	cfg := testConfig(t)
	cfg.LwM2M.QueueAwakeWindow = time.Second
	ta := startAppliance(t, cfg)
	dev, _ := ta.startDevice("sleepy-1", func(dc *simulation.DeviceConfig) {
		dc.QueueMode = true
		dc.AwakeWindow = time.Second
	})
	eventually(t, "device asleep", func() bool { return dev.Client().Asleep() })
	eventually(t, "appliance sees the device asleep", func() bool {
		return !ta.a.lifecycleReachable("sleepy-1")
	})

	op := ta.operation("sleepy-1", map[string]any{"type": "read", "path": "/3/0/0"}, 0)
	if op.Status != "queued" {
		t.Fatalf("operation for a sleeping device: %+v", op)
	}
	dev.Client().TriggerUpdate()
	var got apiOperation
	ta.do("GET", "/api/v1/operations/"+jsonID(op.ID)+"?wait=10", nil, http.StatusOK, &got)
	eventually(t, "operation confirmed after the update", func() bool {
		ta.do("GET", "/api/v1/operations/"+jsonID(op.ID), nil, http.StatusOK, &got)
		return got.Status == "confirmed"
	})
	if got.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", got.Attempts)
	}
}

func jsonID(id int64) string { b, _ := json.Marshal(id); return string(b) }

// TestEndToEndRetryOnNextUpdate: an attempt the device does not answer
// puts the operation back in the queue, and it is tried again only after
// the device's next Update, not on a timer (the seed's 3-attempt rule).
func TestEndToEndRetryOnNextUpdate(t *testing.T) {
	cfg := testConfig(t)
	// The appliance believes a queue-mode device listens for 30 s; this
	// one sleeps after 1 s, so a request in between goes unanswered.
	cfg.LwM2M.QueueAwakeWindow = 30 * time.Second
	ta := startAppliance(t, cfg, WithOperationTimeout(time.Second))
	dev, _ := ta.startDevice("nap-1", func(dc *simulation.DeviceConfig) {
		dc.QueueMode = true
		dc.AwakeWindow = time.Second
	})
	eventually(t, "device asleep", func() bool { return dev.Client().Asleep() })

	op := ta.operation("nap-1", map[string]any{"type": "read", "path": "/3/0/0"}, 0)
	var got apiOperation
	eventually(t, "first attempt unanswered", func() bool {
		ta.do("GET", "/api/v1/operations/"+jsonID(op.ID), nil, http.StatusOK, &got)
		return got.Status == "queued" && got.Attempts == 1
	})
	if !ta.a.disp().isSilent("nap-1") {
		t.Fatal("the dispatcher would retry before the device's next uplink")
	}

	dev.Client().TriggerUpdate()
	eventually(t, "confirmed after the Update", func() bool {
		ta.do("GET", "/api/v1/operations/"+jsonID(op.ID), nil, http.StatusOK, &got)
		return got.Status == "confirmed"
	})
	if got.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", got.Attempts)
	}
}

// TestEndToEndPSKDeviceKeepsItsSecurityMode: a PSK device registers over
// DTLS and stays listed as "psk" after its Updates.
func TestEndToEndPSKDeviceKeepsItsSecurityMode(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	var cred struct {
		Security struct{ PSKIdentity, PSKKey string }
	}
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "psk-mode-1", "security": map[string]string{"mode": "psk"}}, http.StatusCreated, &cred)
	key, err := hex.DecodeString(cred.Security.PSKKey)
	if err != nil {
		t.Fatal(err)
	}
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = "psk-mode-1"
	dc.Server = "coaps://" + ta.a.Addrs().CoAPS
	dc.CoAP = fastCoAP()
	dev := runDevice(t, dc, simulation.WithDeviceDial(func(ctx context.Context, endpoint, _ string) (coap.Transport, coap.Peer, error) {
		c, err := dtls.Dial(ctx, ta.a.Addrs().CoAPS, dtls.ClientConfig{PSKIdentity: cred.Security.PSKIdentity, PSK: key})
		if err != nil {
			return nil, coap.Peer{}, err
		}
		return c, c.Peer(), nil
	}))
	reg, _ := ta.a.srv.Registration("psk-mode-1")
	dev.Client().TriggerUpdate()
	eventually(t, "the Update processed", func() bool {
		cur, ok := ta.a.srv.Registration("psk-mode-1")
		return ok && cur.LastUpdate.After(reg.LastUpdate)
	})
	var page struct{ Devices []apiDevice }
	eventually(t, "listed under security=psk after the Update", func() bool {
		ta.do("GET", "/api/v1/devices?security=psk", nil, http.StatusOK, &page)
		return len(page.Devices) == 1 && page.Devices[0].Endpoint == "psk-mode-1"
	})
}

// TestEndToEndDeletedDeviceDoesNotReturnByUpdate: deleting a device that
// is still registered does not let its next Update recreate it.
func TestEndToEndDeletedDeviceDoesNotReturnByUpdate(t *testing.T) {
	cfg := testConfig(t)
	cfg.LwM2M.AllowUnknownEndpoints = false
	ta := startAppliance(t, cfg)
	ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": "gone-1", "security": map[string]string{"mode": "nosec"}}, http.StatusCreated, nil)
	dev, _ := ta.startDevice("gone-1", nil)
	eventually(t, "online", func() bool { d, ok := ta.device("gone-1"); return ok && d.Online })

	ta.do("DELETE", "/api/v1/devices/gone-1", nil, http.StatusNoContent, nil)
	if _, ok := ta.a.srv.Registration("gone-1"); ok {
		t.Fatal("the deleted device is still registered")
	}
	// Its next Update finds no registration; it registers again, without
	// credentials now, and waits as pending like any unknown device.
	dev.Client().TriggerUpdate()
	eventually(t, "the device back only as pending", func() bool {
		d, ok := ta.device("gone-1")
		return ok && d.Pending && !d.Online
	})
	if _, ok := ta.a.srv.Registration("gone-1"); ok {
		t.Fatal("the deleted device registered again without credentials")
	}
}

// TestEndToEndSettingsApplyAtOnce: the queue-mode window and the retention
// saved in the web UI reach the LwM2M server and the store without a
// restart, and are back after one.
func TestEndToEndSettingsApplyAtOnce(t *testing.T) {
	cfg := testConfig(t)
	ta := startAppliance(t, cfg)
	ta.do("PUT", "/api/v1/settings", map[string]any{"retentionDays": 7, "autoObserve": []string{"/3303/0/5700"},
		"queueWindowSeconds": 600, "allowUnknownDevices": true}, http.StatusOK, nil)
	if got := ta.a.srv.AwakeWindow(); got != 600*time.Second {
		t.Errorf("server awake window = %v, want 10m", got)
	}
	if got := ta.a.db.Retention(); got != 7*24*time.Hour {
		t.Errorf("store retention = %v, want 168h", got)
	}
	ta.do("PUT", "/api/v1/settings", map[string]any{"retentionDays": 0, "queueWindowSeconds": 600}, http.StatusUnprocessableEntity, nil)
	// A partial update changes only what it names.
	var st struct {
		RetentionDays      int
		QueueWindowSeconds int
	}
	ta.do("PUT", "/api/v1/settings", map[string]any{"retentionDays": 9}, http.StatusOK, &st)
	if st.RetentionDays != 9 || st.QueueWindowSeconds != 600 {
		t.Errorf("after a partial update: %+v", st)
	}
	// A misspelled setting is refused, not ignored.
	ta.do("PUT", "/api/v1/settings", map[string]any{"allowUnknownEndpoints": true}, http.StatusBadRequest, nil)

	ta.shutdown()
	a2 := startBare(t, cfg)
	if got := a2.srv.AwakeWindow(); got != 600*time.Second {
		t.Errorf("after a restart: server awake window = %v, want 10m", got)
	}
}

// TestEndToEndRestartBringsDevicesBack: after the appliance restarts, a
// plain-CoAP device keeps its registration (restored, not registered
// again); one whose registration was not saved (a database from before
// registrations were saved) registers again within moments, because the
// appliance triggers its Update, instead of after its lifetime.
func TestEndToEndRestartBringsDevicesBack(t *testing.T) {
	cfg := testConfig(t)
	ta := startAppliance(t, cfg)
	coapAddr := ta.a.Addrs().CoAP
	dev, _ := ta.startDevice("phoenix-1", func(dc *simulation.DeviceConfig) {
		dc.Lifetime = time.Hour // its own next Update is far away
	})
	eventually(t, "online", func() bool { d, ok := ta.device("phoenix-1"); return ok && d.Online })
	first, _ := ta.a.srv.Registration("phoenix-1")
	// An Update that changes nothing is saved in a batch, at the latest
	// when the appliance stops.
	dev.Client().TriggerUpdate()
	var before *server.Registration
	eventually(t, "the Update processed", func() bool {
		before, _ = ta.a.srv.Registration("phoenix-1")
		return before.LastUpdate.After(first.LastUpdate)
	})

	ta.shutdown()
	cfg.Listen.CoAP = coapAddr // the device keeps talking to the same port
	a2, stop2 := startStoppable(t, cfg)
	if reg, ok := a2.srv.Registration("phoenix-1"); !ok || reg.ID != before.ID ||
		!reg.LastUpdate.Equal(before.LastUpdate.Truncate(time.Millisecond)) {
		t.Fatalf("registration after a restart: %+v, want %s restored, last update %v", reg, before.ID, before.LastUpdate)
	}
	if e, err := a2.db.Endpoint(context.Background(), "phoenix-1"); err != nil || !e.Online {
		t.Fatalf("restored device not online: %+v %v", e, err)
	}
	if st := a2.srv.Stats(); st.Registrations != 0 {
		t.Fatalf("%d Registers after the restart", st.Registrations)
	}
	stop2()

	// As if the registration had never been saved.
	db, err := store.Open(context.Background(), a2.storeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteRegistration(context.Background(), "phoenix-1", before.ID); err != nil {
		t.Fatal(err)
	}
	db.Close()
	a3 := startBare(t, cfg)
	eventually(t, "registered again after the restart", func() bool {
		reg, ok := a3.srv.Registration("phoenix-1")
		return ok && reg.ID != before.ID
	})
	eventually(t, "online in the store", func() bool {
		e, err := a3.db.Endpoint(context.Background(), "phoenix-1")
		return err == nil && e.Online
	})
}

// TestStartFailureClosesSockets: a start that fails on a busy port leaves
// no socket of its own open, so a corrected start can bind them all.
func TestStartFailureClosesSockets(t *testing.T) {
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	coapAddr := free.LocalAddr().String()
	free.Close()

	cfg := testConfig(t)
	cfg.Listen.CoAP = coapAddr
	cfg.Listen.Bootstrap = busy.LocalAddr().String() // bound after CoAP, and busy
	a, err := New(cfg, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "bootstrap listener") {
		t.Fatalf("start on a busy port: %v", err)
	}
	// The CoAP port the failed start had bound is free again.
	again, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(coapAddr)))
	if err != nil {
		t.Fatalf("the failed start kept %s: %v", coapAddr, err)
	}
	again.Close()
}
