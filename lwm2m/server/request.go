package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// target is where a request goes: the endpoint and peer of the current
// registration.
type target struct {
	reg  *registration
	ep   *coap.Endpoint
	peer coap.Peer
	root string
}

// awaitTarget returns the endpoint's registration once requests may go to
// it. A queue-mode device is only reachable during its awake window after
// an uplink (Core §6.5); until then the request waits — for its next
// Register, Update, notification or Send — or until ctx ends.
func (s *Server) awaitTarget(ctx context.Context, endpoint string) (target, error) {
	woken := false
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return target{}, fmt.Errorf("server: %s: %w", endpoint, ErrClosed)
		}
		reg := s.byEP[endpoint]
		if reg == nil {
			s.mu.Unlock()
			return target{}, fmt.Errorf("server: %s: %w", endpoint, ErrNotRegistered)
		}
		if id, ok := boundTo(ctx); ok && reg.snap.ID != id {
			s.mu.Unlock()
			return target{}, fmt.Errorf("server: %s: registration %s: %w", endpoint, id, ErrRegistrationEnded)
		}
		// A registration whose Register is still being handled is in
		// memory but not yet saved: a request now could create state (an
		// observation) that the Persister cannot attach to it, lost at
		// the next restart. Wait until the Register is settled.
		if ch := s.pending[reg.snap.ID]; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return target{}, fmt.Errorf("server: %s: %w: registration not settled: %w", endpoint, ErrTimeout, ctx.Err())
			}
		}
		// A request woken by an uplink goes at once, however short the
		// window: the device has just shown it is listening. A restored
		// registration not yet bound to a transport waits for its
		// device's next uplink too.
		if reg.ep != nil && (woken || !reg.snap.QueueMode || time.Now().Before(reg.awake)) {
			t := target{reg: reg, ep: reg.ep, peer: reg.snap.Peer, root: reg.snap.RootPath}
			s.mu.Unlock()
			return t, nil
		}
		wake := reg.wakeChanLocked()
		s.queued++
		s.mu.Unlock()
		select {
		case <-wake:
			woken = true
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.queued--
		s.mu.Unlock()
		if !woken {
			return target{}, fmt.Errorf("server: %s: %w: queue-mode device did not wake up: %w", endpoint, ErrTimeout, ctx.Err())
		}
	}
}

// withDeadline gives ctx the server's request timeout when it has none.
func (s *Server) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// setPath sets the Uri-Path of a request to an LwM2M path under the
// registration's root path (Transport §6.4: an alternate path prefixes
// every object).
func setPath(m *coap.Message, root, path string) {
	if root != "/" && root != "" {
		path = strings.TrimSuffix(root, "/") + path
	}
	m.SetPath(path)
}

// Request sends a raw CoAP request to a registered device (Uri-Path as in
// m, not prefixed with the root path) and returns the response, whatever
// its code. It waits for a queue-mode device to wake. Most callers want the
// typed methods (Read, Write …).
func (s *Server) Request(ctx context.Context, endpoint string, m *coap.Message) (*coap.Message, error) {
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	t, err := s.awaitTarget(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	return s.do(ctx, endpoint, t, m)
}

// do sends m and counts it; a response is an uplink and extends a
// queue-mode device's awake window.
func (s *Server) do(ctx context.Context, endpoint string, t target, m *coap.Message) (*coap.Message, error) {
	s.st.requests.Add(1)
	ctx, cancel := s.bind(ctx, t.reg)
	defer cancel()
	resp, err := t.ep.Do(ctx, t.peer, m)
	if err != nil {
		s.st.requestErrors.Add(1)
		if e := endedErr(ctx, endpoint); e != nil {
			return nil, e
		}
		return nil, transportErr(endpoint, err)
	}
	s.wakeUp(t.reg)
	return resp, nil
}

// call sends an LwM2M request to path (relative to the root path) and
// turns error codes into a *ResponseError.
func (s *Server) call(ctx context.Context, endpoint string, m *coap.Message, path string) (*coap.Message, target, error) {
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	t, err := s.awaitTarget(ctx, endpoint)
	if err != nil {
		return nil, t, err
	}
	setPath(m, t.root, path)
	resp, err := s.do(ctx, endpoint, t, m)
	if err != nil {
		return nil, t, err
	}
	if !resp.Code.IsSuccess() {
		s.st.requestErrors.Add(1)
		return resp, t, fmt.Errorf("server: %s %s %s: %w", endpoint, m.Code, path, &ResponseError{Code: resp.Code, Message: string(resp.Payload)})
	}
	return resp, t, nil
}
