package coap

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Endpoint is one CoAP endpoint (RFC 7252 §1.2) over one Transport, usable
// as a server (incoming requests go to a Handler), as a client (Do, Observe)
// and as an observe server (Notify), all at once — an LwM2M device is a
// CoAP server for the LwM2M server's requests and a client for its own
// registration.
//
// One goroutine reads the transport; a fixed pool of workers runs handlers.
// Per-peer state lives in maps; retransmissions use timers; nothing runs per
// peer. Create it with NewEndpoint and start it with Run.
type Endpoint struct {
	t       Transport
	h       Handler
	cfg     Config
	log     *slog.Logger
	onReset func(Peer, []byte)

	ctx    context.Context // set by Run; handlers get it
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	peers     map[PeerKey]*peerState
	out       map[midKey]*exchange // our CON/NON messages awaiting ACK or RST
	tokens    map[string]*exchange // our requests awaiting a response
	obs       map[string]*Observation
	dedup     dedupCache
	block1    map[block1Key]*block1State
	rng       *rand.Rand
	lastSweep int64
	waiting   int // outgoing requests waiting for an NSTART slot
	queue     *fairQueue
	workers   sync.WaitGroup

	stats counters
}

// midKey identifies a message by peer and message id.
type midKey struct {
	peer PeerKey
	mid  uint16
}

// NewEndpoint returns an endpoint on t. h serves incoming requests; it may
// be nil for a pure client (requests then get 4.04). Requests and
// notifications can be sent at once; responses are only received once Run
// is running.
func NewEndpoint(t Transport, h Handler, cfg Config, opts ...EndpointOption) *Endpoint {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	e := &Endpoint{
		t:      t,
		h:      h,
		cfg:    cfg.normalized(),
		log:    slog.New(slog.DiscardHandler),
		peers:  make(map[PeerKey]*peerState),
		out:    make(map[midKey]*exchange),
		tokens: make(map[string]*exchange),
		obs:    make(map[string]*Observation),
		block1: make(map[block1Key]*block1State),
		rng:    rand.New(rand.NewChaCha8(seed)),
	}
	e.dedup = newDedupCache(e.cfg.MaxDedup)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(e)
	}
	if e.h == nil {
		e.h = HandlerFunc(func(context.Context, *Request) *Response { return ErrorResponse(NotFound, "no handler") })
	}
	e.queue = newFairQueue(e.cfg.Workers*e.cfg.QueueLength, e.cfg.PeerQueueLength)
	return e
}

// Config returns the endpoint's effective configuration.
func (e *Endpoint) Config() Config { return e.cfg }

// Transport returns the transport the endpoint runs on.
func (e *Endpoint) Transport() Transport { return e.t }

// LocalAddr is the transport's local address.
func (e *Endpoint) LocalAddr() net.Addr { return e.t.LocalAddr() }

// Run reads and dispatches datagrams until ctx ends or the transport fails.
// It closes the transport when it returns (that is what unblocks the read),
// fails every pending exchange with ErrClosed and waits for its workers. It
// returns nil when stopped through ctx.
func (e *Endpoint) Run(ctx context.Context) error {
	for range e.cfg.Workers {
		e.workers.Add(1)
		go e.work()
	}
	stop := context.AfterFunc(ctx, func() { _ = e.t.Close() })
	janitor := time.NewTicker(time.Second)
	defer janitor.Stop()
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		for {
			select {
			case <-janitor.C:
				e.sweep(time.Now())
			case <-e.ctx.Done():
				return
			}
		}
	}()

	err := e.readLoop()
	// Close here as well: a transport's ReadFrom may fail as soon as a
	// Close begins, while that Close still runs (a DTLS server saving its
	// sessions and logging it), and Run must not return before it ends.
	// Close is idempotent and waits for one in progress.
	stop()
	_ = e.t.Close()
	e.shutdown()
	<-janitorDone
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops a running endpoint (the same as cancelling Run's context).
func (e *Endpoint) Close() error { return e.t.Close() }

func (e *Endpoint) readLoop() error {
	// One byte over the limit is enough to tell an oversized datagram
	// (answered 4.13) from one that fits; a bigger buffer only costs memory
	// on every endpoint, and a simulator runs thousands of them.
	buf := make([]byte, e.cfg.MaxMessageSize+1)
	for {
		n, from, err := e.t.ReadFrom(buf)
		if err != nil {
			return err
		}
		e.stats.received.Add(1)
		now := time.Now()
		if !e.admit(from, now) {
			e.stats.rateLimited.Add(1)
			continue
		}
		if n > e.cfg.MaxMessageSize {
			e.tooLarge(buf[:n], from)
			continue
		}
		// The buffer is reused; the message outlives this iteration.
		data := make([]byte, n)
		copy(data, buf[:n])
		m := new(Message)
		if err := m.UnmarshalBinary(data); err != nil {
			e.stats.malformed.Add(1)
			e.rejectMalformed(data, from)
			continue
		}
		e.receive(m, from, now)
	}
}

// shutdown fails what is pending and stops the workers.
func (e *Endpoint) shutdown() {
	e.mu.Lock()
	e.closed = true
	var pending []*exchange
	for _, x := range e.out {
		pending = append(pending, x)
	}
	for _, x := range e.tokens {
		pending = append(pending, x)
	}
	clear(e.out)
	clear(e.tokens)
	for _, o := range e.obs {
		o.active = false
	}
	clear(e.obs)
	for _, p := range e.peers {
		for _, w := range p.waiters {
			close(w)
		}
		p.waiters = nil
	}
	e.waiting = 0
	e.mu.Unlock()
	for _, x := range pending {
		e.finish(x, nil, ErrClosed)
	}
	e.cancel()
	e.queue.close()
	e.workers.Wait()
}

// tooLarge answers an oversized confirmable request with 4.13 and a Size1
// telling the largest acceptable message (RFC 7959 §2.9.3).
func (e *Endpoint) tooLarge(data []byte, from Peer) {
	e.stats.malformed.Add(1)
	if len(data) < 4 || data[0]>>6 != 1 || Type(data[0]>>4&3) != Confirmable || !Code(data[1]).IsRequest() {
		return
	}
	tkl := int(data[0] & 0x0f)
	if tkl > MaxTokenLength || len(data) < 4+tkl {
		return
	}
	r := &Message{Type: Acknowledgement, Code: RequestEntityTooLarge, MessageID: binary.BigEndian.Uint16(data[2:4]), Token: data[4 : 4+tkl]}
	r.SetUint(Size1, uint32(e.cfg.BlockSize))
	r.Payload = []byte("message too large; use Block1")
	e.send(r, from)
}

// rejectMalformed answers an undecodable confirmable message with RST when
// its header is readable (RFC 7252 §4.2 "rejecting a message"); anything
// else is dropped silently.
func (e *Endpoint) rejectMalformed(data []byte, from Peer) {
	if len(data) < 4 || data[0]>>6 != 1 || Type(data[0]>>4&3) != Confirmable {
		return
	}
	e.send(&Message{Type: Reset, MessageID: binary.BigEndian.Uint16(data[2:4])}, from)
}

// send encodes and writes one message.
func (e *Endpoint) send(m *Message, to Peer) []byte {
	b, err := m.Marshal()
	if err != nil {
		e.log.Warn("encode", "peer", to.Addr, "err", err)
		return nil
	}
	e.write(b, to)
	return b
}

func (e *Endpoint) write(b []byte, to Peer) {
	// Counted before the write, so that whoever reads the datagram also
	// sees it counted (Stats never trails the wire); taken back on error.
	e.stats.sent.Add(1)
	if err := e.t.WriteTo(b, to); err != nil {
		e.stats.sent.Add(^uint64(0))
		e.stats.writeErrors.Add(1)
		e.log.Debug("write", "peer", to.Addr, "err", err)
	}
}

// newToken returns 8 random bytes (RFC 7252 §5.3.1: unguessable tokens
// protect against off-path spoofed responses).
func (e *Endpoint) newToken() []byte {
	e.mu.Lock()
	v := e.rng.Uint64()
	e.mu.Unlock()
	t := make([]byte, 8)
	binary.BigEndian.PutUint64(t, v)
	return t
}

// receive classifies a decoded message (RFC 7252 §4, §5).
func (e *Endpoint) receive(m *Message, from Peer, now time.Time) {
	switch {
	case m.Type == Acknowledgement || m.Type == Reset:
		e.receiveAckRst(m, from)
	case m.Code == Empty:
		// CoAP ping: a CON Empty is answered with RST (§4.3).
		if m.Type == Confirmable {
			e.send(&Message{Type: Reset, MessageID: m.MessageID}, from)
		}
	case m.Code.IsRequest():
		e.receiveRequest(m, from, now)
	case m.Code.IsResponse():
		e.receiveResponse(m, from, now)
	default:
		e.stats.malformed.Add(1)
	}
}

// job is one unit of worker work.
type job struct {
	peer  Peer
	msg   *Message
	entry dedupRef     // dedup entry of a CON/NON request or notification
	obs   *Observation // set for notifications
	stale bool         // a notification out of order (RFC 7641 §3.4)
	timer *time.Timer  // processing-delay timer of a CON request
	fn    func()       // generic work
}

// dispatch queues work for the workers; false when the peer's queue or
// the endpoint's is full (counted as overloaded).
func (e *Endpoint) dispatch(j job) bool {
	switch e.queue.push(j.peer.Key(), j) {
	case accepted:
		return true
	case refusedClosed:
		return false
	}
	e.stats.overloaded.Add(1)
	return false
}

// work runs queued jobs, a peer's one at a time, until the queue closes.
func (e *Endpoint) work() {
	defer e.workers.Done()
	for {
		j, p, ok := e.queue.pop()
		if !ok {
			return
		}
		switch {
		case j.fn != nil:
			j.fn()
		case j.obs != nil:
			e.deliverNotification(j)
		default:
			e.serve(j)
		}
		e.queue.done(p)
	}
}
