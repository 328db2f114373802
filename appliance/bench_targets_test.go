package appliance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// benchTarget is one server under load: the appliance or a peer.
type benchTarget struct {
	name  string
	proc  *benchProc
	coap  string // host:port
	coaps string // host:port, "" without DTLS
	// coapsCert is the CoAPS address for certificate handshakes: the
	// appliance's one listener does both; go-coap gets a second.
	coapsCert string
	// appliance only
	http    string
	token   string
	dataDir string
}

const benchPSK = "bench-psk-0123456789"

// startBenchAppliance runs `flownexus serve` from bin on a fresh data dir with
// an admin user, and logs that user in for a bearer token.
func startBenchAppliance(t *testing.T, ctx context.Context, out, bin string) *benchTarget {
	dir := t.TempDir()
	tg := &benchTarget{name: "flownexus", dataDir: dir,
		coap:  fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp")),
		coaps: fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp")),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))}
	tg.coapsCert = tg.coaps
	cfg := fmt.Sprintf(`data_dir = %q
[listen]
http = %q
coap = %q
coaps = %q
bootstrap = ""
bootstrap_dtls = ""
[lwm2m]
allow_unknown_endpoints = true
# Each closed-loop peer stands for many devices: at over 1,000 requests a
# second it would meet the per-device limit that the protocol-only peers
# do not have.
peer_rate = 0
# The log at the default level, as a site runs it: info, with the
# default bound on the lines devices cause.
[log]
format = "text"
[systemd]
watchdog = false
`, dir, tg.http, tg.coap, tg.coaps)
	cfgPath := filepath.Join(dir, "flownexus.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "bench-admin-password-1"
	add := exec.Command(bin, "user", "add", "admin", "--role", "admin", "--config", cfgPath)
	add.Stdin = strings.NewReader(password + "\n")
	if b, err := add.CombinedOutput(); err != nil {
		t.Fatalf("flownexus user add: %v: %s", err, b)
	}
	tg.proc = startProc(t, out, "flownexus", 0, nil, bin, "serve", "--config", cfgPath)
	if !waitFor(ctx, 60*time.Second, func() bool {
		r, err := http.Get("http://" + tg.http + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200 && coapPing(tg.coap)
	}) {
		t.Fatalf("appliance did not come up; see %s", tg.proc.log)
	}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": password})
	r, err := http.Post("http://"+tg.http+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var lr struct{ Token string }
	if err := json.NewDecoder(r.Body).Decode(&lr); err != nil || lr.Token == "" {
		t.Fatalf("login: %d %v", r.StatusCode, err)
	}
	tg.token = lr.Token
	return tg
}

// startRole runs the test binary itself as a peer process (TestBenchRole).
func startRole(t *testing.T, ctx context.Context, out, role string, dtls bool) *benchTarget {
	tg := &benchTarget{name: role, coap: fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))}
	env := []string{roleEnv + "=" + role, roleAddr + "=" + tg.coap, rolePSK + "=" + benchPSK}
	if dtls {
		tg.coaps = fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
		tg.coapsCert = fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
		env = append(env, roleDTLS+"="+tg.coaps, roleDTLSCert+"="+tg.coapsCert)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tg.proc = startProc(t, out, role, 0, env, exe, "-test.run=^TestBenchRole$", "-test.timeout=0")
	if !waitFor(ctx, 30*time.Second, func() bool { return coapPing(tg.coap) }) {
		t.Fatalf("%s did not come up; see %s", role, tg.proc.log)
	}
	return tg
}

// startLibcoap runs libcoap's example server (Debian libcoap3-bin) without
// DTLS: it answers the same requests with its own codes (4.04 for /rd) —
// a C CoAP stack's cost of parsing and answering.
func startLibcoap(t *testing.T, ctx context.Context, out string) *benchTarget {
	bin, err := exec.LookPath("coap-server-notls")
	if err != nil {
		t.Logf("libcoap's coap-server-notls is not installed (Debian libcoap3-bin): its column stays empty")
		return nil
	}
	port := freePort(t, "udp")
	tg := &benchTarget{name: "libcoap", coap: fmt.Sprintf("127.0.0.1:%d", port)}
	tg.proc = startProc(t, out, "libcoap", 0, nil, bin, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-v", "0")
	if !waitFor(ctx, 30*time.Second, func() bool { return coapPing(tg.coap) }) {
		t.Fatalf("coap-server-notls did not come up; see %s", tg.proc.log)
	}
	return tg
}

// coapPing sends a CoAP ping (empty CON) and waits for the RST (RFC 7252
// §4.3); the echo floor answers with the ping turned into an ACK.
func coapPing(addr string) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	b, _ := (&coap.Message{Type: coap.Confirmable, MessageID: 0x4242}).Marshal()
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write(b); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return err == nil && n >= 4
}

// metrics scrapes the appliance's /metrics into name → value.
func (tg *benchTarget) metrics() map[string]float64 {
	out := map[string]float64{}
	req, _ := http.NewRequest("GET", "http://"+tg.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tg.token)
	c := http.Client{Timeout: 10 * time.Second}
	r, err := c.Do(req)
	if err != nil {
		return out
	}
	defer r.Body.Close()
	s := bufio.NewScanner(r.Body)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); ok && err == nil {
			out[name] = f
		}
	}
	return out
}

// storeTx is the appliance's count of write transactions; 0 for the
// peers, which have no /metrics.
func (tg *benchTarget) storeTx() float64 {
	if tg.name != "flownexus" {
		return 0
	}
	return tg.metrics()["flownexus_ingest_transactions_total"]
}

// api sends one authenticated REST request and returns the status.
func (tg *benchTarget) api(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+tg.http+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tg.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 30 * time.Second}
	r, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, b, nil
}

// drain waits until the ingestion queue has committed what it accepted, so
// that a phase's CPU includes writing what it sent.
func (tg *benchTarget) drain(ctx context.Context) {
	if tg.http == "" {
		return
	}
	waitFor(ctx, 30*time.Second, func() bool {
		m := tg.metrics()
		return m["flownexus_ingest_queue_length"] == 0 &&
			m["flownexus_ingest_readings_committed_total"] >= m["flownexus_ingest_readings_accepted_total"]
	})
}

// files are the database and WAL sizes of the appliance.
func (tg *benchTarget) files() (db, wal int64) {
	p := filepath.Join(tg.dataDir, databaseFile)
	return fileSize(p), fileSize(p + "-wal")
}
