package appliance

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

var (
	benchHeld     = flag.Int("fnbench.held", 2000, "PSK devices in queue mode that handshake, register and go to sleep, for the held phase (the issue's figure: 100000)")
	benchHeldConc = flag.Int("fnbench.held-peers", 8, "concurrent handshake+Register loops of the held phase")
)

// heldResult is what the appliance holds for a fleet of sleeping DTLS
// devices: every session parked, every registration kept.
type heldResult struct {
	Devices          int     `json:"devices"`
	Registered       int64   `json:"registered"`
	Failed           int64   `json:"failed"`
	ProvisionSeconds float64 `json:"provision_seconds"`
	FillSeconds      float64 `json:"fill_seconds"`
	CPUMicros        float64 `json:"cpu_us_per_handshake_register"`
	RSSBefore        int64   `json:"rss_before_bytes"`
	RSSPeak          int64   `json:"rss_peak_bytes"`
	RSSHeld          int64   `json:"rss_held_bytes"`
	GoroutinesBefore int64   `json:"goroutines_before"`
	GoroutinesHeld   int64   `json:"goroutines_held"`
	Sessions         int64   `json:"dtls_sessions"`
	Live             int64   `json:"dtls_sessions_live"`
	Note             string  `json:"note,omitempty"`
}

// heldPhase provisions -fnbench.held PSK devices through the REST API, then
// each does a full handshake and a queue-mode Register (lifetime 24 h,
// announcing only /1/0, so the appliance queues no Read for it) and goes to
// sleep the way a device does: its DTLS state is dropped without a
// close_notify, so the appliance keeps the session. Once the appliance has
// parked them all (ParkAfter after their Register), its RSS and goroutines
// are what holding the fleet costs.
func heldPhase(t *testing.T, ctx context.Context, app *benchTarget, smp *sampler) *heldResult {
	n := *benchHeld
	res := &heldResult{Devices: n}
	key := []byte(benchPSK)
	t0 := time.Now()
	if err := heldProvision(ctx, app, n, hex.EncodeToString(key)); err != nil {
		t.Fatal(err)
	}
	res.ProvisionSeconds = time.Since(t0).Seconds()
	m0 := app.metrics()
	res.RSSBefore, res.GoroutinesBefore = app.proc.rss(), int64(m0["go_goroutines"])

	start, c0 := time.Now(), app.proc.cpu()
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range *benchHeldConc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && ctx.Err() == nil; i = next.Add(1) - 1 {
				ep := heldName(int(i))
				cfg := dtls.ClientConfig{PSKIdentity: ep, PSK: key, HandshakeTimeout: 10 * time.Second}
				m := (&lgPeer{ep: ep, links: "</1/0>"}).registerMsg(86400)
				m.AddQuery("Q")
				if err := dtlsRegister(ctx, app.coaps, cfg, m, true); err != nil {
					atomic.AddInt64(&res.Failed, 1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", ep, err))
					continue
				}
				atomic.AddInt64(&res.Registered, 1)
			}
		})
	}
	wg.Wait()
	res.FillSeconds = time.Since(start).Seconds()
	// Every session is parked within ParkAfter (30 s) of its last record.
	waitFor(ctx, 3*time.Minute, func() bool {
		m := app.metrics()
		return m["flownexus_dtls_sessions_live"] == 0 && m["flownexus_ingest_queue_length"] == 0
	})
	if res.Registered > 0 {
		res.CPUMicros = float64(app.proc.cpu()-c0) / float64(time.Microsecond) / float64(res.Registered)
	}
	time.Sleep(5 * time.Second)
	m1 := app.metrics()
	res.RSSHeld, res.GoroutinesHeld = app.proc.rss(), int64(m1["go_goroutines"])
	res.Sessions, res.Live = int64(m1["flownexus_dtls_sessions_current"]), int64(m1["flownexus_dtls_sessions_live"])
	res.RSSPeak, _ = smp.peakSince(start)
	if v := firstErr.Load(); v != nil {
		res.Note = fmt.Sprintf("%d failed, first: %v", res.Failed, v)
	}
	t.Logf("held: %d PSK queue-mode devices registered (%d failed) in %.0f s, %.0f µs server CPU each; RSS %s → peak %s → held %s, goroutines %d → %d, sessions %d (%d live)",
		res.Registered, res.Failed, res.FillSeconds, res.CPUMicros, mib(res.RSSBefore), mib(res.RSSPeak), mib(res.RSSHeld),
		res.GoroutinesBefore, res.GoroutinesHeld, res.Sessions, res.Live)
	return res
}

func heldName(i int) string { return fmt.Sprintf("held-%06d", i) }

// heldProvision creates the held phase's PSK devices, eight requests at a
// time.
func heldProvision(ctx context.Context, app *benchTarget, n int, key string) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && ctx.Err() == nil && first.Load() == nil; i = next.Add(1) - 1 {
				ep := heldName(int(i))
				code, body, err := app.api("POST", "/api/v1/devices", map[string]any{"endpoint": ep,
					"security": map[string]string{"mode": "psk", "pskIdentity": ep, "pskKey": key}})
				if err != nil || code != http.StatusCreated {
					first.CompareAndSwap(nil, fmt.Errorf("provisioning %s: %d %v %s", ep, code, err, body))
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// dtlsRegister is one device's handshake and Register m over DTLS; with
// sleep the device then drops its DTLS state without telling the server
// (a sleeping device), else it closes the session.
func dtlsRegister(ctx context.Context, addr string, cfg dtls.ClientConfig, m *coap.Message, sleep bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dtls.Dial(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if sleep {
			_, _ = c.Suspend()
		} else {
			c.Close()
		}
	}()
	m.MessageID, m.Token = 1, []byte{1, 2, 3, 4}
	b, _ := m.Marshal()
	if err := c.WriteTo(b, c.Peer()); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				done <- err
				return
			}
			r, err := coap.Unmarshal(buf[:n])
			if err == nil && r.MessageID == 1 && r.Type == coap.Acknowledgement {
				if r.Code != coap.Created {
					done <- fmt.Errorf("register over DTLS: %v %s", r.Code, r.Payload)
				} else {
					done <- nil
				}
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("register over DTLS: %w", ctx.Err())
	}
}
