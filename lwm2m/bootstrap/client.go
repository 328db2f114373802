package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// ClientConfig configures the device side of bootstrap.
type ClientConfig struct {
	// Endpoint is sent as "ep".
	Endpoint string
	// PreferredFormat is sent as "pct" (1.1+); FormatNone leaves it out.
	PreferredFormat lwm2m.Format
	// Version is the LwM2M version the device speaks, for the
	// Bootstrap-Discover answer; "1.1" by default.
	Version string
}

// Client is the device side of client-initiated bootstrap: the handler a
// device's CoAP endpoint toward the bootstrap server runs, applying
// Bootstrap-Write and Bootstrap-Delete to tree, and the Bootstrap call that
// starts the sequence and waits for Bootstrap-Finish.
type Client struct {
	cfg  ClientConfig
	tree *client.Tree

	mu       sync.Mutex
	finished chan struct{}
}

// NewClient returns the bootstrap handler for tree, which must hold the
// Security (0) and Server (1) objects.
func NewClient(tree *client.Tree, cfg ClientConfig) *Client {
	if cfg.Version == "" {
		cfg.Version = "1.1"
	}
	return &Client{cfg: cfg, tree: tree, finished: make(chan struct{})}
}

// Bootstrap sends Bootstrap-Request (POST /bs?ep=&pct=) to server over ep,
// whose handler must be c, waits for the server's Bootstrap-Finish and
// returns the LwM2M server account it wrote.
func (c *Client) Bootstrap(ctx context.Context, ep *coap.Endpoint, server coap.Peer) (Account, error) {
	c.mu.Lock()
	c.finished = make(chan struct{})
	finished := c.finished
	c.mu.Unlock()

	m := newRequest(coap.POST, "/bs")
	m.AddQuery("ep=" + c.cfg.Endpoint)
	if c.cfg.PreferredFormat != lwm2m.FormatNone && c.cfg.PreferredFormat != 0 {
		m.AddQuery("pct=" + strconv.Itoa(int(c.cfg.PreferredFormat)))
	}
	resp, err := ep.Do(ctx, server, m)
	if err != nil {
		return Account{}, fmt.Errorf("bootstrap: request: %w", err)
	}
	if resp.Code != coap.Changed {
		return Account{}, fmt.Errorf("bootstrap: request answered %s %q: %w", resp.Code, resp.Payload, ErrRefused)
	}
	select {
	case <-finished:
	case <-ctx.Done():
		return Account{}, fmt.Errorf("bootstrap: waiting for Bootstrap-Finish: %w", ctx.Err())
	}
	return c.Account()
}

// ServeCoAP applies the bootstrap server's operations (Core 1.1 §5.2.7).
func (c *Client) ServeCoAP(_ context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	if m.Path() == "/bs" && m.Code == coap.POST {
		return c.finish()
	}
	p, err := lwm2m.ParsePath(strings.Join(m.PathSegments(), "/"))
	if err != nil {
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	switch m.Code {
	case coap.PUT:
		return c.write(p, m)
	case coap.DELETE:
		if err := c.delete(p); err != nil {
			return coap.ErrorResponse(client.CodeOf(err), err.Error())
		}
		return coap.NewResponse(coap.Deleted)
	case coap.GET:
		if a, ok := m.Accept(); ok && lwm2m.Format(a) == lwm2m.FormatLinkFormat {
			resp := coap.NewResponse(coap.Content)
			resp.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
			resp.Payload = []byte(c.discover(p))
			return resp
		}
		// Bootstrap-Read exists only for the Server object (Core 1.1
		// §5.2.7.4); not needed by this server.
		return coap.ErrorResponse(coap.MethodNotAllowed, "bootstrap: read not supported")
	}
	return coap.ErrorResponse(coap.MethodNotAllowed, "bootstrap: method not allowed")
}

func (c *Client) write(p lwm2m.Path, m *coap.Message) *coap.Response {
	cf, ok := m.ContentFormat()
	if !ok {
		return coap.ErrorResponse(coap.BadRequest, "bootstrap write without content format")
	}
	recs, err := lwm2m.Decode(lwm2m.Format(cf), p, m.Payload, c.tree.Registry())
	if err != nil {
		return coap.ErrorResponse(coap.BadRequest, err.Error())
	}
	if err := c.tree.BootstrapWrite(p, recs); err != nil {
		return coap.ErrorResponse(client.CodeOf(err), err.Error())
	}
	return coap.NewResponse(coap.Changed)
}

// delete removes instances but keeps the Bootstrap-Server account
// (Security instances with resource 1 = true) and the Device object:
// "Bootstrap-Delete on / or /0 MUST NOT delete the Bootstrap-Server
// Account" (Core 1.1 §5.2.7.5).
func (c *Client) delete(p lwm2m.Path) error {
	var objs []uint16
	if p.IsRoot() {
		objs = c.tree.ObjectIDs()
	} else {
		objs = []uint16{p.ObjectID()}
	}
	for _, oid := range objs {
		o, ok := c.tree.Object(oid)
		if !ok {
			return fmt.Errorf("bootstrap delete %s: %w", p, client.ErrNotFound)
		}
		for _, id := range o.Instances() {
			if p.Len() >= 2 && id != p.InstanceID() {
				continue
			}
			if oid == 0 && c.isBootstrapAccount(o, id) {
				continue
			}
			if err := c.tree.BootstrapDelete(lwm2m.NewPath(oid, id)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Client) isBootstrapAccount(o client.Object, id uint16) bool {
	recs := readAll(o, lwm2m.NewPath(0, id))
	for _, r := range recs {
		if r.Path.ResourceID() == 1 {
			return r.Value.Bool()
		}
	}
	return false
}

// getter is implemented by objects (client.ValueObject) that expose values
// a management server may not read: the Security object's resources have
// no Read access (Core Appendix E.1), yet the device itself needs them.
type getter interface {
	Get(p lwm2m.Path) (lwm2m.Value, bool)
}

// accountResources are the Security and Server resources bootstrap uses.
var accountResources = []uint16{0, 1, 2, 3, 4, 5, 6, 7, 10}

// readAll returns the values of instance p as the device holds them.
func readAll(o client.Object, p lwm2m.Path) []lwm2m.Record {
	g, ok := o.(getter)
	if !ok {
		recs, _ := o.Read(p)
		return recs
	}
	var recs []lwm2m.Record
	for _, res := range accountResources {
		rp := p.Append(res)
		if v, ok := g.Get(rp); ok {
			recs = append(recs, lwm2m.Record{Path: rp, Value: v})
		}
	}
	return recs
}

// discover answers Bootstrap-Discover (Core 1.1 §5.2.7.1).
func (c *Client) discover(p lwm2m.Path) string {
	links := []string{"</>;lwm2m=" + c.cfg.Version}
	for _, oid := range c.tree.ObjectIDs() {
		if !p.IsRoot() && oid != p.ObjectID() {
			continue
		}
		o, _ := c.tree.Object(oid)
		ids := o.Instances()
		if len(ids) == 0 {
			links = append(links, fmt.Sprintf("</%d>", oid))
		}
		for _, id := range ids {
			links = append(links, fmt.Sprintf("</%d/%d>", oid, id))
		}
	}
	return strings.Join(links, ",")
}

// finish answers Bootstrap-Finish: 2.04 when an LwM2M server account is
// usable, 4.06 otherwise (Core 1.1 §5.2.7.3).
func (c *Client) finish() *coap.Response {
	if _, err := c.Account(); err != nil {
		return coap.ErrorResponse(coap.NotAcceptable, err.Error())
	}
	// Bootstrap returns once finished is closed, and its caller then moves
	// on to the LwM2M server, often closing this endpoint: the 2.04 must
	// be on its way to the bootstrap server first, or the server never
	// learns that the sequence succeeded (Core 1.1 §5.2.5.2).
	resp := coap.NewResponse(coap.Changed)
	resp.Then = func() {
		c.mu.Lock()
		select {
		case <-c.finished:
		default:
			close(c.finished)
		}
		c.mu.Unlock()
	}
	return resp
}

// Account reads the LwM2M server account from the tree: the first
// non-bootstrap Security instance and the Server instance with its Short
// Server ID.
func (c *Client) Account() (Account, error) {
	so, ok1 := c.tree.Object(0)
	vo, ok2 := c.tree.Object(1)
	if !ok1 || !ok2 {
		return Account{}, fmt.Errorf("%w: no Security or Server object", ErrNoAccount)
	}
	for _, id := range so.Instances() {
		if c.isBootstrapAccount(so, id) {
			continue
		}
		recs := readAll(so, lwm2m.NewPath(0, id))
		var a Account
		for _, r := range recs {
			switch r.Path.ResourceID() {
			case 0:
				a.ServerURI = r.Value.Str()
			case 2:
				a.Mode = SecurityMode(r.Value.Int())
			case 3:
				a.Identity = r.Value.Bytes()
			case 4:
				a.ServerPublicKey = r.Value.Bytes()
			case 5:
				a.SecretKey = r.Value.Bytes()
			case 10:
				a.ShortServerID = uint16(r.Value.Int())
			}
		}
		for _, sid := range vo.Instances() {
			srecs := readAll(vo, lwm2m.NewPath(1, sid))
			match := slices.ContainsFunc(srecs, func(r lwm2m.Record) bool {
				return r.Path.ResourceID() == 0 && r.Value.Int() == int64(a.ShortServerID)
			})
			if !match {
				continue
			}
			for _, r := range srecs {
				switch r.Path.ResourceID() {
				case 1:
					a.Lifetime = time.Duration(r.Value.Int()) * time.Second
				case 6:
					a.NotificationStoring = r.Value.Bool()
				case 7:
					a.Binding = r.Value.Str()
				}
			}
			if a.ServerURI != "" {
				return a, nil
			}
		}
	}
	return Account{}, ErrNoAccount
}
