package webui

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// env is a web UI over a real store on a temp file, with in-test versions
// of what the appliance provides (dispatcher, PKI, enrollment rendering,
// system functions).
type env struct {
	t      testing.TB
	db     *store.DB
	srv    *Server
	broker *Broker
	ops    *testOps
	sys    *testSystem
	h      http.Handler
	clock  *testClock
}

type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func newEnv(t testing.TB, mods ...func(*Config, *Deps)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "flownexus.db")
	cfg.FlushInterval = 20 * time.Millisecond
	e := &env{t: t, clock: &testClock{}}
	db, err := store.Open(ctx, cfg, store.WithClock(e.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := db.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("store Run: %v", err)
		}
	}()
	b := NewBroker()
	followed := make(chan struct{})
	go func() { defer close(followed); b.FollowStore(ctx, db) }()
	waitFollowing(t, b)
	e.db, e.broker = db, b
	e.ops = &testOps{db: db, broker: b, auto: true, waiters: map[int64][]chan struct{}{}}
	e.sys = &testSystem{db: db, started: time.Now()}
	deps := Deps{
		Store: db, Data: NewStoreData(db), Registry: lwm2m.NewRegistry(),
		Operations: e.ops, Provisioner: &testProvisioner{db: db}, Enrollment: testEnrollment{},
		Events: b, System: e.sys,
		Settings: NewStoreSettings(db, Settings{RetentionDays: 30, AutoObserve: []string{"3303/0/5700"}, QueueWindowSeconds: 60, AllowUnknownDevices: true}),
	}
	c := DefaultConfig()
	for _, m := range mods {
		m(&c, &deps)
	}
	s, err := New(c, deps, WithVersion("test"), WithClock(e.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.h = s, s.Handler()
	t.Cleanup(func() {
		cancel()
		<-done
		<-followed
		db.Close()
	})
	return e
}

// addDevice registers an endpoint the way the appliance does on a
// Register: upsert, then the registration event through ingestion.
func (e *env) addDevice(name string, online bool) store.Endpoint {
	e.t.Helper()
	ctx := context.Background()
	now := time.Now()
	ep, err := e.db.UpsertEndpoint(ctx, store.Endpoint{Name: name, Online: online, LastSeen: now, Lifetime: 300, Binding: "U",
		LwM2MVersion: "1.1", SecurityMode: "psk", ObjectLinks: "</1/0>,</3/0>,</3303/0>", RegisteredAt: now, FirmwareVersion: "1.0.0"})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.RecordRegistration(ctx, name, store.RegRegistered, now, "lt=300"); err != nil {
		e.t.Fatal(err)
	}
	return ep
}

// ingest stores values for a device and waits until they are committed.
func (e *env) ingest(name string, at time.Time, kv ...any) {
	e.t.Helper()
	var recs []lwm2m.Record
	for i := 0; i < len(kv); i += 2 {
		recs = append(recs, lwm2m.Record{Path: lwm2m.MustParsePath(kv[i].(string)), Value: kv[i+1].(lwm2m.Value), Time: at})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.db.IngestWait(ctx, store.Batch{Endpoint: name, Received: at, Records: recs}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// user creates an account directly in the store.
func (e *env) user(name string, role Role, pw string) {
	e.t.Helper()
	h, err := HashPassword(pw)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.CreateUser(context.Background(), name, h, string(role)); err != nil {
		e.t.Fatal(err)
	}
}

// client is an API client: a bearer token, or a cookie jar plus CSRF.
type client struct {
	e      *env
	token  string
	cookie *http.Cookie
	csrf   string
	ip     string
}

// login logs in through the API and returns a bearer client.
func (e *env) login(name, pw string) *client {
	e.t.Helper()
	c := &client{e: e}
	res, body := c.do("POST", "/api/v1/auth/login", map[string]string{"username": name, "password": pw})
	if res.StatusCode != 200 {
		e.t.Fatalf("login %s: %d %s", name, res.StatusCode, body)
	}
	var j struct{ Token, CSRF string }
	json.Unmarshal(body, &j)
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie {
			c.cookie = ck
		}
	}
	c.token, c.csrf = j.Token, j.CSRF
	return c
}

// cookieClient is the same session used the way a browser does.
func (c *client) cookieClient() *client {
	return &client{e: c.e, cookie: c.cookie, csrf: c.csrf}
}

func (c *client) req(method, path string, body any) *http.Request {
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		r, ct = strings.NewReader(b), "application/json"
	case []byte:
		r, ct = bytes.NewReader(b), "application/json"
	default:
		j, _ := json.Marshal(b)
		r, ct = bytes.NewReader(j), "application/json"
	}
	req := httptest.NewRequest(method, path, r)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	if c.ip != "" {
		req.RemoteAddr = c.ip + ":1234"
	}
	return req
}

func (c *client) send(req *http.Request) (*http.Response, []byte) {
	w := httptest.NewRecorder()
	c.e.h.ServeHTTP(w, req)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func (c *client) do(method, path string, body any) (*http.Response, []byte) {
	return c.send(c.req(method, path, body))
}

// want checks a status code and returns the decoded JSON body.
func (c *client) want(code int, method, path string, body any) map[string]any {
	c.e.t.Helper()
	res, b := c.do(method, path, body)
	if res.StatusCode != code {
		c.e.t.Fatalf("%s %s: got %d, want %d: %s", method, path, res.StatusCode, code, b)
	}
	var m map[string]any
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			c.e.t.Fatalf("%s %s: bad JSON %q: %v", method, path, b, err)
		}
		if code >= 400 {
			if msg, _ := m["error"].(string); msg == "" {
				c.e.t.Fatalf("%s %s: error body without message: %s", method, path, b)
			}
		}
	}
	return m
}

// testOps is the dispatcher as the appliance would run it, over store's
// persisted queue, with a simulated device answering when auto is set.
type testOps struct {
	db      *store.DB
	broker  *Broker
	auto    bool
	values  sync.Map // path → lwm2m.Value the simulated device holds
	mu      sync.Mutex
	waiters map[int64][]chan struct{}
	queued  []OperationRequest
}

func (o *testOps) Queue(ctx context.Context, ep string, req OperationRequest) (store.Operation, error) {
	payload := map[string]any{}
	if req.Value != nil {
		payload["value"] = *req.Value
	}
	if req.Args != "" {
		payload["args"] = req.Args
	}
	if req.Attributes != nil {
		payload["attributes"] = req.Attributes
	}
	pj, _ := json.Marshal(payload)
	f := ""
	if req.Format != lwm2m.FormatNone {
		f = req.Format.String()
	}
	op, err := o.db.CreateOperation(ctx, store.Operation{Endpoint: ep, Type: req.Type, Paths: pathStrings(req.Paths), Payload: pj, Format: f})
	if err != nil {
		return op, err
	}
	o.mu.Lock()
	o.queued = append(o.queued, req)
	o.mu.Unlock()
	o.publish(op)
	if o.auto {
		go o.device(op, req)
	}
	return op, nil
}

func (o *testOps) publish(op store.Operation) {
	o.broker.Publish(LiveEvent{Kind: "operation", Endpoint: op.Endpoint, Time: time.Now(), OperationID: op.ID, Status: op.Status})
}

// device plays the device's side: a read answers from values (and the
// answer is stored as telemetry, as the appliance does); a write stores.
func (o *testOps) device(op store.Operation, req OperationRequest) {
	ctx := context.Background()
	op, err := o.db.ClaimOperation(ctx, op.ID)
	if err != nil {
		return
	}
	o.publish(op)
	var result json.RawMessage
	var failed string
	switch req.Type {
	case "read":
		vals := map[string]lwm2m.Value{}
		var recs []lwm2m.Record
		o.values.Range(func(k, v any) bool {
			p := lwm2m.MustParsePath(k.(string))
			if req.Paths[0].Contains(p) {
				vals[p.Relative()] = v.(lwm2m.Value)
				recs = append(recs, lwm2m.Record{Path: p, Value: v.(lwm2m.Value), Time: time.Now()})
			}
			return true
		})
		if len(vals) == 0 {
			failed = "4.04 Not Found"
			break
		}
		result, _ = json.Marshal(map[string]any{"values": vals})
		o.db.IngestWait(ctx, store.Batch{Endpoint: op.Endpoint, Received: time.Now(), Records: recs})
	case "write":
		o.values.Store(req.Paths[0].Relative(), *req.Value)
	case "discover":
		result, _ = json.Marshal(map[string]string{"links": "</3/0/0>,</3/0/1>"})
	}
	if failed != "" {
		op, err = o.db.FailOperation(ctx, op.ID, failed)
	} else {
		op, err = o.db.ConfirmOperation(ctx, op.ID, result)
	}
	if err != nil {
		return
	}
	o.publish(op)
	o.mu.Lock()
	ws := o.waiters[op.ID]
	delete(o.waiters, op.ID)
	o.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

func (o *testOps) Operation(ctx context.Context, id int64) (store.Operation, error) {
	return o.db.Operation(ctx, id)
}

func (o *testOps) Wait(ctx context.Context, id int64) (store.Operation, error) {
	ch := make(chan struct{})
	o.mu.Lock()
	o.waiters[id] = append(o.waiters[id], ch)
	o.mu.Unlock()
	op, err := o.db.Operation(ctx, id)
	if err != nil || opDone(op) {
		return op, err
	}
	select {
	case <-ch:
		return o.db.Operation(ctx, id)
	case <-ctx.Done():
		return op, ctx.Err()
	}
}

func (o *testOps) List(ctx context.Context, ep string, limit int) ([]store.Operation, error) {
	return o.db.Operations(ctx, store.OperationQuery{Endpoint: ep, Limit: limit})
}

// testProvisioner stores the credential as the appliance's PKI would,
// with a real self-signed certificate for x509.
type testProvisioner struct{ db *store.DB }

func (p *testProvisioner) Provision(ctx context.Context, req ProvisionRequest) (Credentials, error) {
	c, sc, err := p.build(req)
	if err != nil {
		return c, err
	}
	if _, err := p.db.ProvisionEndpoint(ctx, sc); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// Rekey replaces an existing device's credential (webui.Rekeyer).
func (p *testProvisioner) Rekey(ctx context.Context, req ProvisionRequest) (Credentials, error) {
	if _, err := p.db.Endpoint(ctx, req.Endpoint); err != nil {
		return Credentials{}, err
	}
	c, sc, err := p.build(req)
	if err != nil {
		return c, err
	}
	return c, p.db.SetCredential(ctx, sc)
}

func (p *testProvisioner) build(req ProvisionRequest) (Credentials, store.Credential, error) {
	c := Credentials{Endpoint: req.Endpoint, Mode: req.Mode, ServerURI: "coaps://192.0.2.1:5684"}
	sc := store.Credential{Endpoint: req.Endpoint, Mode: req.Mode}
	switch req.Mode {
	case "psk", "bootstrap":
		c.PSKIdentity, c.PSKKey = req.PSKIdentity, req.PSKKey
		if c.PSKIdentity == "" {
			c.PSKIdentity = req.Endpoint
		}
		if c.PSKKey == nil {
			c.PSKKey = make([]byte, 16)
			rand.Read(c.PSKKey)
		}
		sc.PSKIdentity, sc.PSKKey = c.PSKIdentity, c.PSKKey
	case "x509":
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: req.Endpoint},
			NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return c, sc, err
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		c.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		c.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
		c.CACertificate = c.Certificate
		sc.CertPEM, sc.CertSerial = c.Certificate, tmpl.SerialNumber.String()
	default:
		c.ServerURI = "coap://192.0.2.1:5683"
	}
	return c, sc, nil
}

type testEnrollment struct{}

func (testEnrollment) Kconfig(c Credentials) (string, error) {
	return fmt.Sprintf("CONFIG_LWM2M=y\nCONFIG_LWM2M_CLIENT_UTILS=y\nCONFIG_LWM2M_CLIENT_UTILS_SERVER=\"%s\"\nCONFIG_LWM2M_DTLS_SUPPORT=%s\n",
		c.ServerURI, map[bool]string{true: "y", false: "n"}[c.Mode != "nosec"]), nil
}

func (testEnrollment) ATCommands(c Credentials) (string, error) {
	if c.Mode == "psk" || c.Mode == "bootstrap" {
		return fmt.Sprintf("AT+CFUN=4\nAT%%CMNG=0,16842753,4,\"%s\"\nAT%%CMNG=0,16842753,3,\"%s\"\nAT+CFUN=1\n", c.PSKIdentity, hex.EncodeToString(c.PSKKey)), nil
	}
	return "AT+CFUN=4\nAT+CFUN=1\n", nil
}

func (t testEnrollment) Bundle(c Credentials, w io.Writer) error {
	z := zip.NewWriter(w)
	k, _ := t.Kconfig(c)
	a, _ := t.ATCommands(c)
	for name, body := range map[string]string{"overlay-flownexus.conf": k, "at-commands.txt": a} {
		f, err := z.Create(name)
		if err != nil {
			return err
		}
		io.WriteString(f, body)
	}
	return z.Close()
}

// testSystem is the appliance's system side: a backup is the store's
// bytes, a restore and an update check what they are given.
type testSystem struct {
	db       *store.DB
	started  time.Time
	restored []byte
	updated  []byte
	// canRestart: run "under systemd"; restarts counts the restarts asked.
	canRestart bool
	restarts   int
}

func (s *testSystem) Restart(context.Context) error {
	if !s.canRestart {
		return fmt.Errorf("not started by systemd: stop it and start it again: %w", ErrUnavailable)
	}
	s.restarts++
	return nil
}

func (s *testSystem) Info(ctx context.Context) (SystemInfo, error) {
	n, _ := s.db.UsedBytes(ctx)
	return SystemInfo{Version: "1.2.3-test", Started: s.started, RestorePending: s.restored != nil, CanRestart: s.canRestart, DataDir: "/var/lib/flownexus", DBSize: uint64(n), DiskFree: 10 << 30, DiskTotal: 32 << 30,
		Ports: []Port{{"http", "127.0.0.1:8080"}, {"coap", ":5683"}, {"coaps", ":5684"}}}, nil
}

func (s *testSystem) Ready(ctx context.Context) error { return s.db.Ping(ctx) }

func (s *testSystem) Backup(ctx context.Context, w io.Writer) error {
	_, err := io.WriteString(w, "SQLite format 3\x00backup")
	return err
}

func (s *testSystem) Restore(ctx context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, []byte("SQLite format 3\x00")) {
		return fmt.Errorf("restore: not a FlowNexus backup: %w", ErrInvalid)
	}
	s.restored = b
	return nil
}

func (s *testSystem) SelfUpdate(ctx context.Context, bin io.Reader, sig []byte) error {
	b, err := io.ReadAll(bin)
	if err != nil {
		return err
	}
	if string(sig) != "good signature" {
		return fmt.Errorf("update: signature does not verify: %w", ErrInvalid)
	}
	s.updated = b
	return nil
}

func (s *testSystem) CACertificate(ctx context.Context) ([]byte, error) {
	return []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), nil
}

func (s *testSystem) WriteMetrics(w io.Writer) error {
	st := s.db.Stats()
	_, err := fmt.Fprintf(w, "# TYPE flownexus_ingest_accepted_total counter\nflownexus_ingest_accepted_total %d\n", st.Accepted)
	return err
}

// waitFollowing waits until FollowStore has given b its source, so that a
// Subscribe from then on subscribes to the store before it returns.
func waitFollowing(t testing.TB, b *Broker) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		ok := b.source != nil
		b.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("FollowStore never started")
		}
	}
}
