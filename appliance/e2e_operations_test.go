package appliance

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestEndToEndEveryOperation runs each operation type of ../shared/API.md
// through the REST API against a simulated device, and checks its effect on
// the device or in the result.
func TestEndToEndEveryOperation(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	dev, _ := ta.startDevice("ops-1", nil)
	eventually(t, "device online", func() bool {
		d, ok := ta.device("ops-1")
		return ok && d.Online
	})
	confirm := func(body map[string]any) apiOperation {
		t.Helper()
		op := ta.operation("ops-1", body, 15)
		if op.Status != "confirmed" {
			t.Fatalf("%v: %+v", body, op)
		}
		return op
	}
	values := func(op apiOperation) map[string]any {
		t.Helper()
		var r struct{ Values map[string]any }
		if err := json.Unmarshal(op.Result, &r); err != nil {
			t.Fatalf("result %s: %v", op.Result, err)
		}
		return r.Values
	}

	// Execute: the device reboots.
	reboots := dev.Reboots()
	confirm(map[string]any{"type": "execute", "path": "/3/0/4"})
	if dev.Reboots() != reboots+1 {
		t.Errorf("reboots = %d, want %d", dev.Reboots(), reboots+1)
	}

	// Write-Attributes, then Discover shows them.
	confirm(map[string]any{"type": "write-attributes", "path": "/3303/0/5700", "attributes": map[string]string{"pmin": "1", "pmax": "30"}})
	if a := dev.Client().Attributes(lwm2m.MustParsePath("/3303/0/5700")); !strings.Contains(a.String(), "pmin=1") || !strings.Contains(a.String(), "pmax=30") {
		t.Errorf("device attributes after write-attributes = %s", a)
	}

	// Observe and cancel.
	op := confirm(map[string]any{"type": "observe", "path": "/3/0/9"})
	if _, ok := values(op)["3/0/9"]; !ok {
		t.Errorf("observe result = %s", op.Result)
	}
	confirm(map[string]any{"type": "cancel-observe", "path": "/3/0/9"})
	for _, paths := range dev.Client().Observations() {
		for _, p := range paths {
			if p == lwm2m.MustParsePath("/3/0/9") {
				t.Errorf("the device still has an observation of /3/0/9")
			}
		}
	}

	// Create an instance, read it, delete it.
	op = confirm(map[string]any{"type": "create", "path": "/3303/7", "value": map[string]any{"5700": 18.5}})
	if !strings.Contains(string(op.Result), "/3303/7") {
		t.Errorf("create result = %s", op.Result)
	}
	op = confirm(map[string]any{"type": "read", "path": "/3303/7/5700", "format": "tlv"})
	if v := values(op)["3303/7/5700"]; v != 18.5 {
		t.Errorf("created instance reads %v, want 18.5", v)
	}
	confirm(map[string]any{"type": "delete", "path": "/3303/7"})
	op = ta.operation("ops-1", map[string]any{"type": "read", "path": "/3303/7"}, 15)
	if op.Status != "failed" {
		t.Errorf("read of a deleted instance: %+v", op)
	}

	// A partial write (POST) changes what it names and keeps the rest.
	confirm(map[string]any{"type": "write", "path": "/3/0/15", "value": "Etc/UTC"})
	confirm(map[string]any{"type": "write", "path": "/3/0", "partial": true, "value": map[string]any{"14": "+03:00"}})
	op = confirm(map[string]any{"type": "read-composite", "paths": []string{"/3/0/14", "/3/0/15"}})
	if v := values(op); v["3/0/14"] != "+03:00" || v["3/0/15"] != "Etc/UTC" {
		t.Errorf("after a partial write: %v", v)
	}

	// Composite read and write.
	confirm(map[string]any{"type": "write-composite", "value": map[string]any{"/3/0/14": "+01:00", "/3/0/15": "Europe/Berlin"}})
	op = confirm(map[string]any{"type": "read-composite", "paths": []string{"/3/0/14", "/3/0/15", "/3303/0/5700"}, "format": "senml-json"})
	v := values(op)
	if v["3/0/14"] != "+01:00" || v["3/0/15"] != "Europe/Berlin" || v["3303/0/5700"] == nil {
		t.Errorf("read-composite = %v", v)
	}

	// Observe-composite answers with the current values of every path.
	op = confirm(map[string]any{"type": "observe-composite", "paths": []string{"/3303/0/5700", "/3/0/9"}})
	if v := values(op); v["3303/0/5700"] == nil || v["3/0/9"] == nil {
		t.Errorf("observe-composite result = %s", op.Result)
	}
	dev.Step(time.Now())

	// Send (/dp): the device pushes values; they become telemetry.
	if err := dev.Client().Send(t.Context(), lwm2m.MustParsePath("/3/0/9")); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, "send stored as an event", func() bool {
		var evs struct {
			Events []struct{ Kind string } `json:"events"`
		}
		ta.do("GET", "/api/v1/devices/ops-1/events", nil, http.StatusOK, &evs)
		for _, e := range evs.Events {
			if e.Kind == eventSend {
				return true
			}
		}
		return false
	})

	// Refusals at the API edge: unknown type, bad path, read-only write.
	for _, body := range []map[string]any{
		{"type": "frobnicate", "path": "/3/0"},
		{"type": "read", "path": "/3/x"},
		{"type": "write", "path": "/3/0/0", "value": "x"},
		{"type": "execute", "path": "/3/0"},
		{"type": "write-attributes", "path": "/3303/0/5700", "attributes": map[string]string{"pmin": "-1"}},
		{"type": "write-attributes", "path": "/3303/0/5700", "attributes": map[string]string{"pmin": "10", "pmax": "5"}},
		{"type": "read", "path": "/"},
		{"type": "read", "path": "/3/0", "partial": true},
	} {
		var e struct{ Error string }
		ta.do("POST", "/api/v1/devices/ops-1/operations", body, http.StatusUnprocessableEntity, &e)
		if e.Error == "" {
			t.Errorf("%v: no error message", body)
		}
	}
	ta.do("POST", "/api/v1/devices/nobody/operations", map[string]any{"type": "read", "path": "/3/0"}, http.StatusNotFound, nil)
}
