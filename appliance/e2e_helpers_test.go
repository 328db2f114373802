package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// testAppliance is a whole FlowNexus started in-process on loopback with a
// temp data dir, as a technician's `flownexus serve` would run, plus an
// admin's API token.
type testAppliance struct {
	t     *testing.T
	a     *Appliance
	cfg   Config
	url   string
	token string
	// client sends the API requests: with https on it trusts the
	// appliance's CA and url is the HTTPS listener's.
	client *http.Client
	stop   func()
	once   sync.Once
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = ListenConfig{HTTP: "127.0.0.1:0", CoAP: "127.0.0.1:0", CoAPS: "127.0.0.1:0",
		Bootstrap: "127.0.0.1:0", BootstrapDTLS: "127.0.0.1:0"}
	cfg.Store.FlushInterval = 50 * time.Millisecond
	return cfg
}

func startAppliance(t *testing.T, cfg Config, opts ...Option) *testAppliance {
	t.Helper()
	if os.Getenv("FLOWNEXUS_TEST_LOG") == "" {
		cfg.Log.Level = "error"
	}
	a, err := New(cfg, append([]Option{WithLogger(testLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("appliance stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("appliance not ready in 30 s")
	}
	ta := &testAppliance{t: t, a: a, cfg: cfg, url: "http://" + a.Addrs().HTTP, client: http.DefaultClient}
	if h := a.Addrs().HTTPS; h != "" {
		ta.url, ta.client = "https://"+h, caClient(t, a)
	}
	ta.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("appliance Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("appliance did not stop in 20 s")
		}
	}
	t.Cleanup(ta.shutdown)
	ta.token = ta.adminToken()
	return ta
}

// startChildAppliance starts the appliance as a child process
// (restartRig) on free loopback ports with a temp data dir that already
// holds an admin's API token, for the tests that stop or kill it and
// start it again; the testAppliance sends API requests to it (it has no
// in-process Appliance).
func startChildAppliance(t *testing.T) (*restartRig, *testAppliance) {
	t.Helper()
	r := &restartRig{t: t, dir: t.TempDir(), http: freeAddr(t, "tcp"), coap: freeAddr(t, "udp"), coaps: freeAddr(t, "udp")}
	ta := &testAppliance{t: t, url: "http://" + r.http, token: prepareAPIToken(t, r.dir), client: http.DefaultClient}
	r.start()
	return r, ta
}

// shutdown stops the appliance (once; the test's cleanup calls it too).
func (ta *testAppliance) shutdown() { ta.once.Do(ta.stop) }

// adminToken creates the first admin the way `flownexus user add` does
// (the store is the appliance's own, already open) and logs in.
func (ta *testAppliance) adminToken() string {
	ta.t.Helper()
	hash, err := webui.HashPassword("correct-horse-battery")
	if err != nil {
		ta.t.Fatal(err)
	}
	if _, err := ta.a.db.CreateUser(context.Background(), "admin", hash, store.RoleAdmin); err != nil {
		ta.t.Fatal(err)
	}
	var out struct{ Token string }
	ta.do("POST", "/api/v1/auth/login", map[string]string{"username": "admin", "password": "correct-horse-battery"}, http.StatusOK, &out)
	if out.Token == "" {
		ta.t.Fatal("login returned no token")
	}
	return out.Token
}

// do sends a JSON request with the admin token and decodes the answer,
// failing the test on an unexpected status.
func (ta *testAppliance) do(method, path string, body any, want int, out any) {
	ta.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ta.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if ta.token != "" {
		req.Header.Set("Authorization", "Bearer "+ta.token)
	}
	resp, err := ta.client.Do(req)
	if err != nil {
		ta.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		ta.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			ta.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// eventually polls cond until it holds; the appliance's state changes
// asynchronously (registration → store), and there is no single event a
// test could wait on for all of them.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a bound against hangs on a loaded machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startDevice runs a simulated device against the appliance's CoAP port and
// returns it once registered.
func (ta *testAppliance) startDevice(ep string, mutate func(*simulation.DeviceConfig)) (*simulation.Device, context.CancelFunc) {
	ta.t.Helper()
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = ep
	dc.Server = "coap://" + ta.a.Addrs().CoAP
	dc.LocalAddr = "127.0.0.1:0"
	dc.CoAP = fastCoAP()
	if mutate != nil {
		mutate(&dc)
	}
	d, err := simulation.NewDevice(dc)
	if err != nil {
		ta.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	stop := func() { cancel(); <-done }
	ta.t.Cleanup(stop)
	select {
	case <-d.Client().Registered():
	case <-done:
		ta.t.Fatalf("device %s stopped before registering", ep)
	case <-time.After(20 * time.Second):
		ta.t.Fatalf("device %s did not register", ep)
	}
	return d, stop
}

func fastCoAP() coap.Config {
	c := coap.DefaultConfig()
	c.ACKTimeout = 200 * time.Millisecond
	return c
}

type apiDevice struct {
	Endpoint        string `json:"endpoint"`
	Online          bool   `json:"online"`
	Status          string `json:"status"`
	LwM2MVersion    string `json:"lwm2mVersion"`
	QueueMode       bool   `json:"queueMode"`
	Security        string `json:"security"`
	Objects         string `json:"objects"`
	Pending         bool   `json:"pending"`
	FirmwareVersion string `json:"firmwareVersion"`
	Model           string `json:"model"`
}

func (ta *testAppliance) devices() []apiDevice {
	var out struct{ Devices []apiDevice }
	ta.do("GET", "/api/v1/devices", nil, http.StatusOK, &out)
	return out.Devices
}

func (ta *testAppliance) device(ep string) (apiDevice, bool) {
	for _, d := range ta.devices() {
		if d.Endpoint == ep {
			return d, true
		}
	}
	return apiDevice{}, false
}

type apiOperation struct {
	ID       int64           `json:"id"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"`
	Result   json.RawMessage `json:"result"`
	Error    string          `json:"error"`
}

// operation queues an operation with ?wait and returns it.
func (ta *testAppliance) operation(ep string, body map[string]any, wait int) apiOperation {
	ta.t.Helper()
	var op apiOperation
	path := "/api/v1/devices/" + ep + "/operations"
	if wait > 0 {
		path += "?wait=" + strconv.Itoa(wait)
		ta.do("POST", path, body, http.StatusOK, &op)
	} else {
		ta.do("POST", path, body, http.StatusAccepted, &op)
	}
	return op
}

// registerFails runs a simulated device that the appliance must refuse and
// returns the error of its first Register.
func (ta *testAppliance) registerFails(ep string) error {
	ta.t.Helper()
	dc := simulation.DefaultDeviceConfig()
	dc.Endpoint = ep
	dc.Server = "coap://" + ta.a.Addrs().CoAP
	dc.LocalAddr = "127.0.0.1:0"
	dc.CoAP = fastCoAP()
	failed := make(chan error, 1)
	d, err := simulation.NewDevice(dc, simulation.WithDeviceEvents(func(e client.Event) {
		switch e.Kind {
		case client.EventRegisterFailed:
			select {
			case failed <- e.Err:
			default:
			}
		case client.EventRegistered:
			select {
			case failed <- nil:
			default:
			}
		}
	}))
	if err != nil {
		ta.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-failed:
		if err == nil {
			ta.t.Fatalf("%s registered; the appliance should have refused it", ep)
		}
		return err
	case <-time.After(20 * time.Second):
		ta.t.Fatalf("%s: no registration outcome in 20 s", ep)
	}
	return nil
}

// testLogger is quiet unless FLOWNEXUS_TEST_LOG is set.
func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("FLOWNEXUS_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// doRaw sends a raw body with the admin token.
func (ta *testAppliance) doRaw(method, path string, body []byte, want int, out any) {
	ta.t.Helper()
	req, _ := http.NewRequest(method, ta.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-pem-file")
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := ta.client.Do(req)
	if err != nil {
		ta.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		ta.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			ta.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}
