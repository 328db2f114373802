package appliance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
)

const restartChildEnv = "FLOWNEXUS_RESTART_CHILD"

// TestRestartChild is the appliance process of
// TestRestartIsInvisibleToDevices; it does nothing unless started by it.
// It prints READY once every listener is bound and stops on SIGTERM.
func TestRestartChild(t *testing.T) {
	dir := os.Getenv(restartChildEnv)
	if dir == "" {
		t.Skip("helper process for TestRestartIsInvisibleToDevices")
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = ListenConfig{HTTP: os.Getenv(restartChildEnv + "_HTTP"), CoAP: os.Getenv(restartChildEnv + "_COAP"),
		CoAPS: os.Getenv(restartChildEnv + "_COAPS")}
	cfg.Store.FlushInterval = 50 * time.Millisecond
	cfg.Log.Level = "error"
	a, err := New(cfg, WithLogger(testLogger()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
		fmt.Println("READY")
	case err := <-done:
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(2)
	}
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// restartRig runs the appliance as a child process on fixed loopback
// ports and one data dir, so it can be stopped gracefully or killed and
// started again where the devices expect it.
type restartRig struct {
	t                      *testing.T
	dir, http, coap, coaps string
	cmd                    *exec.Cmd
	exited                 chan error
	stderr                 *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the appliance and returns once it printed READY.
func (r *restartRig) start() {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestartChild$", "-test.v=false", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), restartChildEnv+"="+r.dir, restartChildEnv+"_HTTP="+r.http,
		restartChildEnv+"_COAP="+r.coap, restartChildEnv+"_COAPS="+r.coaps)
	pr, pw, err := os.Pipe()
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout = pw
	r.stderr = &lockedBuffer{}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	pw.Close()
	r.cmd = cmd
	r.exited = make(chan error, 1)
	go func() { r.exited <- cmd.Wait() }()
	ready := make(chan struct{})
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if sc.Text() == "READY" {
				close(ready)
			}
		}
	}()
	r.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	select {
	case <-ready:
	case err := <-r.exited:
		r.t.Fatalf("appliance exited before ready: %v\n%s", err, r.stderr)
	case <-time.After(60 * time.Second):
		r.t.Fatalf("appliance not ready in 60 s\n%s", r.stderr)
	}
}

// stop sends SIGTERM (what systemd does) and waits for a clean exit.
func (r *restartRig) stop() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		if err != nil {
			r.t.Fatalf("graceful stop: %v\n%s", err, r.stderr)
		}
	case <-time.After(30 * time.Second):
		r.t.Fatalf("appliance did not stop in 30 s\n%s", r.stderr)
	}
}

// kill is kill -9: no shutdown code runs.
func (r *restartRig) kill() {
	r.t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		r.t.Fatal(err)
	}
	<-r.exited
}

// metric reads one counter or gauge from /metrics.
func (r *restartRig) metric(name string) float64 {
	r.t.Helper()
	resp, err := http.Get("http://" + r.http + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				r.t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	r.t.Fatalf("no metric %s in:\n%s", name, b)
	return 0
}

// restartDevice is a simulated device with counters of what it saw.
type restartDevice struct {
	name, mode string
	d          *simulation.Device
	registered atomic.Int64 // accepted Registers
	notified   atomic.Int64 // CON notifications acknowledged
	refused    atomic.Int64 // notifications refused (RST, 5.03) or unanswered
	failed     atomic.Int64 // failed Registers and Updates
	mu         sync.Mutex
	errs       []string
}

func (rd *restartDevice) onEvent(e client.Event) {
	switch e.Kind {
	case client.EventRegistered:
		rd.registered.Add(1)
	case client.EventNotified:
		if e.Err != nil {
			rd.mu.Lock()
			rd.errs = append(rd.errs, e.Err.Error())
			rd.mu.Unlock()
			rd.refused.Add(1)
		} else {
			rd.notified.Add(1)
		}
	case client.EventRegisterFailed, client.EventUpdateFailed:
		rd.failed.Add(1)
	}
}

// TestRestartIsInvisibleToDevices: a fleet of plain-CoAP, PSK (DTLS) and
// queue-mode devices registers; the appliance is stopped gracefully and
// started again, then killed with SIGKILL and started again. After each
// start: no device registered again (counted on the devices and by the
// appliance), none is shown offline, every device's next notification
// on its observation from before the restart is acknowledged and stored,
// and an operation queued for a sleeping queue-mode device goes out at its
// next uplink.
//
// DTLS devices keep their sessions too: no handshake after either start
// (the session file after the graceful stop, the crash journal after the
// kill, lwm2m/dtls journal.go).
func TestRestartIsInvisibleToDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: starts the appliance three times")
	}
	r, ta := startChildAppliance(t)

	var fleet []*restartDevice
	add := func(name, mode string) {
		rd := &restartDevice{name: name, mode: mode}
		dc := simulation.DefaultDeviceConfig()
		dc.Endpoint, dc.LocalAddr, dc.CoAP = name, "127.0.0.1:0", fastCoAP()
		dc.Lifetime = time.Hour // no Update of its own during the test
		dc.ConfirmableNotify = true
		dc.Seed = uint64(len(fleet) + 1)
		dc.Server = "coap://" + r.coap
		opts := []simulation.DeviceOption{simulation.WithDeviceEvents(rd.onEvent)}
		switch mode {
		case "queue":
			dc.QueueMode = true
		case "psk":
			var cred struct {
				Security struct{ PSKIdentity, PSKKey string }
			}
			ta.do("POST", "/api/v1/devices", map[string]any{"endpoint": name, "security": map[string]string{"mode": "psk"}}, http.StatusCreated, &cred)
			key, err := hex.DecodeString(cred.Security.PSKKey)
			if err != nil {
				t.Fatal(err)
			}
			dc.Server = "coaps://" + r.coaps
			opts = append(opts, simulation.WithDeviceDial(func(ctx context.Context, _, _ string) (coap.Transport, coap.Peer, error) {
				c, err := dtls.Dial(ctx, r.coaps, dtls.ClientConfig{PSKIdentity: cred.Security.PSKIdentity, PSK: key})
				if err != nil {
					return nil, coap.Peer{}, err
				}
				return c, c.Peer(), nil
			}))
		}
		rd.d = runDevice(t, dc, opts...)
		fleet = append(fleet, rd)
	}
	for i := range 3 {
		add(fmt.Sprintf("plain-%d", i), "plain")
	}
	for i := range 2 {
		add(fmt.Sprintf("psk-%d", i), "psk")
		add(fmt.Sprintf("queue-%d", i), "queue")
	}
	// Every device holds the appliance's auto-observations, and the
	// appliance holds (and saved) as many.
	eventually(t, "auto-observations established", func() bool {
		n := 0
		for _, rd := range fleet {
			k := len(rd.d.Client().Observations())
			if k == 0 {
				return false
			}
			n += k
		}
		return r.metric("flownexus_observations_current") == float64(n)
	})
	for _, rd := range fleet {
		notifyAndCheck(t, r, ta, rd)
	}

	checkRestart := func(phase string) {
		t.Helper()
		// Shown online the moment the appliance is up: nothing had to
		// reach it first.
		for _, rd := range fleet {
			if d, ok := ta.device(rd.name); !ok || !d.Online {
				t.Errorf("%s: %s shown offline right after the start: %+v", phase, rd.name, d)
			}
		}
		// A read queued for a sleeping queue-mode device waits for its
		// next uplink, then goes out.
		op := ta.operation("queue-0", map[string]any{"type": "read", "path": "/3/0/0"}, 0)
		if op.Status != "queued" {
			t.Errorf("%s: read for a sleeping device is %q, want queued", phase, op.Status)
		}
		for _, rd := range fleet {
			notifyAndCheck(t, r, ta, rd)
		}
		eventually(t, phase+": queued read confirmed after the device's uplink", func() bool {
			var got apiOperation
			ta.do("GET", "/api/v1/operations/"+strconv.FormatInt(op.ID, 10), nil, http.StatusOK, &got)
			return got.Status == "confirmed"
		})
		if n := r.metric("flownexus_registrations_total"); n != 0 {
			t.Errorf("%s: the appliance accepted %v Registers after the restart", phase, n)
		}
		if n := r.metric("flownexus_dtls_handshakes_total"); n != 0 {
			t.Errorf("%s: %v DTLS handshakes after the restart", phase, n)
		}
		for _, rd := range fleet {
			if n := rd.registered.Load(); n != 1 || rd.d.Client().Stats().Registers != 1 {
				t.Errorf("%s: %s registered %d times (sent %d Registers)", phase, rd.name, n, rd.d.Client().Stats().Registers)
			}
			if n := rd.refused.Load(); n != 0 {
				t.Errorf("%s: %s had %d notifications refused or unanswered", phase, rd.name, n)
			}
			if n := rd.failed.Load(); n != 0 {
				t.Errorf("%s: %s had %d failed Registers or Updates", phase, rd.name, n)
			}
		}
	}

	r.stop()
	r.start()
	checkRestart("graceful restart")

	// The kill comes once both DTLS sessions are on disk: the journal
	// was started from the two restored sessions.
	eventually(t, "DTLS sessions journalled", func() bool {
		return r.metric("flownexus_dtls_sessions_current") == 2 && r.metric("flownexus_dtls_sessions_journaled_total") >= 2
	})
	r.kill()
	r.start()
	checkRestart("after kill -9")
	if t.Failed() {
		t.Logf("appliance stderr:\n%s", r.stderr)
	}
}

// notifyAndCheck changes the device's temperature until a notification
// goes out, and waits for the appliance to acknowledge and store it.
func notifyAndCheck(t *testing.T, r *restartRig, ta *testAppliance, rd *restartDevice) {
	t.Helper()
	before := rd.notified.Load()
	old := rd.d.Temperature()
	for rd.d.Temperature() == old {
		rd.d.Step(time.Now())
	}
	want := rd.d.Temperature()
	eventually(t, rd.name+": notification acknowledged", func() bool { return rd.notified.Load() > before || rd.refused.Load() > 0 })
	if rd.refused.Load() > 0 {
		rd.mu.Lock()
		defer rd.mu.Unlock()
		resp, _ := http.Get("http://" + r.http + "/metrics")
		b, _ := io.ReadAll(resp.Body)
		var m []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "refus") || strings.Contains(l, "overload") || strings.Contains(l, "drop") {
				m = append(m, l)
			}
		}
		t.Fatalf("%s: notification refused: %v\n%s\n%s", rd.name, rd.errs, strings.Join(m, "\n"), r.stderr)
	}
	eventually(t, rd.name+": notified value stored", func() bool {
		var pts struct {
			Points []struct {
				T string
				V float64
			}
		}
		ta.do("GET", "/api/v1/devices/"+rd.name+"/telemetry?path=3303/0/5700", nil, http.StatusOK, &pts)
		for _, p := range pts.Points {
			if math.Abs(p.V-want) < 1e-9 {
				return true
			}
		}
		return false
	})
}

// prepareAPIToken creates the data dir's database with an admin and an
// API token before the first start, as `flownexus user add` and
// `flownexus token` would.
func prepareAPIToken(t *testing.T, dir string) string {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(dir, "flownexus.db")
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.CreateUser(context.Background(), "admin", "$argon2id$unused", store.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := db.CreateAPIToken(context.Background(), u.ID, "restart-test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// startStoppable starts the appliance in-process and returns a function
// that stops it gracefully and waits (also run at cleanup).
func startStoppable(t *testing.T, cfg Config) (*Appliance, func()) {
	t.Helper()
	a, err := New(cfg, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("appliance Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("appliance did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("appliance stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("appliance not ready")
	}
	return a, stop
}
