package simulation

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// recorder is the server's event handler in tests: it forwards what
// happens on channels.
type recorder struct {
	server.NopHandler
	mu         sync.Mutex
	registered chan *server.Registration
	updated    chan *server.Registration
	deregs     chan string
	notes      chan []lwm2m.Record
	sent       chan []lwm2m.Record
}

func newRecorder() *recorder {
	return &recorder{
		registered: make(chan *server.Registration, 4096),
		updated:    make(chan *server.Registration, 4096),
		deregs:     make(chan string, 4096),
		notes:      make(chan []lwm2m.Record, 4096),
		sent:       make(chan []lwm2m.Record, 4096),
	}
}

func (r *recorder) Registered(_ context.Context, reg *server.Registration) error {
	select {
	case r.registered <- reg:
	default:
	}
	return nil
}

func (r *recorder) Updated(_ context.Context, reg *server.Registration) {
	select {
	case r.updated <- reg:
	default:
	}
}

func (r *recorder) Deregistered(_ context.Context, reg *server.Registration, _ server.DeregisterReason) {
	select {
	case r.deregs <- reg.Endpoint:
	default:
	}
}

func (r *recorder) Notified(_ context.Context, _ *server.Registration, _ *server.Observation, recs []lwm2m.Record) error {
	select {
	case r.notes <- recs:
	default:
	}
	return nil
}

func (r *recorder) Sent(_ context.Context, _ *server.Registration, recs []lwm2m.Record) error {
	select {
	case r.sent <- recs:
	default:
	}
	return nil
}

// fastCoAP shortens retransmission timers for loopback tests.
func fastCoAP() coap.Config {
	cc := coap.DefaultConfig()
	cc.ACKTimeout = 300 * time.Millisecond
	cc.MaxRetransmit = 2
	cc.RequestTimeout = 5 * time.Second
	cc.Workers = 1
	cc.QueueLength = 16
	cc.PeerRate = 0
	return cc
}

// startServer runs lwm2m/server on a loopback port and returns its address.
func startServer(t testing.TB, h server.Handler, awake time.Duration) (*server.Server, string) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.RequestTimeout = 5 * time.Second
	cfg.AwakeWindow = awake
	sc := coap.DefaultConfig()
	sc.ACKTimeout = 300 * time.Millisecond
	sc.MaxRetransmit = 2
	sc.PeerRate = 0
	cfg.CoAP = sc
	s := server.New(cfg, server.WithHandler(h))
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, tr) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, "coap://" + tr.LocalAddr().String()
}

func waitFor[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
