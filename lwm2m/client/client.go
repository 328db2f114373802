package client

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Config is a client's registration and behaviour. Start from DefaultConfig.
type Config struct {
	// Endpoint is the endpoint client name ("ep=", Core §6.2.1). Required.
	Endpoint string
	// Version is the LwM2M version the client speaks (1.0, 1.1 or 1.2).
	Version Version
	// Lifetime is the registration lifetime ("lt=", seconds on the wire).
	Lifetime time.Duration
	// UpdateMargin is how long before the lifetime ends the client sends its
	// Registration Update; zero picks a tenth of the lifetime, at least 1 s.
	UpdateMargin time.Duration
	// Binding is the transport binding ("b="), "U" for UDP.
	Binding string
	// QueueMode makes the client sleep between uplinks (Core §6.5): after an
	// uplink it listens for AwakeWindow, then ignores the server until it
	// sends again. 1.0 signals it with b=UQ, 1.1+ with the Q parameter.
	QueueMode bool
	// AwakeWindow is how long a queue-mode client listens after an uplink
	// (Zephyr's CONFIG_LWM2M_QUEUE_MODE_UPTIME; 93 s is the RFC 7252
	// MAX_TRANSMIT_WAIT the spec suggests).
	AwakeWindow time.Duration
	// SMSNumber is sent as "sms=" when set.
	SMSNumber string
	// RetryInterval is the first wait after a failed Register; it doubles
	// up to RetryMax.
	RetryInterval, RetryMax time.Duration
	// ConfirmableNotify sends notifications as CON unless an observation's
	// "con" attribute says otherwise; the default is NON, with a CON at
	// least every 24 h (RFC 7641 §4.5).
	ConfirmableNotify bool
	// SendFormat is the content format of Send (/dp); SenML CBOR by default.
	SendFormat lwm2m.Format
	// Server is the server's address, "coap://127.0.0.1:5683" or
	// "127.0.0.1:5683"; Run dials it unless WithTransport was given.
	Server string
	// LocalAddr is the source address Run binds ("127.0.0.2:0"); empty
	// lets the system choose.
	LocalAddr string
	// CoAP holds the endpoint parameters. A client has one peer, so one
	// worker is enough.
	CoAP coap.Config
}

// DefaultConfig returns a 1.1 client over UDP with the Core default
// lifetime (86400 s, Core §E.2 resource 1).
func DefaultConfig() Config {
	cc := coap.DefaultConfig()
	cc.Workers = 1
	cc.QueueLength = 16
	cc.PeerRate = 0
	return Config{
		Version:       Version11,
		Lifetime:      86400 * time.Second,
		Binding:       "U",
		AwakeWindow:   93 * time.Second,
		RetryInterval: 2 * time.Second,
		RetryMax:      5 * time.Minute,
		SendFormat:    lwm2m.FormatSenMLCBOR,
		CoAP:          cc,
	}
}

func (c Config) validate() error {
	if c.Endpoint == "" {
		return fmt.Errorf("client: config: %w: endpoint name is empty", ErrBadRequest)
	}
	if !c.Version.valid() {
		return fmt.Errorf("client: config: %w: version %q (want 1.0, 1.1 or 1.2)", ErrBadRequest, c.Version)
	}
	if c.Lifetime < time.Second {
		return fmt.Errorf("client: config: %w: lifetime %s is under 1 s", ErrBadRequest, c.Lifetime)
	}
	return nil
}

// updateEvery is the interval between Registration Updates for lifetime.
func (c Config) updateEvery(lifetime time.Duration) time.Duration {
	m := c.UpdateMargin
	if m <= 0 {
		m = max(lifetime/10, time.Second)
	}
	return max(lifetime-m, time.Second)
}

// Option configures a Client.
type Option func(*Client)

// WithLogger sets the logger (scoped with component=lwm2m-client).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l.With("component", "lwm2m-client", "endpoint", c.cfg.Endpoint)
		}
	}
}

// WithRegistry types payloads by reg's models (default: lwm2m.NewRegistry).
func WithRegistry(reg *lwm2m.Registry) Option {
	return func(c *Client) { c.reg = reg }
}

// WithEvents sets a function told about the client's life: registered,
// updated, deregistered, sleeping, awake, failures. It must not block.
func WithEvents(f func(Event)) Option {
	return func(c *Client) { c.events = f }
}

// WithBootstrapHandler routes the Bootstrap-Finish path ("/bs") to h; the
// bootstrap client uses Tree.BootstrapWrite/BootstrapDelete for the rest
// (Core §6.1). lwm2m/bootstrap provides it.
func WithBootstrapHandler(h coap.Handler) Option {
	return func(c *Client) { c.bootstrapHandler = h }
}

// EventKind names what happened to a client.
type EventKind int

// Event kinds.
const (
	EventRegistered EventKind = iota + 1
	EventUpdated
	EventDeregistered
	EventRegisterFailed
	EventUpdateFailed
	EventSleeping
	EventAwake
	EventNotified
	EventSent
)

var eventNames = map[EventKind]string{
	EventRegistered: "registered", EventUpdated: "updated", EventDeregistered: "deregistered",
	EventRegisterFailed: "register-failed", EventUpdateFailed: "update-failed",
	EventSleeping: "sleeping", EventAwake: "awake", EventNotified: "notified", EventSent: "sent",
}

func (k EventKind) String() string {
	if n, ok := eventNames[k]; ok {
		return n
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing that happened to a client.
type Event struct {
	Kind     EventKind
	Endpoint string
	Location string // registration location ("rd/…")
	Err      error
	// Latency is how long a confirmable notification waited for its ACK
	// (EventNotified of a CON notification that was acknowledged); 0
	// otherwise. Load tools take their acknowledgement latency from it.
	Latency time.Duration
	// Acked are the readings the server acknowledged: those of a
	// confirmable notification whose empty ACK came back (EventNotified),
	// or of a Send answered 2.04 (EventSent); nil otherwise. A simulator
	// keeps them to check, after a server crash, that everything
	// acknowledged was stored.
	Acked []lwm2m.Record
}

// Stats are a client's counters.
type Stats struct {
	Requests, Refused, Notifications, Sends, Updates, Registers uint64
}

type counters struct {
	requests, refused, notifications, sends, updates, registers atomic.Uint64
}

// Client is one LwM2M client: its object tree, its registration with one
// LwM2M server, and the observations the server holds on it.
type Client struct {
	cfg              Config
	log              *slog.Logger
	reg              *lwm2m.Registry
	tree             *Tree
	obs              *observeEngine
	events           func(Event)
	bootstrapHandler coap.Handler
	stats            counters

	mu         sync.Mutex
	location   string // "rd/abc", empty when not registered
	awakeUntil time.Time
	asleep     bool
	objsDirty  bool // the object list changed since the last Register/Update
	ready      chan struct{}
	readyOnce  sync.Once
	sess       *session
	held       map[string]*Observation // notifications waiting for the client to wake
	seq        atomic.Uint32
	trigger    chan struct{}
	reregister atomic.Bool
	lifetime   time.Duration // the current lifetime (the Server object's resource 1 may change it)
	ltDirty    bool          // the next Update carries lt=
	wake       chan struct{}
	transport  coap.Transport
	server     coap.Peer
	// execMu is read-held by an Execute from its start until its answer
	// has been handed to the transport; the registration loop takes it
	// before it sends, so that a Register or Update an Execute asked for
	// (Reboot, Registration Update Trigger) follows the Execute's answer.
	execMu sync.RWMutex
}

// New returns a client for cfg. Add objects to Tree() before Run.
func New(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Binding == "" {
		cfg.Binding = "U"
	}
	if cfg.SendFormat == 0 {
		cfg.SendFormat = lwm2m.FormatSenMLCBOR
	}
	c := &Client{cfg: cfg, log: slog.New(slog.DiscardHandler), ready: make(chan struct{}), lifetime: cfg.Lifetime,
		trigger: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(c)
	}
	if c.reg == nil {
		c.reg = lwm2m.NewRegistry()
	}
	c.tree = NewTree(c.reg)
	c.obs = newObserveEngine(c.tree, c.emit)
	return c, nil
}

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

// Tree returns the client's object tree.
func (c *Client) Tree() *Tree { return c.tree }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Requests: c.stats.requests.Load(), Refused: c.stats.refused.Load(),
		Notifications: c.stats.notifications.Load(), Sends: c.stats.sends.Load(),
		Updates: c.stats.updates.Load(), Registers: c.stats.registers.Load(),
	}
}

// Location returns the registration location ("rd/…") and whether the
// client is registered.
func (c *Client) Location() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.location, c.location != ""
}

// Registered is closed once the first Register has succeeded: a readiness
// signal for tests and fleets.
func (c *Client) Registered() <-chan struct{} { return c.ready }

// Observations returns the paths of the active observations (one slice per
// observation).
func (c *Client) Observations() [][]lwm2m.Path {
	var out [][]lwm2m.Path
	for _, o := range c.obs.observations() {
		out = append(out, o.Paths)
	}
	return out
}

// Attributes returns the attributes written at exactly p.
func (c *Client) Attributes(p lwm2m.Path) lwm2m.Attributes { return c.obs.attrsAt(p) }

// Lifetime returns the current registration lifetime.
func (c *Client) Lifetime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lifetime
}

// SetLifetime changes the registration lifetime, as a write of the Server
// object's Lifetime (Core §E.2 resource 1) does: the client sends an Update
// with the new lt at once and keeps to it afterwards (Core §6.2.2).
func (c *Client) SetLifetime(d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("client: lifetime %s: %w: under 1 s", d, ErrBadRequest)
	}
	c.mu.Lock()
	changed := c.lifetime != d
	c.lifetime = d
	c.ltDirty = c.ltDirty || changed
	c.mu.Unlock()
	if changed {
		c.TriggerUpdate()
	}
	return nil
}

// objectsChanged marks the object list for the next Update (Core §6.2.2:
// the Update carries the list when it changed), and asks for that Update.
func (c *Client) objectsChanged() {
	c.mu.Lock()
	c.objsDirty = true
	c.mu.Unlock()
	c.TriggerUpdate()
}

func (c *Client) event(k EventKind, err error) { c.eventWith(k, err, 0, nil) }

// eventWith reports an event with how long a CON notification waited for
// its ACK and the readings the server acknowledged.
func (c *Client) eventWith(k EventKind, err error, latency time.Duration, acked []lwm2m.Record) {
	if c.events == nil {
		return
	}
	loc, _ := c.Location()
	c.events(Event{Kind: k, Endpoint: c.cfg.Endpoint, Location: loc, Err: err, Latency: latency, Acked: acked})
}

// preferredFormat is the ct of the registration's root link.
func (c *Client) preferredFormat() lwm2m.Format {
	if c.cfg.Version == Version10 {
		return lwm2m.FormatTLV
	}
	return lwm2m.FormatSenMLCBOR
}

// registerQuery builds the Register URI-Query (Core §6.2.1, Transport §6.2).
func (c *Client) registerQuery() []string {
	q := []string{
		"ep=" + c.cfg.Endpoint,
		"lt=" + strconv.FormatInt(int64(c.Lifetime()/time.Second), 10),
		"lwm2m=" + string(c.cfg.Version),
	}
	b := c.cfg.Binding
	if c.cfg.QueueMode && c.cfg.Version == Version10 {
		b += "Q"
	}
	q = append(q, "b="+b)
	if c.cfg.SMSNumber != "" {
		q = append(q, "sms="+c.cfg.SMSNumber)
	}
	if c.cfg.QueueMode && c.cfg.Version != Version10 {
		q = append(q, "Q")
	}
	return q
}
