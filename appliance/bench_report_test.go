package appliance

import (
	"fmt"
	"sort"
	"strings"
)

var benchColumns = []struct{ target, title string }{
	{"flownexus", "FlowNexus appliance"},
	{"gocoap", "go-coap v3 server"},
	{"libcoap", "libcoap coap-server"},
	{"echo", "raw UDP echo (floor)"},
}

// renderMarkdown turns the report into bench.md: every figure of the
// appliance beside the protocol-only peers and the floor.
func renderMarkdown(r *benchReport) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# FlowNexus whole-appliance benchmark\n\nStarted %s.\n\n", r.Started)
	keys := make([]string, 0, len(r.Machine))
	for k := range r.Machine {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w("- %s: %s\n", k, r.Machine[k])
	}
	w("\nOptions: ")
	okeys := make([]string, 0, len(r.Options))
	for k := range r.Options {
		okeys = append(okeys, k)
	}
	sort.Strings(okeys)
	for _, k := range okeys {
		w("`%s=%s` ", k, r.Options[k])
	}
	w("\n")
	if len(r.Phases) > 0 {
		renderClosedLoops(w, r)
	}
	if f := r.Fleet; f != nil {
		w("\n## Confirmable notifications, open loop (appliance)\n\n")
		w("%d devices over %s loopback source addresses (%d observed by the appliance), one CON notification every %.1f s each for %.0f s.\n\n", f.Devices, r.Options["sources"], r.Observed, f.EverySeconds, f.Seconds)
		w("| sent | acked | refused | lost | acked/s | server CPU per stored notification (net of idle %.1f ms/s) | ACK p50 | ACK p99 | p50 first / last window | appliance refused (notifications / ingest batches / CoAP queue full, left unacknowledged) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n", f.IdleCPUPerSec)
		w("| %d | %d | %d | %d | %.0f | %.1f µs (%.1f µs) | %.0f µs | %.0f µs | %.0f / %.0f µs | %.0f / %.0f / %.0f |\n", f.Sent, f.Acked, f.Refused, f.Lost, f.PerSec, f.CPUMicros, f.NetCPUMicros, f.P50Micros, f.P99Micros, f.FirstP50, f.LastP50, f.Dropped, f.IngestRefuse, f.Counters["flownexus_coap_overloaded_total"])
	}
	if x := r.WebAPI; x != nil {
		w("\n## Web API: GET /api/v1/devices (bearer token)\n\n| | p50 | p95 |\n| --- | --- | --- |\n| idle | %.2f ms | %.2f ms |\n| while the fleet ingests (%d requests) | %.2f ms | %.2f ms |\n", x.IdleP50, x.IdleP95, x.Requests, x.LoadP50, x.LoadP95)
	}
	if len(r.Sim) > 0 {
		w("\n## Devices held (flownexus-sim, values changing every second)\n\n| transport | devices | registered | RSS before → held | per device | goroutines before → held | per device | notifications in window | server CPU per notification | CON ACK p50 / p99 (simulator) | seconds to register all |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	}
	for _, s := range r.Sim {
		w("| %s | %d | %d | %s → %s | %.1f KiB | %d → %d | %.2f | %.0f in %.0f s | %.1f µs | %.0f / %.0f µs (%d) | %.1f |\n", s.Transport, s.Devices, s.Registered, mib(s.RSSBefore), mib(s.RSSHeld), s.RSSPerDevice/1024, s.GoroutinesBefore, s.GoroutinesHeld, s.GoroutinesPerDev, s.Notifications, s.WindowSeconds, s.CPUMicros, s.AckP50Micros, s.AckP99Micros, s.Acks, s.RegisterSeconds)
	}
	if h := r.Held; h != nil {
		w("\n## Sleeping DTLS devices held (PSK, queue mode, %d handshake+Register loops)\n\n", *benchHeldConc)
		w("| devices | registered / failed | provisioning | fill | server CPU per handshake+Register | RSS before → peak → held | per device | goroutines before → held | DTLS sessions (live) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		per := float64(h.RSSHeld-h.RSSBefore) / float64(max(h.Registered, 1)) / 1024
		w("| %d | %d / %d | %.0f s | %.0f s | %.0f µs | %s → %s → %s | %.1f KiB | %d → %d | %d (%d) |\n", h.Devices, h.Registered, h.Failed, h.ProvisionSeconds, h.FillSeconds, h.CPUMicros,
			mib(h.RSSBefore), mib(h.RSSPeak), mib(h.RSSHeld), per, h.GoroutinesBefore, h.GoroutinesHeld, h.Sessions, h.Live)
		if h.Note != "" {
			w("\n%s\n", h.Note)
		}
	}
	if len(r.Flat) > 0 {
		renderFlat(w, r.Flat)
	}
	if f := r.Flood; f != nil {
		w("\n## Register flood from devices that never answer (%d peers, %.0f s)\n\n", f.Peers, f.Seconds)
		w("| Registers answered | server CPU per Register | goroutines before → peak → 10 s after | RSS before → peak → 10 s after |\n| --- | --- | --- | --- |\n")
		w("| %d | %.1f µs | %d → %d → %d | %s → %s → %s |\n", f.Registers, f.CPUMicros, f.GoroutinesBefore, f.GoroutinesPeak, f.GoroutinesAfter, mib(f.RSSBefore), mib(f.RSSPeak), mib(f.RSSAfter))
	}
	if f := r.Firmware; f != nil {
		renderFirmware(w, f)
	}
	w("\n## The appliance over the run (sampled every second; every %dth sample shown)\n\n", sampleStride(len(r.Samples)))
	w("| t | phase | RSS | goroutines | registered | DB | WAL | CPU s |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	stride := sampleStride(len(r.Samples))
	for i, s := range r.Samples {
		if i%stride == 0 || i == len(r.Samples)-1 {
			w("| %.0f s | %s | %s | %d | %d | %s | %s | %.1f |\n", s.T, s.Phase, mib(s.RSS), s.Goroutines, s.Registered, mib(s.DB), mib(s.WAL), s.CPU)
		}
	}
	p := r.Peak
	w("| peak | | %s | %d | %d | %s | %s | |\n", mib(p.RSS), p.Goroutines, p.Registered, mib(p.DB), mib(p.WAL))
	return b.String()
}

func titles() string {
	var s []string
	for _, c := range benchColumns {
		s = append(s, c.title)
	}
	return strings.Join(s, " | ")
}

func (r *benchReport) find(target, phase string) *phaseResult {
	for i := range r.Phases {
		if r.Phases[i].Target == target && r.Phases[i].Phase == phase {
			return &r.Phases[i]
		}
	}
	return nil
}

func fairStr(f float64) string {
	if f < 0 {
		return "∞ (a peer got nothing)"
	}
	return fmt.Sprintf("%.2f×", f)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sampleStride(n int) int { return max(1, n/40) }

// renderFirmware is the firmware phase's table.
func renderFirmware(w func(string, ...any), f *fwResult) {
	w("\n## Firmware download (CoAP, %d-byte blocks)\n\n", f.BlockSize)
	w("One %d-byte image deployed at once (maxConcurrent %d) to %d flownexus-sim devices (%d registered in %.1f s) pulling over plain CoAP; server CPU net of idle (%.1f ms/s with the fleet registered).\n\n", f.ImageBytes, f.Devices, f.Devices, f.Registered, f.RegisterSeconds, f.IdleCPUPerSec)
	w("| blocks served | download window | blocks/s | MiB/s | server CPU per block (net of idle) | deployment done in | server CPU per device (whole update) | succeeded / failed / unfinished | CoAP 5.03 / rate-limited | RSS before → peak | goroutines before → peak |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	w("| %.0f | %.1f s | %.0f | %.1f | %.1f µs (%.1f µs) | %.1f s | %.2f ms | %d / %d / %d | %.0f / %.0f | %s → %s | %d → %d |\n",
		f.Blocks, f.DownloadSeconds, f.BlocksPerSec, f.MiBPerSec, f.CPUMicros, f.NetCPUMicros, f.TotalSeconds, f.CPUMillisPerDev,
		f.Succeeded, f.Failed, f.Unfinished, f.Overloaded, f.RateLimited, mib(f.RSSBefore), mib(f.RSSPeak), f.GoroutinesBefore, f.GoroutinesPeak)
	if f.Failures != "" {
		w("\nFailures: %s\n", f.Failures)
	}
}

// renderClosedLoops is the closed-loop tables: CPU, latency, fairness.
func renderClosedLoops(w func(string, ...any), r *benchReport) {
	w("\n## Server CPU per request (closed loop; µs, and requests/s completed)\n\n")
	w("| phase | %s | appliance ÷ floor | appliance commits per request |\n| --- |%s --- | --- |\n", titles(), strings.Repeat(" --- |", len(benchColumns)))
	for _, ph := range []string{"register", "update", "send", "notification", "psk-handshake+register", "cert-handshake+register", "fairness-update"} {
		row := ""
		for _, c := range benchColumns {
			if pr := r.find(c.target, ph); pr != nil && pr.Completed > 0 {
				row += fmt.Sprintf(" %.1f µs (%.0f/s) |", pr.CPUMicros, pr.PerSec)
			} else {
				row += " — |"
			}
		}
		ratio := "—"
		if a, f := r.find("flownexus", ph), r.find("echo", ph); a != nil && f != nil && f.CPUMicros > 0 && a.Completed > 0 {
			ratio = fmt.Sprintf("%.1f×", a.CPUMicros/f.CPUMicros)
		}
		commits := "—"
		if a := r.find("flownexus", ph); a != nil && a.TxPerRequest > 0 {
			commits = fmt.Sprintf("%.3f", a.TxPerRequest)
		}
		w("| %s |%s %s | %s |\n", ph, row, ratio, commits)
	}
	w("\n## Latency of the closed loops (p50 / p99, µs) and lost requests\n\n")
	w("| phase | %s |\n| --- |%s\n", titles(), strings.Repeat(" --- |", len(benchColumns)))
	for _, ph := range []string{"register", "update", "send", "notification", "psk-handshake+register", "cert-handshake+register"} {
		row := ""
		for _, c := range benchColumns {
			if pr := r.find(c.target, ph); pr != nil && pr.Completed > 0 {
				row += fmt.Sprintf(" %.0f / %.0f, %d lost |", pr.P50Micros, pr.P99Micros, pr.Lost)
			} else {
				row += " — |"
			}
		}
		w("| %s |%s\n", ph, row)
	}
	w("\n## Fairness and latency drift (Update, closed loop)\n\n| server | peers | seconds | busiest ÷ least served | p50 first window | p50 last window | µs/request | lost |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range benchColumns {
		if pr := r.find(c.target, "fairness-update"); pr != nil {
			w("| %s | %d | %.0f | %s | %.0f µs | %.0f µs | %.1f | %d |\n", c.title, pr.Peers, pr.Seconds, fairStr(pr.Fairness), pr.FirstP50Micros, pr.LastP50Micros, pr.CPUMicros, pr.Lost)
		}
	}
	for _, pr := range r.Phases {
		if pr.Note != "" {
			w("\nNote (%s, %s): %s\n", pr.Target, pr.Phase, pr.Note)
		}
	}
}
