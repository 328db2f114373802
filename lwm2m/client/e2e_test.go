package client

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// rawServer is a minimal LwM2M server made of a bare coap.Endpoint: it
// answers the registration interface and records what it saw, so the
// client is tested over real UDP without depending on lwm2m/server.
type rawServer struct {
	t     *testing.T
	ep    *coap.Endpoint
	addr  string
	mu    sync.Mutex
	peer  coap.Peer
	query []string
	links string
	sent  []lwm2m.Record
	// updQueries are the URI-Queries of every Update, in order.
	updQueries []string
	updLinks   string
	evs        chan string // "register", "update", "deregister", "send"
	// refuseUpdate answers the next Update with 4.04.
	refuseUpdate bool
}

func startRawServer(t *testing.T) *rawServer {
	t.Helper()
	tr, err := coap.ListenUDP("127.0.0.1:0")
	must(t, err)
	s := &rawServer{t: t, addr: tr.LocalAddr().String(), evs: make(chan string, 64)}
	s.ep = coap.NewEndpoint(tr, coap.HandlerFunc(s.serve), fastCoAP())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func fastCoAP() coap.Config {
	cc := coap.DefaultConfig()
	cc.ACKTimeout = 200 * time.Millisecond
	// Four retransmissions (a span of about 9 s, RFC 7252 §4.8.2): a
	// loaded machine must not turn a slow answer into a lost registration.
	cc.MaxRetransmit = 4
	cc.RequestTimeout = 3 * time.Second
	cc.Workers = 1
	return cc
}

func (s *rawServer) serve(ctx context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	path := m.Path()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case m.Code == coap.POST && path == "/rd":
		s.peer, s.query, s.links = r.Peer, m.Queries(), string(m.Payload)
		resp := coap.NewResponse(coap.Created)
		resp.AddOption(coap.LocationPath, []byte("rd"))
		resp.AddOption(coap.LocationPath, []byte("x7"))
		s.evs <- "register"
		return resp
	case m.Code == coap.POST && path == "/rd/x7":
		s.peer = r.Peer
		s.updQueries = append(s.updQueries, strings.Join(m.Queries(), "&"))
		s.updLinks = string(m.Payload)
		if s.refuseUpdate {
			s.refuseUpdate = false
			s.evs <- "update-refused"
			return coap.ErrorResponse(coap.NotFound, "unknown registration")
		}
		s.evs <- "update"
		return coap.NewResponse(coap.Changed)
	case m.Code == coap.DELETE && path == "/rd/x7":
		s.evs <- "deregister"
		return coap.NewResponse(coap.Deleted)
	case m.Code == coap.POST && path == "/dp":
		f, _ := m.ContentFormat()
		recs, err := lwm2m.Decode(lwm2m.Format(f), lwm2m.Path{}, m.Payload, nil)
		if err != nil {
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
		s.sent = append(s.sent, recs...)
		s.evs <- "send"
		return coap.NewResponse(coap.Changed)
	}
	return coap.ErrorResponse(coap.NotFound, "no such path")
}

func (s *rawServer) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s.evs:
		t.Logf("server event %s", got)
		if got != want {
			t.Fatalf("server saw %q, want %q", got, want)
		}
	case <-time.After(time.Minute): // a bound against hangs, not a timing
		t.Fatalf("server never saw %q", want)
	}
}

func (s *rawServer) device() coap.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// startClient runs a test client against s.
func startClient(t *testing.T, s *rawServer, tweak func(*Config)) (*Client, map[uint16]*ValueObject, chan Event, func()) {
	t.Helper()
	c, objs := newTestClient(t, Version11)
	cfg := c.cfg
	cfg.Server = "coap://" + s.addr
	cfg.LocalAddr = "127.0.0.1:0"
	cfg.CoAP = fastCoAP()
	cfg.RetryInterval = 50 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	c.cfg = cfg
	c.lifetime = cfg.Lifetime
	if testing.Verbose() {
		c.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	evs := make(chan Event, 64)
	c.events = func(e Event) {
		select {
		case evs <- e:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return c, objs, evs, stop
}

// TestE2ERegistrationLifecycle: Register with the right query and links,
// Update before the lifetime ends, Register again after a 4.04 Update, and
// De-register on shutdown.
func TestE2ERegistrationLifecycle(t *testing.T) {
	s := startRawServer(t)
	c, _, evs, stop := startClient(t, s, func(cfg *Config) {
		cfg.Lifetime = 2 * time.Second
		cfg.UpdateMargin = 1800 * time.Millisecond // Update every 200 ms
	})
	s.wait(t, "register")
	<-c.Registered()
	s.mu.Lock()
	q, links := strings.Join(s.query, "&"), s.links
	s.mu.Unlock()
	if q != "ep=unit-1&lt=2&lwm2m=1.1&b=U" {
		t.Fatalf("register query %s", q)
	}
	if !strings.Contains(links, "</3303/1>") || strings.Contains(links, "</0/") {
		t.Fatalf("register links %s", links)
	}
	if loc, _ := c.Location(); loc != "rd/x7" {
		t.Fatalf("location %q", loc)
	}
	s.wait(t, "update")
	// A new lifetime goes out with an Update at once. A periodic Update
	// built just before SetLifetime took effect may come first, and one
	// more may follow before this goroutine looks: look at every Update
	// since SetLifetime.
	s.mu.Lock()
	since := len(s.updQueries)
	s.mu.Unlock()
	must(t, c.SetLifetime(5*time.Second))
	for found := false; !found; {
		select {
		case got := <-s.evs:
			t.Logf("server event %s", got)
			if got != "update" {
				t.Fatalf("server saw %q, want an Update with lt=5", got)
			}
			s.mu.Lock()
			found = slices.Contains(s.updQueries[since:], "lt=5")
			s.mu.Unlock()
		case <-time.After(10 * time.Second): // a bound against hangs
			s.mu.Lock()
			t.Fatalf("no Update with lt=5 after SetLifetime; queries since: %q", s.updQueries[since:])
		}
	}
	s.mu.Lock()
	if err := c.SetLifetime(0); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("zero lifetime: %v", err)
	}
	s.refuseUpdate = true
	s.mu.Unlock()
	// Drain updates until the refused one, then the client registers again.
	for got := ""; got != "update-refused"; {
		select {
		case got = <-s.evs:
		case <-time.After(10 * time.Second):
			t.Fatal("no refused update")
		}
	}
	s.wait(t, "register")
	// The server reports before it answers: wait for the client to have
	// the answer too.
	for registered := 0; registered < 2; {
		select {
		case e := <-evs:
			if e.Kind == EventRegistered {
				registered++
			}
		case <-time.After(10 * time.Second):
			t.Fatal("client did not register again")
		}
	}
	stop()
	for got := ""; got != "deregister"; {
		select {
		case got = <-s.evs:
			t.Logf("server event %s", got)
		case <-time.After(10 * time.Second):
			t.Fatal("no de-register")
		}
	}
	if _, ok := c.Location(); ok {
		t.Fatal("still registered after de-register")
	}
}

// TestE2EOperations: Read, Write, Execute, Discover, Observe with
// notifications, proactive cancel and Send, over UDP.
func TestE2EOperations(t *testing.T) {
	s := startRawServer(t)
	c, objs, _, _ := startClient(t, s, nil)
	s.wait(t, "register")
	<-c.Registered() // the server reports before the client has its answer
	dev := s.device()
	ctx := context.Background()
	do := func(m *coap.Message) *coap.Message {
		t.Helper()
		resp, err := s.ep.Do(ctx, dev, m)
		must(t, err)
		return resp
	}

	m := req(coap.GET, "/3/0/0")
	m.SetAccept(uint16(lwm2m.FormatText))
	if r := do(m); r.Code != coap.Content || string(r.Payload) != "FlowNexus" {
		t.Fatalf("read manufacturer: %s %q", r.Code, r.Payload)
	}
	m = req(coap.PUT, "/1/0/1")
	m.SetContentFormat(uint16(lwm2m.FormatText))
	m.Payload = []byte("90")
	if r := do(m); r.Code != coap.Changed {
		t.Fatalf("write lifetime: %s", r.Code)
	}
	if r := do(req(coap.GET, "/3/0/999")); r.Code != coap.NotFound {
		t.Fatalf("read unknown: %s", r.Code)
	}

	// Observe temperature; a value change notifies.
	notes := make(chan *coap.Message, 8)
	om := req(coap.GET, "/3303/0/5700")
	om.SetAccept(uint16(lwm2m.FormatText))
	obs, first, err := s.ep.Observe(ctx, dev, om, func(n *coap.Notification) error { notes <- n.Message; return nil })
	must(t, err)
	if first.Code != coap.Content || string(first.Payload) != "21.5" {
		t.Fatalf("observe first answer %s %q", first.Code, first.Payload)
	}
	must(t, objs[3303].Set(temp, lwm2m.Float(30.25)))
	select {
	case n := <-notes:
		if string(n.Payload) != "30.25" {
			t.Fatalf("notification %q", n.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	if _, err := obs.Cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if got := c.Observations(); len(got) != 0 {
		t.Fatalf("observation left after proactive cancel: %v", got)
	}

	must(t, c.Send(ctx, temp, lwm2m.MustParsePath("/3/0/9")))
	s.wait(t, "send")
	s.mu.Lock()
	sent := s.sent
	s.mu.Unlock()
	if len(sent) != 2 || sent[0].Path != temp || sent[0].Time.IsZero() {
		t.Fatalf("sent records %v", sent)
	}
	if err := c.SendRecords(ctx, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty send: %v", err)
	}

	// Create and Delete change the object list: an Update carries it.
	if r := do(req(coap.POST, "/3303")); r.Code != coap.Created {
		t.Fatalf("create: %s", r.Code)
	}
	s.wait(t, "update")
	s.mu.Lock()
	links := s.updLinks
	s.mu.Unlock()
	if !strings.Contains(links, "</3303/2>") {
		t.Fatalf("update links after create: %q", links)
	}
}

// TestE2EQueueMode: after the awake window a queue-mode client answers
// nothing; its next uplink (an Update) wakes it.
func TestE2EQueueMode(t *testing.T) {
	s := startRawServer(t)
	c, _, evs, _ := startClient(t, s, func(cfg *Config) {
		cfg.QueueMode = true
		// Long enough for a round trip (the Update's answer, then the
		// GET) on a loaded machine: a sleeping client drops datagrams.
		cfg.AwakeWindow = queueTestWindow
	})
	s.wait(t, "register")
	s.mu.Lock()
	q := strings.Join(s.query, "&")
	s.mu.Unlock()
	if !strings.HasSuffix(q, "&Q") {
		t.Fatalf("queue-mode register query %s", q)
	}
	waitEvent(t, evs, EventSleeping)
	if !c.Asleep() {
		t.Fatal("client not asleep after the awake window")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := s.ep.Do(ctx, s.device(), req(coap.GET, "/3/0/0"))
	if !errors.Is(err, coap.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sleeping client answered: %v", err)
	}
	c.TriggerUpdate()
	s.wait(t, "update")
	if c.Asleep() {
		t.Fatal("still asleep after its Update")
	}
	r, err := s.ep.Do(context.Background(), s.device(), req(coap.GET, "/3/0/0"))
	must(t, err)
	if r.Code != coap.Content {
		t.Fatalf("awake read: %s", r.Code)
	}
}

// queueTestWindow is the awake window of queue-mode tests: every round
// trip that must reach an awake client (an answer to its uplink, the
// server's request after it) fits into it however late the test runs,
// and the tests wait for the client to fall asleep, not for a time.
const queueTestWindow = 2 * time.Second

// waitEvent waits for the client's next event of kind k.
func waitEvent(t *testing.T, evs chan Event, k EventKind) {
	t.Helper()
	deadline := time.After(time.Minute) // a bound against hangs, not a timing
	for {
		select {
		case e := <-evs:
			if e.Kind == k {
				return
			}
		case <-deadline:
			t.Fatalf("no event %v", k)
		}
	}
}

// TestRunWithoutServer: Run refuses to start without an address.
func TestRunWithoutServer(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	if err := c.Run(context.Background()); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("run without server: %v", err)
	}
	if _, err := New(Config{Version: Version11, Lifetime: time.Minute}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("config without endpoint: %v", err)
	}
	if _, err := New(Config{Endpoint: "x", Version: "2.0", Lifetime: time.Minute}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("config with bad version: %v", err)
	}
	recs := []lwm2m.Record{{Path: temp, Value: lwm2m.Float(1)}}
	if err := c.SendRecords(context.Background(), recs); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("send before registering: %v", err)
	}
	if err := c.Update(context.Background()); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("update before registering: %v", err)
	}
	if err := c.Register(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("register while not running: %v", err)
	}
	c10, _ := newTestClient(t, Version10)
	if err := c10.SendRecords(context.Background(), recs); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("send from a 1.0 client: %v", err)
	}
	if got := serverHostPort("coap://127.0.0.1"); got != "127.0.0.1:5683" {
		t.Fatal(got)
	}
	_ = netip.AddrPort{}
}
