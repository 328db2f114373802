package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

func TestFirmwareAndDeployments(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	sum := strings.Repeat("ab", 32)
	f, err := d.AddFirmware(ctx, Firmware{Version: "1.2.0", Name: "app", FileName: "app.bin", SHA256: strings.ToUpper(sum), Size: 1234})
	if err != nil || f.SHA256 != sum || f.ID == 0 {
		t.Fatalf("AddFirmware: %+v %v", f, err)
	}
	if _, err := d.AddFirmware(ctx, Firmware{Version: "again", FileName: "x", SHA256: sum}); !errors.Is(err, ErrConflict) {
		t.Fatalf("same image twice: %v", err)
	}
	if _, err := d.AddFirmware(ctx, Firmware{Version: "1", FileName: "x", SHA256: "short"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad hash: %v", err)
	}
	if g, err := d.FirmwareBySHA256(ctx, sum); err != nil || g.ID != f.ID {
		t.Fatalf("FirmwareBySHA256: %+v %v", g, err)
	}
	if err := d.UpdateFirmware(ctx, f.ID, "1.2.1", "app"); err != nil {
		t.Fatal(err)
	}
	if l, _ := d.Firmwares(ctx); len(l) != 1 || l[0].Version != "1.2.1" {
		t.Fatalf("Firmwares: %+v", l)
	}
	d.UpsertEndpoint(ctx, Endpoint{Name: "a"})
	d.UpsertEndpoint(ctx, Endpoint{Name: "b"})
	if _, err := d.CreateDeployment(ctx, f.ID, []string{"a", "ghost"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	if _, err := d.CreateDeployment(ctx, 999, []string{"a"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown firmware: %v", err)
	}
	if _, err := d.CreateDeployment(ctx, f.ID, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no endpoints: %v", err)
	}
	if l, _ := d.Deployments(ctx); len(l) != 0 {
		t.Fatalf("failed deployment left rows: %+v", l)
	}
	dep, err := d.CreateDeployment(ctx, f.ID, []string{"b", "a"})
	if err != nil || dep.Status != DeploymentRunning || len(dep.Devices) != 2 || dep.Devices[0].Endpoint != "a" || dep.Devices[0].State != DevicePending {
		t.Fatalf("CreateDeployment: %+v %v", dep, err)
	}
	if err := d.SetDeploymentDevice(ctx, dep.ID, "a", DeviceFailed, 5, "integrity check failure"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDeploymentDevice(ctx, dep.ID, "a", "exploded", 0, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad state: %v", err)
	}
	if err := d.SetDeploymentDevice(ctx, dep.ID, "ghost", DeviceFailed, 0, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("device not in deployment: %v", err)
	}
	if ids, _ := d.ActiveDeploymentsOf(ctx, "b"); len(ids) != 1 || ids[0] != dep.ID {
		t.Fatalf("active of b: %v", ids)
	}
	if ids, _ := d.ActiveDeploymentsOf(ctx, "a"); len(ids) != 0 {
		t.Fatalf("active of a (failed): %v", ids)
	}
	got, _ := d.Deployment(ctx, dep.ID)
	if got.Devices[0].Result != 5 || got.Devices[0].Error == "" {
		t.Fatalf("device state: %+v", got.Devices[0])
	}
	if err := d.DeleteFirmware(ctx, f.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete firmware in use: %v", err)
	}
	if err := d.SetDeploymentStatus(ctx, dep.ID, DeploymentDone); err != nil {
		t.Fatal(err)
	}
	if ids, _ := d.ActiveDeploymentsOf(ctx, "b"); len(ids) != 0 {
		t.Fatalf("active after done: %v", ids)
	}
}

func TestDeviceLogs(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	if err := d.AddDeviceLog(ctx, "ghost", time.Now(), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	d.UpsertEndpoint(ctx, Endpoint{Name: "dev"})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := d.AddDeviceLog(ctx, "dev", t0, "boot", "net up", "lwm2m registered"); err != nil {
		t.Fatal(err)
	}
	l, err := d.DeviceLogs(ctx, "dev", 0, 2)
	if err != nil || len(l) != 2 || l[0].Line != "lwm2m registered" || !l[0].Time.Equal(t0) {
		t.Fatalf("DeviceLogs: %+v %v", l, err)
	}
	more, _ := d.DeviceLogs(ctx, "dev", l[1].ID, 10)
	if len(more) != 1 || more[0].Line != "boot" {
		t.Fatalf("page 2: %+v", more)
	}
}

func TestBackup(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runWriter(t, d)
	d.CreateUser(ctx, "alice", "h", RoleAdmin)
	d.ProvisionEndpoint(ctx, Credential{Endpoint: "dev", Mode: ModePSK, PSKIdentity: "dev", PSKKey: []byte{1}})
	ingestOne(t, d, "dev", "/3303/0/5700", 21.5)

	dest := filepath.Join(t.TempDir(), "copy.db")
	if err := d.BackupTo(ctx, dest); err != nil {
		t.Fatal(err)
	}
	if err := d.BackupTo(ctx, dest); !errors.Is(err, ErrConflict) {
		t.Fatalf("backup over a file: %v", err)
	}
	if err := d.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.Path() + "-wal"); err != nil || fi.Size() != 0 {
		t.Fatalf("WAL after a truncating checkpoint: %v %v", fi, err)
	}
	var buf bytes.Buffer
	if err := d.Backup(ctx, &buf); err != nil || !bytes.HasPrefix(buf.Bytes(), []byte("SQLite format 3\x00")) {
		t.Fatalf("Backup to writer: %d bytes %v", buf.Len(), err)
	}
	cfg := DefaultConfig()
	cfg.Path = dest
	b := openWith(t, cfg)
	var ok string
	b.r.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok)
	if ok != "ok" {
		t.Fatalf("integrity of copy: %s", ok)
	}
	if _, err := b.UserByName(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if c, err := b.CredentialByPSKIdentity(ctx, "dev"); err != nil || c.PSKKey[0] != 1 {
		t.Fatalf("credential in copy: %+v %v", c, err)
	}
	pts, err := b.Readings(ctx, "dev", lwm2m.MustParsePath("/3303/0/5700"), time.Unix(0, 0), time.Now().Add(time.Hour), 0)
	if err != nil || len(pts) != 1 || pts[0].V.Float() != 21.5 {
		t.Fatalf("readings in copy: %v %v", pts, err)
	}
}

// TestBackupWhileIngesting: a backup taken during constant ingestion
// finishes and is a consistent database.
func TestBackupWhileIngesting(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runWriter(t, d)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d.IngestWait(ctx, Batch{Endpoint: "dev", Records: []lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(float64(i))}}})
		}
	}()
	flush(t, d) // ingestion is under way
	dest := filepath.Join(t.TempDir(), "live.db")
	err := d.BackupTo(ctx, dest)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Path = dest
	b := openWith(t, cfg)
	var ok string
	b.r.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok)
	if ok != "ok" {
		t.Fatalf("integrity of live copy: %s", ok)
	}
}
