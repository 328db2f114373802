package interop

import (
	"context"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// needTool returns the first of names found in PATH. A missing tool skips
// the test with a loud message, or fails it under CI=true, where it must
// have been installed.
func needTool(t *testing.T, why string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	missing(t, "none of %v is installed (%s)", names, why)
	return ""
}

// missing skips loudly, or fails under CI.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("INTEROP TOOL MISSING under CI: "+format, args...)
	}
	t.Skipf("!!! INTEROP TEST SKIPPED: "+format+" — install it to run this test", args...)
}

// recorder is the server's handler: it forwards events on channels. A
// send never blocks: a test that does not read a channel (updates from a
// client that keeps updating, say) must not stall the server's workers in
// a callback once its buffer is full, so such an event is dropped and
// counted instead. A test waiting for an event reads while it waits.
type recorder struct {
	registered chan *server.Registration
	updated    chan *server.Registration
	deregs     chan *server.Registration
	notes      chan []lwm2m.Record
	dropped    atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{
		registered: make(chan *server.Registration, 1024),
		updated:    make(chan *server.Registration, 1024),
		deregs:     make(chan *server.Registration, 1024),
		notes:      make(chan []lwm2m.Record, 1024),
	}
}

// offer sends v on ch, or counts it as dropped when ch is full.
func offer[T any](r *recorder, ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
		r.dropped.Add(1)
	}
}

func (r *recorder) Registered(_ context.Context, reg *server.Registration) error {
	offer(r, r.registered, reg)
	return nil
}
func (r *recorder) Updated(_ context.Context, reg *server.Registration) { offer(r, r.updated, reg) }
func (r *recorder) Deregistered(_ context.Context, reg *server.Registration, _ server.DeregisterReason) {
	offer(r, r.deregs, reg)
}
func (r *recorder) Notified(_ context.Context, _ *server.Registration, _ *server.Observation, recs []lwm2m.Record) error {
	offer(r, r.notes, recs)
	return nil
}
func (r *recorder) Sent(context.Context, *server.Registration, []lwm2m.Record) error { return nil }

// startServer runs lwm2m/server on 127.0.0.1:0 and returns it with its
// port; setup, when given, runs before Serve (extra handlers).
func startServer(t *testing.T, h server.Handler, setup ...func(*server.Server)) (*server.Server, int) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.RequestTimeout = 10 * time.Second
	s := server.New(cfg, server.WithHandler(h))
	for _, f := range setup {
		f(s)
	}
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, tr) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, tr.LocalAddr().(*net.UDPAddr).Port
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute): // a bound against hangs
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
