package appliance

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// The whole-appliance benchmark of issue 15, run by `make bench`: it
// starts `flownexus serve` (the binary built from this tree, a fresh data
// dir, free loopback ports) pinned to core 0, a go-coap v3 server,
// libcoap's coap-server and a raw UDP echo beside it, and drives them from
// this process, pinned to core 1, over loopback. It writes bench.json and
// bench.md. FLOWNEXUS_BENCH=1 turns it on; `make test` skips it.
//
//	FLOWNEXUS_BENCH=1 go test -run '^TestBench$' -v -timeout 60m ./appliance \
//	    -args -fnbench.bin=../bin -fnbench.phase=60s -fnbench.fleet=10000
var (
	benchBin       = flag.String("fnbench.bin", "../bin", "directory holding flownexus and flownexus-sim")
	benchOut       = flag.String("fnbench.out", "../.run/bench", "directory for bench.json, bench.md and the processes' logs")
	benchPhase     = flag.Duration("fnbench.phase", 6*time.Second, "length of each closed-loop phase")
	benchPeers     = flag.Int("fnbench.peers", 32, "closed-loop peers of the cost phases")
	benchFair      = flag.Int("fnbench.fair-peers", 64, "closed-loop peers of the fairness phase")
	benchFairDur   = flag.Duration("fnbench.fair", 20*time.Second, "length of the fairness/drift phase (the issue's target: 40s)")
	benchFleet     = flag.Int("fnbench.fleet", 1000, "devices of the open-loop notification phase")
	benchEvery     = flag.Duration("fnbench.every", time.Second, "each fleet device notifies this often")
	benchFleetDur  = flag.Duration("fnbench.fleet-time", 20*time.Second, "length of the open-loop notification phase")
	benchSources   = flag.Int("fnbench.sources", 8, "loopback source addresses the peers of a phase are spread over (127.0.0.2…, moved to a /24 of its own per phase)")
	benchSim       = flag.Int("fnbench.sim", 500, "devices of the flownexus-sim phase (devices held)")
	benchSimDTLS   = flag.Int("fnbench.sim-dtls", 200, "devices of the flownexus-sim phase over DTLS with PSK (provisioned through the REST API)")
	benchSimDur    = flag.Duration("fnbench.sim-time", 25*time.Second, "length of the flownexus-sim phase")
	benchPSKConc   = flag.Int("fnbench.psk-peers", 4, "concurrent DTLS handshake+Register loops (PSK and certificate)")
	benchFWDevices = flag.Int("fnbench.fw-devices", 250, "flownexus-sim devices that download one image at once over CoAP in 1024-byte blocks (0: no firmware phase; the issue's figure: 1000)")
	benchFWSize    = flag.Int("fnbench.fw-size", 256<<10, "bytes of the firmware phase's image")
	benchFWTime    = flag.Duration("fnbench.fw-time", 5*time.Minute, "longest the firmware phase's deployment may take")
	benchOnly      = flag.String("fnbench.only", "", "run only these phases, comma-separated: sim, cost, fleet, fairness, dtls, register, flood, firmware (empty: all)")
)

// benchPhases are the names -fnbench.only knows.
var benchPhases = []string{"sim", "cost", "fleet", "fairness", "dtls", "register", "flat", "flood", "held", "firmware"}

// checkOnly refuses a -fnbench.only naming no phase (a typo would run nothing).
func checkOnly(t *testing.T) {
	for _, p := range strings.Split(*benchOnly, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(benchPhases, p) {
			t.Fatalf("-fnbench.only: no phase %q (phases: %s)", p, strings.Join(benchPhases, ", "))
		}
	}
}

// benchWant reports whether phase runs (-fnbench.only).
func benchWant(phase string) bool {
	if *benchOnly == "" {
		return true
	}
	for _, p := range strings.Split(*benchOnly, ",") {
		if strings.TrimSpace(p) == phase {
			return true
		}
	}
	return false
}

// benchReport is bench.json.
type benchReport struct {
	Started  string            `json:"started"`
	Machine  map[string]string `json:"machine"`
	Command  string            `json:"command"`
	Options  map[string]string `json:"options"`
	Phases   []phaseResult     `json:"phases"`
	Fleet    *openResult       `json:"fleet,omitempty"`
	Observed int               `json:"fleet_observed"`
	WebAPI   *webResult        `json:"web_api,omitempty"`
	Sim      []*simResult      `json:"sim,omitempty"`
	Flood    *floodResult      `json:"register_flood_silent,omitempty"`
	Firmware *fwResult         `json:"firmware,omitempty"`
	Held     *heldResult       `json:"held_psk_queue_mode,omitempty"`
	Flat     []flatWindow      `json:"flat,omitempty"`
	Samples  []sample          `json:"samples"`
	Peak     sample            `json:"peak"`
	Notes    []string          `json:"notes,omitempty"`
}

func TestBench(t *testing.T) {
	if os.Getenv("FLOWNEXUS_BENCH") == "" {
		t.Skip("the appliance benchmark runs under make bench (FLOWNEXUS_BENCH=1)")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatal("taskset (util-linux) is needed to pin server and load to separate cores")
	}
	checkOnly(t)
	ctx := t.Context()
	out, err := filepath.Abs(*benchOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, _ := filepath.Abs(*benchBin)
	rep := &benchReport{Started: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(),
		Command: strings.Join(os.Args, " "), Options: benchOptions()}
	pinSelf(t, 1)

	app := startBenchAppliance(t, ctx, out, filepath.Join(bin, "flownexus"))
	smp := startSampler(ctx, app)
	peers := []*benchTarget{app}
	if benchWant("cost") || benchWant("fairness") || benchWant("dtls") || benchWant("register") {
		peers = append(peers, startRole(t, ctx, out, "gocoap", true))
		if lc := startLibcoap(t, ctx, out); lc != nil {
			peers = append(peers, lc)
		}
		peers = append(peers, startRole(t, ctx, out, "echo", false))
	}
	sources := loopbackSources(*benchSources)

	for _, secure := range []bool{false, true} {
		if !benchWant("sim") {
			break
		}
		smp.setPhase(map[bool]string{false: "sim", true: "sim-dtls"}[secure])
		if r := runSim(t, ctx, app, filepath.Join(bin, "flownexus-sim"), out, secure); r != nil {
			rep.Sim = append(rep.Sim, r)
		}
	}
	for _, tg := range peers {
		if !benchWant("cost") {
			break
		}
		smp.setPhase("cost:" + tg.name)
		rep.Phases = append(rep.Phases, costPhases(t, ctx, tg, sources)...)
	}
	if benchWant("fleet") {
		smp.setPhase("fleet")
		rep.Fleet, rep.Observed, rep.WebAPI = runFleet(t, ctx, app, sources)
	}
	for _, tg := range peers[:min(2, len(peers))] {
		if !benchWant("fairness") {
			break
		}
		smp.setPhase("fairness:" + tg.name)
		rep.Phases = append(rep.Phases, fairPhase(t, ctx, tg, sources))
	}
	if benchWant("dtls") {
		certs := provisionCerts(t, app, *benchPSKConc)
		for _, tg := range peers[:2] {
			smp.setPhase("psk:" + tg.name)
			rep.Phases = append(rep.Phases, dtlsPhase(t, ctx, tg, nil))
			smp.setPhase("cert:" + tg.name)
			rep.Phases = append(rep.Phases, dtlsPhase(t, ctx, tg, certs))
		}
	}
	for _, tg := range peers {
		if !benchWant("register") {
			break
		}
		smp.setPhase("register:" + tg.name)
		rep.Phases = append(rep.Phases, registerPhase(t, ctx, tg, sources))
	}
	if benchWant("flat") && *benchFlat > 0 {
		smp.setPhase("flat")
		rep.Flat = flatPhase(t, ctx, app, sources)
	}
	if benchWant("flood") {
		smp.setPhase("flood:silent")
		rep.Flood = floodPhase(t, ctx, app, sources)
	}
	if benchWant("held") && *benchHeld > 0 {
		smp.setPhase("held")
		rep.Held = heldPhase(t, ctx, app, smp)
	}
	// Last, so that its deployment and its fleet's endpoints change
	// nothing the other phases see.
	if benchWant("firmware") {
		smp.setPhase("firmware")
		rep.Firmware = runFirmware(t, ctx, app, smp, filepath.Join(bin, "flownexus-sim"), out)
	}
	smp.setPhase("end")
	rep.Samples, rep.Peak = smp.stop()
	writeReport(t, out, rep)
}

func benchOptions() map[string]string {
	o := map[string]string{}
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "fnbench.") {
			o[strings.TrimPrefix(f.Name, "fnbench.")] = f.Value.String()
		}
	})
	return o
}

func loopbackSources(n int) []string {
	out := make([]string, max(n, 1))
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", 2+i)
	}
	return out
}

func machineInfo() map[string]string {
	m := map[string]string{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := exec.Command("nproc").Output(); err == nil {
		m["cores"] = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := exec.Command("go", "version").Output(); err == nil {
		m["go"] = strings.TrimSpace(string(b))
	}
	return m
}

const (
	linksPlain   = "</1/0>,</3/0>"
	linksObserve = "</1/0>,</3/0>,</3303/0>"
)

// costPhases measures Update, Send and notification on tg with the cost
// peers, each registered once (the appliance also observes their 3303/0/5700).
func costPhases(t *testing.T, ctx context.Context, tg *benchTarget, sources []string) []phaseResult {
	ps, err := newPeers(*benchPeers, tg.coap, sources, "cost-", linksObserve)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	isLwM2M := tg.name == "flownexus" || tg.name == "gocoap"
	if isLwM2M {
		if n, err := registerAll(ctx, ps, 3600, tg.name == "flownexus"); err != nil || tg.name == "flownexus" && n < len(ps) {
			t.Fatalf("%s: registering the cost peers: %d observed, %v", tg.name, n, err)
		}
	}
	if tg.name == "echo" {
		for _, p := range ps {
			p.obsToken = []byte{1, 2, 3, 4}
		}
	}
	var out []phaseResult
	run := func(phase string, mk func(p *lgPeer) (*coap.Message, bool)) {
		pr := measure(ctx, tg, phase, len(ps), func() *loopResult { return closedLoop(ctx, ps, *benchPhase, mk) })
		t.Logf("%-10s %-14s %8.1f µs/req  %8.0f req/s  p50 %6.0f µs  p99 %6.0f µs  lost %d  tx/req %.3f", tg.name, phase, pr.CPUMicros, pr.PerSec, pr.P50Micros, pr.P99Micros, pr.Lost, pr.TxPerRequest)
		out = append(out, pr)
	}
	run("update", func(p *lgPeer) (*coap.Message, bool) { return p.updateMsg(), false })
	run("send", func(p *lgPeer) (*coap.Message, bool) { return p.sendMsg(21.5), false })
	if tg.name == "flownexus" || tg.name == "echo" {
		run("notification", func(p *lgPeer) (*coap.Message, bool) { return p.notifyMsg(22.5), true })
	}
	return out
}

// registerPhase is the Register flood: the peers re-register their own
// endpoint in closed loops (the appliance then reads 3/0/3 from each).
func registerPhase(t *testing.T, ctx context.Context, tg *benchTarget, sources []string) phaseResult {
	ps, err := newPeers(*benchPeers, tg.coap, sources, "reg-", linksPlain)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	pr := measure(ctx, tg, "register", len(ps), func() *loopResult {
		return closedLoop(ctx, ps, *benchPhase, func(p *lgPeer) (*coap.Message, bool) { return p.registerMsg(3600), false })
	})
	t.Logf("%-10s %-14s %8.1f µs/req  %8.0f req/s  p50 %6.0f µs  p99 %6.0f µs  lost %d  tx/req %.3f", tg.name, "register", pr.CPUMicros, pr.PerSec, pr.P50Micros, pr.P99Micros, pr.Lost, pr.TxPerRequest)
	return pr
}

// fairPhase: 64 closed-loop peers sending Updates; the busiest over the
// least served peer and the first against the last window's latency.
func fairPhase(t *testing.T, ctx context.Context, tg *benchTarget, sources []string) phaseResult {
	ps, err := newPeers(*benchFair, tg.coap, sources, "fair-", linksPlain)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	if _, err := registerAll(ctx, ps, 3600, false); err != nil {
		t.Fatalf("%s: registering the fairness peers: %v", tg.name, err)
	}
	pr := measure(ctx, tg, "fairness-update", len(ps), func() *loopResult {
		return closedLoop(ctx, ps, *benchFairDur, func(p *lgPeer) (*coap.Message, bool) { return p.updateMsg(), false })
	})
	t.Logf("%-10s fairness %.2f×, p50 first %.0f µs last %.0f µs, %.1f µs/req", tg.name, pr.Fairness, pr.FirstP50Micros, pr.LastP50Micros, pr.CPUMicros)
	return pr
}

// runFleet registers the fleet over the loopback source addresses, waits
// for the appliance's observations, then drives confirmable notifications
// open-loop while a web client reads GET /api/v1/devices.
func runFleet(t *testing.T, ctx context.Context, app *benchTarget, sources []string) (*openResult, int, *webResult) {
	ps, err := newPeers(*benchFleet, app.coap, sources, "fleet-", linksObserve)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	observed, err := registerAll(ctx, ps, 3600, true)
	if err != nil {
		t.Fatalf("registering the fleet: %v", err)
	}
	web := &webResult{}
	web.IdleP50, web.IdleP95, _ = webLoad(ctx, app, 20, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { web.LoadP50, web.LoadP95, web.Requests = webLoad(ctx, app, 0, stop) })
	res := openLoop(ctx, app, ps, *benchEvery, *benchFleetDur)
	close(stop)
	wg.Wait()
	t.Logf("fleet: %d devices (%d observed), %d sent, %d acked, %d refused, %d lost, %.1f µs/notification, ack p50 %.0f µs p99 %.0f µs; web p95 %.1f ms idle, %.1f ms while ingesting",
		res.Devices, observed, res.Sent, res.Acked, res.Refused, res.Lost, res.CPUMicros, res.P50Micros, res.P99Micros, web.IdleP95, web.LoadP95)
	t.Logf("fleet: counters moved: %v", res.Counters)
	return &res, observed, web
}

func writeReport(t *testing.T, out string, rep *benchReport) {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "bench.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	md := renderMarkdown(rep)
	if err := os.WriteFile(filepath.Join(out, "bench.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s and %s\n%s", filepath.Join(out, "bench.json"), filepath.Join(out, "bench.md"), md)
}
