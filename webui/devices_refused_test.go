package webui

import (
	"context"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/store"
)

// The device list shows refused registrations with a count and the last
// reason, and provisioned devices that never connected as such.
func TestDevicesPageRefusalsAndNeverConnected(t *testing.T) {
	e, _, _, v := adminEnv(t)
	ctx := context.Background()
	e.db.RecordRefusal(ctx, "stranger-1", "unknown: not provisioned", "127.0.0.1:5683")
	e.db.RecordRefusal(ctx, "stranger-1", "unknown: not provisioned", "127.0.0.1:5683")
	if _, err := e.db.ProvisionEndpoint(ctx, store.Credential{Endpoint: "fresh-1", Mode: "psk", PSKIdentity: "fresh-1", PSKKey: make([]byte, 16)}); err != nil {
		t.Fatal(err)
	}
	p := string(mustGet(t, v.cookieClient(), "/devices"))
	if !strings.Contains(p, `data-refused="stranger-1"`) || !strings.Contains(p, "2×") || !strings.Contains(p, "unknown: not provisioned") {
		t.Fatalf("refusals not shown:\n%s", p)
	}
	if !strings.Contains(p, `badge never-connected">never connected<`) {
		t.Fatalf("fresh device not shown as never connected:\n%s", p)
	}
	m := v.want(200, "GET", "/api/v1/devices/fresh-1", nil)
	if st := m["device"].(map[string]any)["status"]; st != "never-connected" {
		t.Fatalf("status %v", st)
	}
}
