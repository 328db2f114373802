package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// session is the transport side of a running client.
type session struct {
	ep     *coap.Endpoint
	server coap.Peer
	ctx    context.Context // ends when the endpoint stops
}

// WithTransport makes Run use t to reach the server at server instead of
// dialing UDP (a DTLS transport from lwm2m/dtls, or a socket bound to a
// chosen source address).
func WithTransport(t coap.Transport, server coap.Peer) Option {
	return func(c *Client) { c.transport, c.server = t, server }
}

// Run registers with the server and keeps the registration alive (Update
// before the lifetime ends, Register again when the server lost it) until
// ctx ends; then it de-registers and returns nil. It serves the server's
// requests meanwhile. It returns an error only when it cannot start.
func (c *Client) Run(ctx context.Context) error {
	t, server := c.transport, c.server
	if t == nil {
		if c.cfg.Server == "" {
			return fmt.Errorf("client: run: %w: no server address and no transport", ErrBadRequest)
		}
		var err error
		if t, server, err = coap.DialUDP(c.cfg.LocalAddr, serverHostPort(c.cfg.Server)); err != nil {
			return fmt.Errorf("client: run: %w", err)
		}
	}
	return c.RunOn(ctx, t, server)
}

// RunOn is Run over a transport made by the caller (a DTLS session dialled
// just before, for example); the transport is closed when it returns.
func (c *Client) RunOn(ctx context.Context, t coap.Transport, server coap.Peer) error {
	epCtx, epCancel := context.WithCancel(context.Background())
	defer epCancel()
	ep := coap.NewEndpoint(&gate{Transport: t, c: c}, c, c.cfg.CoAP,
		coap.WithLogger(c.log),
		coap.WithResetHandler(func(_ coap.Peer, token []byte) { c.obs.cancel(string(token)) }))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ep.Run(epCtx); err != nil {
			c.log.Warn("coap endpoint stopped", "err", err)
		}
	}()
	c.mu.Lock()
	c.sess = &session{ep: ep, server: server, ctx: epCtx}
	c.mu.Unlock()

	c.loop(ctx)

	c.obs.cancelAll()
	if _, ok := c.Location(); ok {
		dctx, cancel := context.WithTimeout(context.Background(), c.deregisterTimeout())
		if err := c.Deregister(dctx); err != nil {
			c.log.Info("de-register failed", "err", err)
		}
		cancel()
	}
	c.mu.Lock()
	c.sess = nil
	c.mu.Unlock()
	epCancel()
	wg.Wait()
	return nil
}

func (c *Client) deregisterTimeout() time.Duration {
	return max(c.cfg.CoAP.ACKTimeout*2, time.Second)
}

// serverHostPort turns "coap://127.0.0.1:5683" (or a bare host:port) into
// host:port, defaulting the port to 5683 (RFC 7252 §6.1).
func serverHostPort(s string) string {
	s = strings.TrimPrefix(s, "coap://")
	s = strings.TrimSuffix(s, "/")
	if !strings.Contains(s, ":") || strings.HasSuffix(s, "]") {
		s += ":5683"
	}
	return s
}

// loop registers, updates and sleeps until ctx ends.
func (c *Client) loop(ctx context.Context) {
	backoff := c.cfg.RetryInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	var sleepTimer *time.Timer
	sleepC := func() <-chan time.Time {
		if sleepTimer == nil {
			return nil
		}
		return sleepTimer.C
	}
	armSleep := func() {
		if !c.cfg.QueueMode {
			return
		}
		if sleepTimer == nil {
			sleepTimer = time.NewTimer(c.cfg.AwakeWindow)
		} else {
			sleepTimer.Reset(c.cfg.AwakeWindow)
		}
	}
	defer func() {
		if sleepTimer != nil {
			sleepTimer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			armSleep()
			continue
		case <-sleepC():
			if c.fallAsleep() {
				c.event(EventSleeping, nil)
			}
			continue
		case <-c.trigger:
		case <-timer.C:
		}
		// select picks at random among ready cases: a trigger or the
		// timer may win over a ctx that has ended, and no Update or
		// Register may go out then.
		if ctx.Err() != nil {
			return
		}
		// An Execute that asked for this Register or Update is answered
		// first.
		c.execMu.Lock()
		c.execMu.Unlock() //nolint:staticcheck // a barrier, nothing to guard
		var err error
		if _, ok := c.Location(); ok && !c.reregister.Swap(false) {
			err = c.Update(ctx)
			if errors.Is(err, ErrNotRegistered) {
				err = c.Register(ctx)
			}
		} else {
			err = c.Register(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Info("registration failed", "err", err, "retry_in", backoff)
			timer.Reset(backoff)
			backoff = min(backoff*2, c.cfg.RetryMax)
			continue
		}
		backoff = c.cfg.RetryInterval
		timer.Reset(c.cfg.updateEvery(c.Lifetime()))
		armSleep()
	}
}

// TriggerUpdate asks the running client to send a Registration Update now
// (Core §E.2 resource 8, "Registration Update Trigger").
func (c *Client) TriggerUpdate() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// TriggerRegister asks the running client to register afresh, as a device
// does after it restarts (Device object Reboot, Core §E.4 resource 4).
func (c *Client) TriggerRegister() {
	c.reregister.Store(true)
	c.TriggerUpdate()
}

// touch records an uplink: a queue-mode client stays awake for the awake
// window after it (Core §6.5).
func (c *Client) touch() {
	if !c.cfg.QueueMode {
		return
	}
	c.mu.Lock()
	c.awakeUntil = time.Now().Add(c.cfg.AwakeWindow)
	wasAsleep := c.asleep
	c.asleep = false
	c.mu.Unlock()
	if wasAsleep {
		c.event(EventAwake, nil)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// fallAsleep ends the awake window when it has passed.
func (c *Client) fallAsleep() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asleep || time.Now().Before(c.awakeUntil) {
		return false
	}
	c.asleep = true
	return true
}

// Asleep reports whether a queue-mode client is sleeping: it answers nothing
// until its next uplink.
func (c *Client) Asleep() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asleep || (c.cfg.QueueMode && !c.awakeUntil.IsZero() && time.Now().After(c.awakeUntil))
}

func (c *Client) session() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil, ErrClosed
	}
	return c.sess, nil
}

// request sends one client-initiated request and checks the response code.
func (c *Client) request(ctx context.Context, op string, m *coap.Message, want coap.Code) (*coap.Message, error) {
	s, err := c.session()
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", op, err)
	}
	c.touch()
	resp, err := s.ep.Do(ctx, s.server, m)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", op, err)
	}
	if resp.Code != want {
		return resp, &ServerError{Op: op, Code: resp.Code, Message: string(resp.Payload)}
	}
	return resp, nil
}

// Register sends Register (Core §6.2.1): POST /rd with the endpoint name,
// lifetime, version, binding and queue mode, and the object list. Every
// observation ends; the server starts afresh.
func (c *Client) Register(ctx context.Context) error {
	m := &coap.Message{Code: coap.POST}
	m.SetPath("/rd")
	for _, q := range c.registerQuery() {
		m.AddQuery(q)
	}
	m.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
	m.Payload = c.registrationLinks()
	c.obs.cancelAll()
	c.mu.Lock()
	c.objsDirty = false
	c.mu.Unlock()
	resp, err := c.request(ctx, "register", m, coap.Created)
	if err != nil {
		c.event(EventRegisterFailed, err)
		return err
	}
	loc := strings.Join(resp.LocationPath(), "/")
	if loc == "" {
		err := &ServerError{Op: "register", Code: resp.Code, Message: "no Location-Path in the response"}
		c.event(EventRegisterFailed, err)
		return err
	}
	c.mu.Lock()
	c.location = loc
	c.mu.Unlock()
	c.stats.registers.Add(1)
	c.log.Debug("registered", "location", loc)
	c.readyOnce.Do(func() { close(c.ready) })
	c.event(EventRegistered, nil)
	return nil
}

// Update sends a Registration Update (Core §6.2.2) with the object list when
// it changed. A 4.04 answer means the server forgot the registration: the
// error wraps ErrNotRegistered and the client registers again.
func (c *Client) Update(ctx context.Context) error {
	loc, ok := c.Location()
	if !ok {
		return fmt.Errorf("client: update: %w", ErrNotRegistered)
	}
	m := &coap.Message{Code: coap.POST}
	m.SetPath("/" + loc)
	c.mu.Lock()
	dirty, ltDirty, lt := c.objsDirty, c.ltDirty, c.lifetime
	c.objsDirty, c.ltDirty = false, false
	c.mu.Unlock()
	if ltDirty {
		m.AddQuery("lt=" + strconv.FormatInt(int64(lt/time.Second), 10))
	}
	if dirty {
		m.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
		m.Payload = c.registrationLinks()
	}
	_, err := c.request(ctx, "update", m, coap.Changed)
	if err != nil {
		var se *ServerError
		if errors.As(err, &se) && (se.Code == coap.NotFound || se.Code == coap.BadRequest) {
			c.mu.Lock()
			c.location = ""
			c.mu.Unlock()
			err = fmt.Errorf("%w: %w", ErrNotRegistered, err)
		} else {
			c.mu.Lock()
			c.objsDirty = c.objsDirty || dirty
			c.ltDirty = c.ltDirty || ltDirty
			c.mu.Unlock()
		}
		c.event(EventUpdateFailed, err)
		return err
	}
	c.stats.updates.Add(1)
	c.event(EventUpdated, nil)
	c.flushPending()
	return nil
}

// Deregister sends De-register (Core §6.2.3).
func (c *Client) Deregister(ctx context.Context) error {
	loc, ok := c.Location()
	if !ok {
		return fmt.Errorf("client: deregister: %w", ErrNotRegistered)
	}
	m := &coap.Message{Code: coap.DELETE}
	m.SetPath("/" + loc)
	_, err := c.request(ctx, "deregister", m, coap.Deleted)
	c.mu.Lock()
	c.location = ""
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.event(EventDeregistered, nil)
	return nil
}

// Send reports the current values under paths to the server (Core §6.4.4,
// "Send": POST /dp), each with the time it was read.
func (c *Client) Send(ctx context.Context, paths ...lwm2m.Path) error {
	recs, err := c.tree.ReadComposite(paths)
	if err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	now := time.Now()
	for i := range recs {
		if recs[i].Time.IsZero() {
			recs[i].Time = now
		}
	}
	return c.SendRecords(ctx, recs)
}

// SendRecords sends recs, with their timestamps, to /dp.
func (c *Client) SendRecords(ctx context.Context, recs []lwm2m.Record) error {
	if c.cfg.Version == Version10 {
		return fmt.Errorf("client: send: %w: Send is an LwM2M 1.1 operation", ErrBadRequest)
	}
	if len(recs) == 0 {
		return fmt.Errorf("client: send: %w: nothing to send", ErrBadRequest)
	}
	if _, ok := c.Location(); !ok {
		return fmt.Errorf("client: send: %w", ErrNotRegistered)
	}
	b, err := lwm2m.Encode(c.cfg.SendFormat, lwm2m.Path{}, recs, c.tree.Registry())
	if err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	m := &coap.Message{Code: coap.POST}
	m.SetPath("/dp")
	m.SetContentFormat(uint16(c.cfg.SendFormat))
	m.Payload = b
	if _, err := c.request(ctx, "send", m, coap.Changed); err != nil {
		return err
	}
	c.stats.sends.Add(1)
	c.eventWith(EventSent, nil, 0, recs)
	return nil
}

// gate is the transport a queue-mode client reads through: while the client
// sleeps, datagrams from the server are dropped unread, as a device with its
// radio off never sees them (Core §6.5).
type gate struct {
	coap.Transport
	c *Client
}

func (g *gate) ReadFrom(b []byte) (int, coap.Peer, error) {
	for {
		n, from, err := g.Transport.ReadFrom(b)
		if err != nil || !g.c.cfg.QueueMode || !g.c.Asleep() {
			return n, from, err
		}
	}
}

// Close releases a transport given with WithTransport when Run will not be
// called (Run closes it itself when it ends).
func (c *Client) Close() error {
	c.mu.Lock()
	running := c.sess != nil
	c.mu.Unlock()
	if running || c.transport == nil {
		return nil
	}
	return c.transport.Close()
}

// LocalAddr is the address the running client's socket is bound to; nil
// when it is not running.
func (c *Client) LocalAddr() net.Addr {
	s, err := c.session()
	if err != nil {
		return nil
	}
	return s.ep.LocalAddr()
}
