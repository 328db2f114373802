package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/webui/browsertest"
)

// smallDisk mounts a tmpfs of size bytes on a temporary directory for the
// test and unmounts it at cleanup. It needs root: the test is skipped
// without it, and fails under CI=true, where it must run.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("disk-full test needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		skip("cannot mount a tmpfs for the disk-full test: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillUntil writes a filler file in dir until at most leave bytes are free.
func fillUntil(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < 1<<16; i++ {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		left := int64(st.Bavail)*int64(st.Bsize) - leave
		if left <= 0 {
			return p
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the filler never filled the file system")
	return p
}

// get fetches path without credentials and returns status and body.
func (ta *testAppliance) get(path string) (int, string) {
	ta.t.Helper()
	resp, err := http.Get(ta.url + path)
	if err != nil {
		ta.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDiskFullAppliance puts the data dir on a small tmpfs and fills it:
// the appliance keeps running, says so in /healthz (503 degraded with the
// reason), /metrics and a banner on every page, refuses a device's Send
// with 5.03 (so the device keeps the values) instead of acknowledging
// and dropping them, and accepts data again by itself once the filler is
// removed.
func TestDiskFullAppliance(t *testing.T) {
	cfg := testConfig(t)
	cfg.DataDir = smallDisk(t, 64<<20)
	cfg.Store.MinFreeMiB = 8
	ta := startAppliance(t, cfg)
	dev, _ := ta.startDevice("urn:dev:diskfull", nil)
	path := lwm2m.MustParsePath("/3303/0/5700")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	send := func(v float64) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return dev.Client().SendRecords(ctx, []lwm2m.Record{{Path: path, Value: lwm2m.Float(v), Time: t0.Add(time.Duration(v) * time.Second)}})
	}
	stored := func() map[float64]int {
		pts, err := ta.a.db.Readings(context.Background(), "urn:dev:diskfull", path, t0.Add(-time.Hour), t0.Add(time.Hour), 1000)
		if err != nil {
			t.Fatal(err)
		}
		out := map[float64]int{}
		for _, p := range pts {
			out[p.V.Float()]++
		}
		return out
	}
	metric := func(name string) string {
		_, body := ta.get("/metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				return v
			}
		}
		return ""
	}

	if err := send(1); err != nil {
		t.Fatalf("send before the disk filled: %v", err)
	}
	if code, body := ta.get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz before the disk filled: %d %s", code, body)
	}
	if m := metric("flownexus_disk_full"); m != "0" {
		t.Fatalf("flownexus_disk_full = %q before the disk filled", m)
	}

	filler := fillUntil(t, cfg.DataDir, 4<<20)
	eventually(t, "healthz degraded", func() bool {
		code, _ := ta.get("/healthz")
		return code == http.StatusServiceUnavailable
	})
	code, body := ta.get("/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"reason":"disk full`) {
		t.Fatalf("healthz on a full disk: %d %s", code, body)
	}
	if m := metric("flownexus_disk_full"); m != "1" {
		t.Fatalf("flownexus_disk_full = %q on a full disk", m)
	}
	if _, page := ta.get("/login"); !strings.Contains(page, `id="appliance-alert"`) || !strings.Contains(page, "Disk full") {
		t.Fatal("the login page shows no disk-full banner")
	}
	// The rest keeps running: the API answers, the device stays registered.
	if d, ok := ta.device("urn:dev:diskfull"); !ok || !d.Online {
		t.Fatalf("device on a full disk: %+v %v", d, ok)
	}

	err := send(2)
	if err == nil {
		t.Fatal("a Send was acknowledged while the disk was full")
	}
	if !strings.Contains(err.Error(), "5.03") {
		t.Fatalf("send on a full disk: %v, want a 5.03 answer", err)
	}
	if m := metric("flownexus_ingest_batches_refused_disk_full_total"); m == "" || m == "0" {
		t.Fatalf("refusal not counted: %q", m)
	}
	shotDiskFull(t, ta)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "healthz ok again", func() bool {
		code, _ := ta.get("/healthz")
		return code == http.StatusOK
	})
	if err := send(3); err != nil {
		t.Fatalf("send after space returned: %v", err)
	}
	eventually(t, "the value sent after recovery stored", func() bool { return stored()[3] == 1 })
	got := stored()
	if got[1] != 1 || got[2] != 0 {
		t.Fatalf("stored %v: want 1 and 3 once each and not the refused 2", got)
	}
	if _, page := ta.get("/login"); strings.Contains(page, `id="appliance-alert"`) {
		t.Fatal("the banner stayed after recovery")
	}
}

// shotDiskFull shows the banner in Debian's headless Chromium, as a
// person sees it (skipped without Chromium outside CI).
func shotDiskFull(t *testing.T, ta *testAppliance) {
	if _, err := exec.LookPath("chromium"); testing.Short() || err != nil && os.Getenv("CI") != "true" {
		t.Log("banner not shown in Chromium: short mode or no chromium (the HTML check above ran)")
		return
	}
	ctx := browsertest.Start(t)
	browsertest.Step(t, ctx, "disk-full banner on the login page",
		chromedp.Navigate(ta.url+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`#appliance-alert`)),
	)
	browsertest.Poll(t, ctx, "banner names the cause", `document.getElementById("appliance-alert").textContent.includes("Disk full")`)
	browsertest.Shot(t, ctx, "appliance-disk-full-banner")
}
