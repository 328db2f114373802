package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDeploymentPolicyTokensAndRetry(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	f, err := d.AddFirmware(ctx, Firmware{Version: "2.0.0", FileName: "x.bin", SHA256: strings.Repeat("cd", 32), Size: 10, Notes: "fixes", Target: "FN-SIM-9160"})
	if err != nil || f.Notes != "fixes" || f.Target != "FN-SIM-9160" {
		t.Fatalf("AddFirmware: %+v %v", f, err)
	}
	for _, ep := range []string{"a", "b"} {
		if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: ep}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetEndpointFirmwareVersion(ctx, "a", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateDeploymentSpec(ctx, DeploymentSpec{FirmwareID: f.ID, Endpoints: []string{"a"}, FailureThreshold: 2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("threshold 2: %v", err)
	}
	dep, err := d.CreateDeploymentSpec(ctx, DeploymentSpec{FirmwareID: f.ID, Endpoints: []string{"a", "b"}, MaxConcurrent: 1, DeviceTimeout: time.Minute, FailureThreshold: 0.5})
	if err != nil || dep.MaxConcurrent != 1 || dep.DeviceTimeout != time.Minute || dep.FailureThreshold != 0.5 {
		t.Fatalf("create: %+v %v", dep, err)
	}
	a := dep.Devices[0]
	if len(a.Token) != 32 || a.Token == dep.Devices[1].Token || a.FromVersion != "1.0.0" {
		t.Fatalf("device a: %+v", a)
	}
	got, err := d.DeploymentDeviceByToken(ctx, a.Token)
	if err != nil || got.Endpoint != "a" || got.DeploymentID != dep.ID || got.FirmwareID != f.ID {
		t.Fatalf("by token: %+v %v", got, err)
	}
	if _, err := d.DeploymentDeviceByToken(ctx, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty token: %v", err)
	}
	if err := d.UpdateDeploymentDevice(ctx, dep.ID, "a", DeviceChange{State: DeviceDownloading, Method: "coap", Restart: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDeploymentProgress(ctx, dep.ID, "a", 7); err != nil {
		t.Fatal(err)
	}
	_ = d.SetDeploymentProgress(ctx, dep.ID, "a", 3) // never goes back
	open, err := d.OpenDeploymentDevices(ctx, "a")
	if err != nil || len(open) != 1 || open[0].Progress != 7 || open[0].Method != "coap" || open[0].Started.IsZero() {
		t.Fatalf("open: %+v %v", open, err)
	}
	if err := d.UpdateDeploymentDevice(ctx, dep.ID, "a", DeviceChange{State: DeviceFailed, Result: 5, Error: "integrity"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.DeploymentCounts(ctx, dep.ID); c[DeviceFailed] != 1 || c[DevicePending] != 1 {
		t.Fatalf("counts %v", c)
	}
	if err := d.SetDeploymentStatusReason(ctx, dep.ID, DeploymentHalted, "too many failures"); err != nil {
		t.Fatal(err)
	}
	if n, err := d.RetryDeployment(ctx, dep.ID); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	got2, _ := d.Deployment(ctx, dep.ID)
	if got2.Status != DeploymentRunning || got2.Reason != "" || got2.Devices[0].State != DevicePending || got2.Devices[0].Progress != 0 {
		t.Fatalf("after retry: %+v", got2)
	}
	if _, err := d.RetryDeployment(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retry unknown: %v", err)
	}
	if h, _ := d.DeploymentHistory(ctx, "b"); len(h) != 1 || h[0].DeploymentID != dep.ID {
		t.Fatalf("history %+v", h)
	}
}
