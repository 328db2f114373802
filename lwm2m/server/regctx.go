package server

import (
	"context"
	"errors"
	"fmt"
)

// Work done for a registration ends with it. Every request the server
// sends is bound to the registration it was addressed to: when a new
// Register replaces that registration (the device has forgotten its
// observations and whatever was asked of it, Core §6.2.1), or it is
// de-registered, expires or is evicted, the request is cancelled — in
// flight or still waiting for the device's NSTART slot (RFC 7252 §4.7) —
// and fails with ErrRegistrationEnded. A device that re-registers in a
// loop therefore cannot pile up follow-up requests (issue 15: 47,045
// goroutines waiting on 32 peers).

// regIDKey is the context key of ForRegistration.
type regIDKey struct{}

// ForRegistration returns a context whose requests go only to the
// registration with this id: a request made with it after the device
// registered again fails with ErrRegistrationEnded instead of reaching the
// new registration. Work started for one registration (the appliance's
// auto-observations after a Register) uses it.
func ForRegistration(ctx context.Context, registrationID string) context.Context {
	return context.WithValue(ctx, regIDKey{}, registrationID)
}

// boundTo reports the registration id ctx is bound to, if any.
func boundTo(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(regIDKey{}).(string)
	return id, ok
}

// contextLocked returns the registration's context, made on first use and
// cancelled when the registration ends; s.mu is held.
func (r *registration) contextLocked() context.Context {
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancelCause(context.Background())
		if r.finished {
			r.cancel(ErrRegistrationEnded)
		}
	}
	return r.ctx
}

// endLocked cancels the work bound to the registration; s.mu is held.
func (r *registration) endLocked() {
	if r.cancel != nil {
		r.cancel(ErrRegistrationEnded)
	}
}

// bind derives from ctx a context that also ends when reg ends.
func (s *Server) bind(ctx context.Context, reg *registration) (context.Context, context.CancelFunc) {
	s.mu.Lock()
	rctx := reg.contextLocked()
	s.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(rctx, func() { cancel(context.Cause(rctx)) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// endedErr reports a request cancelled because its registration ended.
func endedErr(ctx context.Context, endpoint string) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, ErrRegistrationEnded) {
		return fmt.Errorf("server: %s: %w", endpoint, c)
	}
	return nil
}

// registering records that the Register with this id is being handled.
func (s *Server) registering(id string) {
	s.mu.Lock()
	s.pending[id] = make(chan struct{})
	s.mu.Unlock()
}

// settled ends registering: the Register was refused, or stored and
// answered.
func (s *Server) settled(id string) {
	s.mu.Lock()
	if ch := s.pending[id]; ch != nil {
		close(ch)
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

// AwaitRegistration waits until the registration with this id is the
// endpoint's current one and its Register is settled: stored, saved by
// the Persister and answered. Handler.Registered runs before the server
// stores the registration, so work it starts for the device waits here
// first. It
// fails with ErrRegistrationEnded when the Register was refused or the
// registration has already ended (replaced, de-registered, expired,
// evicted), and with ctx's error when ctx ends first.
func (s *Server) AwaitRegistration(ctx context.Context, endpoint, id string) error {
	for {
		s.mu.Lock()
		ch := s.pending[id]
		if reg := s.byID[id]; reg != nil && !reg.finished && ch == nil {
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if ch == nil {
			return fmt.Errorf("server: %s: registration %s: %w", endpoint, id, ErrRegistrationEnded)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("server: %s: registration %s: %w", endpoint, id, ctx.Err())
		}
	}
}
