package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDeploymentHeader: the policy and status of a deployment without its
// devices — the same fields Deployment returns — and ErrNotFound for an
// unknown id.
func TestDeploymentHeader(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	f, err := d.AddFirmware(ctx, Firmware{Version: "3.0.0", FileName: "h.bin", SHA256: strings.Repeat("ef", 32), Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"h1", "h2", "h3"} {
		if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: ep}); err != nil {
			t.Fatal(err)
		}
	}
	dep, err := d.CreateDeploymentSpec(ctx, DeploymentSpec{FirmwareID: f.ID, Endpoints: []string{"h1", "h2", "h3"}, MaxConcurrent: 2, DeviceTimeout: time.Minute, FailureThreshold: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetDeploymentStatusReason(ctx, dep.ID, DeploymentHalted, "halted by the test"); err != nil {
		t.Fatal(err)
	}
	full, err := d.Deployment(ctx, dep.ID)
	if err != nil || len(full.Devices) != 3 {
		t.Fatalf("Deployment: %d devices, %v", len(full.Devices), err)
	}
	h, err := d.DeploymentHeader(ctx, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.Devices != nil {
		t.Fatalf("header carries %d devices", len(h.Devices))
	}
	full.Devices = nil
	if h.ID != full.ID || h.FirmwareID != full.FirmwareID || h.Status != DeploymentHalted || h.Reason != "halted by the test" ||
		h.MaxConcurrent != 2 || h.DeviceTimeout != time.Minute || h.FailureThreshold != 0.25 || !h.Created.Equal(full.Created) || !h.Updated.Equal(full.Updated) {
		t.Fatalf("header %+v, want %+v", h, full)
	}
	if _, err := d.DeploymentHeader(ctx, dep.ID+100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}
