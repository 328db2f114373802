package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// ErrNoRoute: no plain-CoAP transport could reach the address.
var ErrNoRoute = errors.New("no plain CoAP transport reaches the address")

// TriggerUpdate executes Registration Update Trigger (/1/0/8, Core
// Appendix E.2) on a device at a plain-CoAP address that has no
// registration here, typically one that was registered before this server
// restarted: the device sends an Update, is told 4.04 (Core §6.2.2), and
// registers again. Only devices that listen between uplinks (not queue
// mode) answer. DTLS devices are not reachable this way: their session is
// not known from an address.
func (s *Server) TriggerUpdate(ctx context.Context, addr netip.AddrPort) error {
	s.mu.Lock()
	eps := make([]*coap.Endpoint, 0, len(s.eps))
	for ep := range s.eps {
		eps = append(eps, ep)
	}
	s.mu.Unlock()
	// Only the plain transports can reach a bare address, and which those
	// are is not known here: ask all at once and take the first answer.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	peer := coap.Peer{Addr: addr}
	type result struct {
		resp *coap.Message
		err  error
	}
	results := make(chan result, len(eps))
	for _, ep := range eps {
		go func() {
			m := &coap.Message{Code: coap.POST}
			m.SetPath("/1/0/8")
			resp, err := ep.Do(ctx, peer, m)
			results <- result{resp, err}
		}()
	}
	err := fmt.Errorf("trigger update at %s: %w", addr, ErrNoRoute)
	for range eps {
		r := <-results
		switch {
		case r.err != nil:
			err = fmt.Errorf("trigger update at %s: %w", addr, r.err)
		case r.resp.Code != coap.Changed:
			return fmt.Errorf("trigger update at %s: %w", addr, &ResponseError{Code: r.resp.Code, Message: string(r.resp.Payload)})
		default:
			return nil
		}
	}
	return err
}
