package webui

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// The device list filters by model (3/0/1, exact match) in the API and on
// the page, sorts by it, and the device page shows it.
func TestDevicesByModel(t *testing.T) {
	e, _, _, v := adminEnv(t)
	ctx := context.Background()
	for i, m := range []string{"sensor-a", "sensor-b", "sensor-a", ""} {
		ep := fmt.Sprintf("dev-%d", i)
		e.addDevice(ep, true)
		if m != "" {
			if err := e.db.SetEndpointModel(ctx, ep, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := func(path string) []string {
		t.Helper()
		var out []string
		for _, d := range v.want(200, "GET", path, nil)["devices"].([]any) {
			dm := d.(map[string]any)
			out = append(out, fmt.Sprint(dm["endpoint"], "=", dm["model"]))
		}
		return out
	}
	if l := got("/api/v1/devices?model=sensor-a"); fmt.Sprint(l) != "[dev-0=sensor-a dev-2=sensor-a]" {
		t.Fatalf("model=sensor-a: %v", l)
	}
	if l := got("/api/v1/devices?model=sensor"); len(l) != 0 {
		t.Fatalf("a prefix matched: %v", l)
	}
	if l := got("/api/v1/devices?sort=-model&limit=1"); fmt.Sprint(l) != "[dev-1=sensor-b]" {
		t.Fatalf("sort by model: %v", l)
	}
	v.want(400, "GET", "/api/v1/devices?sort=modelz", nil)

	vc := v.cookieClient()
	_, body := vc.do("GET", "/devices?model=sensor-b", nil)
	page := string(body)
	if !strings.Contains(page, `<option value="sensor-b" selected>`) || !strings.Contains(page, `data-endpoint="dev-1"`) || strings.Contains(page, `data-endpoint="dev-0"`) {
		t.Fatalf("devices page filtered by model:\n%s", page)
	}
	_, body = vc.do("GET", "/devices/dev-1", nil)
	if !strings.Contains(string(body), `<dd id="dev-model">sensor-b</dd>`) {
		t.Fatal("device page does not show the model")
	}
	_, body = vc.do("GET", "/devices/dev-3", nil)
	if !strings.Contains(string(body), `<dd id="dev-model">—</dd>`) {
		t.Fatal("device page: a device without a model")
	}
}
