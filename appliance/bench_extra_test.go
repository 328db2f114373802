package appliance

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
)

// simResult is the fleet simulator's phase: devices held and their cost.
type simResult struct {
	Transport        string  `json:"transport"`
	Devices          int     `json:"devices"`
	Registered       int64   `json:"registered"`
	RSSBefore        int64   `json:"rss_before_bytes"`
	RSSHeld          int64   `json:"rss_held_bytes"`
	GoroutinesBefore int64   `json:"goroutines_before"`
	GoroutinesHeld   int64   `json:"goroutines_held"`
	RSSPerDevice     float64 `json:"rss_bytes_per_device"`
	GoroutinesPerDev float64 `json:"goroutines_per_device"`
	Notifications    float64 `json:"notifications_in_window"`
	WindowSeconds    float64 `json:"window_seconds"`
	CPUMicros        float64 `json:"cpu_us_per_notification"`
	RegisterSeconds  float64 `json:"seconds_to_register_all"`
	// The simulator's own measure of its CON notifications' ACK latency
	// over the whole run (flownexus-sim --confirmable).
	Acks         int64   `json:"acks"`
	AckP50Micros float64 `json:"ack_p50_us"`
	AckP99Micros float64 `json:"ack_p99_us"`
}

// simAcks reads the simulator's final progress line (final=true … acks=N
// ack_p50=… ack_p99=…) from its log.
func simAcks(log string) (n int64, p50, p99 time.Duration) {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "final=true") {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "acks":
				n, _ = strconv.ParseInt(v, 10, 64)
			case "ack_p50":
				p50, _ = time.ParseDuration(v)
			case "ack_p99":
				p99, _ = time.ParseDuration(v)
			}
		}
	}
	return n, p50, p99
}

// runSim starts flownexus-sim pinned to the load core with --devices N
// plain-CoAP devices whose temperature changes every second, waits until
// all are registered, then measures a steady window: RSS and goroutines
// held per device, server CPU per notification.
func runSim(t *testing.T, ctx context.Context, app *benchTarget, bin, out string, secure bool) *simResult {
	n := *benchSim
	if secure {
		n = *benchSimDTLS
	}
	if n <= 0 {
		return nil
	}
	res := &simResult{Devices: n, Transport: "CoAP"}
	args := []string{"--server", "coap://" + app.coap, "--devices", strconv.Itoa(n), "--endpoint-prefix", "sim-"}
	if secure {
		// Every device provisioned with its own PSK identity (the
		// endpoint name) and the bench key, named exactly.
		res.Transport = "CoAP/DTLS PSK"
		key := hex.EncodeToString([]byte(benchPSK))
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("simdtls-%05d", i)
			code, body, err := app.api("POST", "/api/v1/devices", map[string]any{"endpoint": names[i],
				"security": map[string]string{"mode": "psk", "pskIdentity": names[i], "pskKey": key}})
			if err != nil || code != http.StatusCreated {
				t.Fatalf("provisioning %s: %d %v %s", names[i], code, err, body)
			}
		}
		args = []string{"--server", "coaps://" + app.coaps, "--endpoint", strings.Join(names, ","),
			"--psk-key", key, "--psk-identity-prefix", ""}
	}
	m0 := app.metrics()
	base := int64(m0["flownexus_registrations_current"])
	res.RSSBefore, res.GoroutinesBefore = app.proc.rss(), int64(m0["go_goroutines"])
	t0 := time.Now()
	// Large fleets start over n/2000 s (at least 5 s) and get that long
	// plus a minute to register.
	spread := max(5*time.Second, time.Duration(n)*time.Second/2000)
	name := "flownexus-sim"
	if secure {
		name += "-dtls"
	}
	sim := startProc(t, out, name, 1, nil, bin, append(args, "--lifetime", "600", "--start-spread", spread.String(), "--rate", "1s",
		"--source-addrs", "127.0.0.20-127.0.0.27", "--duration", benchSimDur.String(), "--confirmable", "--log-level", "info", "--stats-every", "5s")...)
	if !waitFor(ctx, spread+60*time.Second, func() bool {
		return int64(app.metrics()["flownexus_registrations_current"]) >= base+int64(n) || sim.exited()
	}) || sim.exited() {
		t.Errorf("flownexus-sim: not all %d devices registered; see %s", n, sim.log)
		sim.stop()
		return res
	}
	res.RegisterSeconds = time.Since(t0).Seconds()
	// Settle one period, then the window until the simulator's end nears.
	time.Sleep(2 * time.Second)
	w0, c0 := app.metrics(), app.proc.cpu()
	window := *benchSimDur - time.Since(t0) - 3*time.Second
	if window < 2*time.Second {
		window = 2 * time.Second
	}
	time.Sleep(window)
	w1, c1 := app.metrics(), app.proc.cpu()
	res.WindowSeconds = window.Seconds()
	res.Registered = int64(w1["flownexus_registrations_current"]) - base
	res.RSSHeld, res.GoroutinesHeld = app.proc.rss(), int64(w1["go_goroutines"])
	res.RSSPerDevice = float64(res.RSSHeld-res.RSSBefore) / float64(n)
	res.GoroutinesPerDev = float64(res.GoroutinesHeld-res.GoroutinesBefore) / float64(n)
	res.Notifications = w1["flownexus_notifications_total"] - w0["flownexus_notifications_total"]
	if res.Notifications > 0 {
		res.CPUMicros = float64(c1-c0) / float64(time.Microsecond) / res.Notifications
	}
	<-sim.done
	var p50, p99 time.Duration
	res.Acks, p50, p99 = simAcks(sim.log)
	res.AckP50Micros, res.AckP99Micros = us(p50), us(p99)
	// The simulator de-registers its devices when it ends.
	waitFor(ctx, 30*time.Second, func() bool { return int64(app.metrics()["flownexus_registrations_current"]) <= base })
	t.Logf("sim (%s): %d devices held, %.0f B and %.2f goroutines per device, %.0f notifications in %.0fs at %.1f µs each; %d CON ACKed, p50 %.0f µs p99 %.0f µs",
		res.Transport, res.Registered, res.RSSPerDevice, res.GoroutinesPerDev, res.Notifications, res.WindowSeconds, res.CPUMicros, res.Acks, res.AckP50Micros, res.AckP99Micros)
	return res
}

// provisionCerts creates n x509 devices on the appliance and returns their
// certificates (issued by the appliance's CA), by endpoint name.
func provisionCerts(t *testing.T, app *benchTarget, n int) map[string]tls.Certificate {
	out := map[string]tls.Certificate{}
	for i := range n {
		ep := fmt.Sprintf("x509-%03d", i)
		code, body, err := app.api("POST", "/api/v1/devices", map[string]any{"endpoint": ep,
			"security": map[string]string{"mode": "x509"}})
		if err != nil || code != http.StatusCreated {
			t.Fatalf("provisioning %s: %d %v %s", ep, code, err, body)
		}
		var r struct {
			Security struct{ Certificate, PrivateKey string }
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair([]byte(r.Security.Certificate), []byte(r.Security.PrivateKey))
		if err != nil {
			t.Fatalf("certificate of %s: %v", ep, err)
		}
		out[ep] = c
	}
	return out
}

// dtlsPhase: closed loops of a full DTLS handshake (lwm2m/dtls client,
// pion underneath), PSK or with the device certificates in certs, and a
// Register, then close; the server CPU per cycle.
func dtlsPhase(t *testing.T, ctx context.Context, tg *benchTarget, certs map[string]tls.Certificate) phaseResult {
	key := []byte(benchPSK)
	conc := *benchPSKConc
	eps := make([]string, conc)
	addr, phase := tg.coaps, "psk-handshake+register"
	if certs != nil {
		addr, phase = tg.coapsCert, "cert-handshake+register"
		if addr == "" {
			return phaseResult{Target: tg.name, Phase: phase}
		}
	}
	for i := range eps {
		eps[i] = fmt.Sprintf("psk-%03d", i)
		if certs != nil {
			eps[i] = fmt.Sprintf("x509-%03d", i)
			continue
		}
		if tg.http == "" {
			continue
		}
		code, body, err := tg.api("POST", "/api/v1/devices", map[string]any{"endpoint": eps[i],
			"security": map[string]string{"mode": "psk", "pskIdentity": eps[i], "pskKey": hex.EncodeToString(key)}})
		if err != nil || code != http.StatusCreated {
			t.Fatalf("provisioning %s: %d %v %s", eps[i], code, err, body)
		}
	}
	var failures atomic.Int64
	var firstErr atomic.Value
	pr := measure(ctx, tg, phase, conc, func() *loopResult {
		r := &loopResult{perPeer: make([]int64, conc), lat: newLatencies()}
		end := time.Now().Add(*benchPhase)
		var wg sync.WaitGroup
		for i, ep := range eps {
			wg.Go(func() {
				for time.Now().Before(end) && ctx.Err() == nil {
					t0 := time.Now()
					cfg := dtls.ClientConfig{PSKIdentity: ep, PSK: key, HandshakeTimeout: 5 * time.Second}
					if certs != nil {
						c := certs[ep]
						// The server's certificate is not checked: that is
						// the device's cost, not the server's.
						cfg = dtls.ClientConfig{Certificate: &c, InsecureSkipVerify: true, HandshakeTimeout: 5 * time.Second}
					}
					if err := dtlsRegister(ctx, addr, cfg, (&lgPeer{ep: ep, links: "</1/0>"}).registerMsg(3600), false); err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						r.lost.Add(1)
						continue
					}
					r.completed.Add(1)
					r.ok.Add(1)
					r.perPeer[i]++
					r.lat.add(time.Since(t0))
				}
			})
		}
		wg.Wait()
		r.wall = time.Since(r.lat.t0)
		return r
	})
	if n := failures.Load(); n > 0 {
		pr.Note = fmt.Sprintf("%d failed, first: %v", n, firstErr.Load())
	}
	t.Logf("%-10s %s %.1f µs/cycle, %.0f/s, %s", tg.name, phase, pr.CPUMicros, pr.PerSec, pr.Note)
	return pr
}

// webResult is the REST API's latency idle and while the fleet ingests.
type webResult struct {
	IdleP50  float64 `json:"idle_p50_ms"`
	IdleP95  float64 `json:"idle_p95_ms"`
	LoadP50  float64 `json:"ingesting_p50_ms"`
	LoadP95  float64 `json:"ingesting_p95_ms"`
	Requests int     `json:"ingesting_requests"`
}

// webLoad reads GET /api/v1/devices with the bearer token: n requests, or
// until stop is closed (with 100 ms between requests, a user's pace).
func webLoad(ctx context.Context, app *benchTarget, n int, stop <-chan struct{}) (p50, p95 float64, count int) {
	var lat []time.Duration
	for i := 0; n == 0 || i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		code, _, err := app.api("GET", "/api/v1/devices", nil)
		if err == nil && code == http.StatusOK {
			lat = append(lat, time.Since(t0))
		}
		if stop != nil {
			select {
			case <-stop:
				n = -1
			case <-time.After(100 * time.Millisecond):
			}
			if n < 0 {
				break
			}
		}
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	return ms(quantile(lat, 0.5)), ms(quantile(lat, 0.95)), len(lat)
}

// floodResult is the Register flood from devices that never answer: what
// the appliance holds during it and 10 s after.
type floodResult struct {
	Peers            int     `json:"peers"`
	Seconds          float64 `json:"seconds"`
	Registers        int64   `json:"registers_answered"`
	GoroutinesBefore int64   `json:"goroutines_before"`
	GoroutinesPeak   int64   `json:"goroutines_peak"`
	GoroutinesAfter  int64   `json:"goroutines_10s_after"`
	RSSBefore        int64   `json:"rss_before_bytes"`
	RSSPeak          int64   `json:"rss_peak_bytes"`
	RSSAfter         int64   `json:"rss_10s_after_bytes"`
	CPUMicros        float64 `json:"cpu_us_per_register"`
}

// floodPhase: the cost peers' Register flood again, but the devices
// announce 3/0 and 3303/0 and never answer the Read and Observe that each
// registration queues (the 47,045 goroutines).
func floodPhase(t *testing.T, ctx context.Context, app *benchTarget, sources []string) *floodResult {
	ps, err := newPeers(*benchPeers, app.coap, sources, "flood-", linksObserve)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.silent = true
	}
	m0 := app.metrics()
	res := &floodResult{Peers: len(ps), GoroutinesBefore: int64(m0["go_goroutines"]), RSSBefore: app.proc.rss()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			res.GoroutinesPeak = max(res.GoroutinesPeak, int64(app.metrics()["go_goroutines"]))
			res.RSSPeak = max(res.RSSPeak, app.proc.rss())
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	pr := measure(ctx, app, "register-silent", len(ps), func() *loopResult {
		return closedLoop(ctx, ps, *benchPhase, func(p *lgPeer) (*coap.Message, bool) { return p.registerMsg(3600), false })
	})
	closePeers(ps)
	time.Sleep(10 * time.Second)
	close(stop)
	wg.Wait()
	m1 := app.metrics()
	res.Seconds, res.Registers, res.CPUMicros = pr.Seconds, pr.OK, pr.CPUMicros
	res.GoroutinesAfter, res.RSSAfter = int64(m1["go_goroutines"]), app.proc.rss()
	t.Logf("silent Register flood: %d registers in %.0f s, goroutines %d → peak %d → %d 10 s after, RSS %s → %s → %s",
		res.Registers, res.Seconds, res.GoroutinesBefore, res.GoroutinesPeak, res.GoroutinesAfter, mib(res.RSSBefore), mib(res.RSSPeak), mib(res.RSSAfter))
	return res
}
