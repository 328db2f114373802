package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// fwBenchBlock is the Block2 size of the firmware phase: Nordic's CoAP
// downloader's default and the largest RFC 7959 allows.
const fwBenchBlock = 1024

// fwResult is the firmware phase: one image pulled over plain CoAP in
// 1024-byte Block2 blocks by every device of a flownexus-sim fleet at once.
type fwResult struct {
	Devices         int     `json:"devices"`
	ImageBytes      int     `json:"image_bytes"`
	BlockSize       int     `json:"block_size"`
	Registered      int64   `json:"registered"`
	RegisterSeconds float64 `json:"seconds_to_register_all"`
	Succeeded       int     `json:"succeeded"`
	Failed          int     `json:"failed"`
	Unfinished      int     `json:"unfinished"`
	Failures        string  `json:"failure_reasons,omitempty"`
	// The download window: from the deployment's creation until the
	// appliance had served every device the whole image (or the end).
	DownloadSeconds float64 `json:"download_seconds"`
	Blocks          float64 `json:"blocks_served"`
	Bytes           float64 `json:"coap_bytes_served"`
	BlocksPerSec    float64 `json:"blocks_per_sec"`
	MiBPerSec       float64 `json:"mib_per_sec"`
	CPUMicros       float64 `json:"cpu_us_per_block"`
	NetCPUMicros    float64 `json:"net_cpu_us_per_block"`
	IdleCPUPerSec   float64 `json:"idle_cpu_ms_per_s"`
	// The whole deployment: creation to the last device's final state
	// (URIs written, downloads, Update executed, re-registration with the
	// new version), its server CPU in all and per device.
	TotalSeconds     float64 `json:"deployment_seconds"`
	CPUTotalSeconds  float64 `json:"deployment_cpu_s"`
	CPUMillisPerDev  float64 `json:"deployment_cpu_ms_per_device"`
	Overloaded       float64 `json:"coap_overloaded"`
	RateLimited      float64 `json:"coap_rate_limited"`
	RSSBefore        int64   `json:"rss_before_bytes"`
	RSSPeak          int64   `json:"rss_peak_bytes"`
	GoroutinesBefore int64   `json:"goroutines_before"`
	GoroutinesPeak   int64   `json:"goroutines_peak"`
}

// runFirmware uploads an image through the REST API, starts flownexus-sim
// pinned to the load core with N pull-over-CoAP devices (block size 1024),
// deploys the image to all of them at once (maxConcurrent = N) and polls
// the deployment until every device has succeeded or failed. The server's
// CPU over the download window is divided by the Block2 responses it
// counted (flownexus_firmware_blocks_served_total).
func runFirmware(t *testing.T, ctx context.Context, app *benchTarget, smp *sampler, bin, out string) *fwResult {
	n := *benchFWDevices
	if n <= 0 {
		return nil
	}
	res := &fwResult{Devices: n, ImageBytes: *benchFWSize, BlockSize: fwBenchBlock}
	img := simulation.FirmwareImage("9.9.9-bench", res.ImageBytes, 1)
	id, err := app.uploadFirmware("9.9.9-bench", img)
	if err != nil {
		t.Errorf("firmware phase: upload: %v", err)
		return nil
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("fwb-%05d", i)
	}
	m0 := app.metrics()
	base := int64(m0["flownexus_registrations_current"])
	res.RSSBefore, res.GoroutinesBefore = app.proc.rss(), int64(m0["go_goroutines"])
	spread := max(5*time.Second, time.Duration(n)*time.Second/2000)
	t0 := time.Now()
	sim := startProc(t, out, "flownexus-sim-firmware", 1, nil, bin, "--server", "coap://"+app.coap,
		"--endpoint", strings.Join(names, ","), "--fw-protocols", "0", "--fw-delivery", "0",
		"--fw-block-size", strconv.Itoa(fwBenchBlock), "--lifetime", "900", "--rate", "0",
		"--start-spread", spread.String(), "--source-addrs", "127.0.0.40-127.0.0.47",
		"--duration", (spread + *benchFWTime + 2*time.Minute).String(), "--log-level", "warn", "--stats-every", "10s")
	defer func() {
		sim.stop()
		// The simulator de-registers its devices when it ends.
		waitFor(ctx, 30*time.Second, func() bool { return int64(app.metrics()["flownexus_registrations_current"]) <= base })
	}()
	if !waitFor(ctx, spread+60*time.Second, func() bool {
		return int64(app.metrics()["flownexus_registrations_current"]) >= base+int64(n) || sim.exited()
	}) || sim.exited() {
		t.Errorf("firmware phase: not all %d devices registered; see %s", n, sim.log)
		return res
	}
	res.RegisterSeconds = time.Since(t0).Seconds()
	res.Registered = int64(app.metrics()["flownexus_registrations_current"]) - base
	// Let the appliance finish its reads after the registrations, then
	// measure what it spends idle with the fleet registered.
	time.Sleep(2 * time.Second)
	idle := idleCPU(app, 3*time.Second)
	res.IdleCPUPerSec = idle * 1000

	smp.setPhase("firmware:download")
	w0, c0, d0 := app.metrics(), app.proc.cpu(), time.Now()
	code, body, err := app.api("POST", "/api/v1/firmware/"+id+"/deployments", webui.DeployRequest{Endpoints: names,
		MaxConcurrent: n, TimeoutSeconds: int(benchFWTime.Seconds()) + 60})
	if err != nil || code != http.StatusCreated {
		t.Errorf("firmware phase: deploy: %d %v %s", code, err, body)
		return res
	}
	var created struct{ ID string }
	if err := json.Unmarshal(body, &created); err != nil {
		t.Errorf("firmware phase: deploy answered %s: %v", body, err)
		return res
	}
	want := float64(n) * float64(res.ImageBytes)
	var w1 map[string]float64
	var c1 time.Duration
	var d1 time.Time
	var dep webui.Deployment
	lastPoll := time.Time{}
	deadline := d0.Add(*benchFWTime)
	for ctx.Err() == nil {
		m := app.metrics()
		if w1 == nil && m["flownexus_firmware_coap_bytes_served_total"]-w0["flownexus_firmware_coap_bytes_served_total"] >= want {
			w1, c1, d1 = m, app.proc.cpu(), time.Now()
			smp.setPhase("firmware:update")
		}
		if time.Since(lastPoll) >= time.Second || w1 != nil {
			lastPoll = time.Now()
			if code, body, err := app.api("GET", "/api/v1/deployments/"+created.ID, nil); err == nil && code == http.StatusOK {
				_ = json.Unmarshal(body, &dep)
			}
			if dep.Counts["succeeded"]+dep.Counts["failed"] >= n {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("firmware phase: deployment %s not finished after %s: %v", created.ID, *benchFWTime, dep.Counts)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cEnd, dEnd, mEnd := app.proc.cpu(), time.Now(), app.metrics()
	if w1 == nil { // not every device got the whole image
		w1, c1, d1 = mEnd, cEnd, dEnd
	}
	smp.setPhase("firmware:end")
	res.fill(dep, w0, w1, mEnd, c1-c0, cEnd-c0, d1.Sub(d0), dEnd.Sub(d0), idle)
	res.RSSPeak, res.GoroutinesPeak = smp.peakSince(d0)
	t.Logf("firmware: %d devices, %d B image in %d B blocks: %.0f blocks in %.1f s = %.0f blocks/s (%.1f MiB/s), %.1f µs server CPU per block (%.1f net of idle); deployment done in %.1f s (%d succeeded, %d failed, %d unfinished), %.2f ms CPU per device",
		n, res.ImageBytes, fwBenchBlock, res.Blocks, res.DownloadSeconds, res.BlocksPerSec, res.MiBPerSec, res.CPUMicros, res.NetCPUMicros,
		res.TotalSeconds, res.Succeeded, res.Failed, res.Unfinished, res.CPUMillisPerDev)
	return res
}

// fill computes the figures from the counters at the deployment's start
// (w0), the download window's end (w1) and the end (mEnd).
func (res *fwResult) fill(dep webui.Deployment, w0, w1, mEnd map[string]float64, cpuDL, cpuAll, dl, all time.Duration, idle float64) {
	res.Succeeded, res.Failed = dep.Counts["succeeded"], dep.Counts["failed"]
	res.Unfinished = res.Devices - res.Succeeded - res.Failed
	reasons := map[string]int{}
	for _, d := range dep.Devices {
		if d.State == "failed" {
			reasons[d.Error]++
		}
	}
	var rs []string
	for r, c := range reasons {
		rs = append(rs, fmt.Sprintf("%d× %s", c, r))
	}
	sort.Strings(rs)
	res.Failures = strings.Join(rs, "; ")
	res.Blocks = w1["flownexus_firmware_blocks_served_total"] - w0["flownexus_firmware_blocks_served_total"]
	res.Bytes = w1["flownexus_firmware_coap_bytes_served_total"] - w0["flownexus_firmware_coap_bytes_served_total"]
	res.DownloadSeconds, res.TotalSeconds = dl.Seconds(), all.Seconds()
	if res.Blocks > 0 && dl > 0 {
		res.BlocksPerSec = res.Blocks / dl.Seconds()
		res.MiBPerSec = res.Bytes / (1 << 20) / dl.Seconds()
		res.CPUMicros = float64(cpuDL) / float64(time.Microsecond) / res.Blocks
		res.NetCPUMicros = (float64(cpuDL) - idle*float64(dl)) / float64(time.Microsecond) / res.Blocks
	}
	res.CPUTotalSeconds = cpuAll.Seconds()
	res.CPUMillisPerDev = float64(cpuAll) / float64(time.Millisecond) / float64(res.Devices)
	res.Overloaded = mEnd["flownexus_coap_overloaded_total"] - w0["flownexus_coap_overloaded_total"]
	res.RateLimited = mEnd["flownexus_coap_rate_limited_total"] - w0["flownexus_coap_rate_limited_total"]
}

// uploadFirmware posts an image to POST /api/v1/firmware as the web UI's
// form does (multipart/form-data) and returns its id.
func (tg *benchTarget) uploadFirmware(version string, img []byte) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("version", version)
	fw, _ := mw.CreateFormFile("file", "bench-"+version+".bin")
	_, _ = fw.Write(img)
	_ = mw.Close()
	req, err := http.NewRequest("POST", "http://"+tg.http+"/api/v1/firmware", &buf)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tg.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	c := http.Client{Timeout: time.Minute}
	r, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil || r.StatusCode != http.StatusCreated || out.ID == "" {
		return "", fmt.Errorf("POST /api/v1/firmware: %s, %v", r.Status, err)
	}
	return out.ID, nil
}
