package coap

import (
	"log/slog"
	"time"
)

// Config holds the transmission parameters (RFC 7252 §4.8) and the limits
// of an Endpoint. Start from DefaultConfig; tests shorten the timers.
type Config struct {
	// ACKTimeout, ACKRandomFactor and MaxRetransmit are RFC 7252 §4.8's
	// ACK_TIMEOUT (2 s), ACK_RANDOM_FACTOR (1.5) and MAX_RETRANSMIT (4).
	ACKTimeout      time.Duration
	ACKRandomFactor float64
	MaxRetransmit   int
	// NStart is the number of outstanding interactions per peer (§4.7,
	// NSTART, default 1). Further requests to the peer wait their turn.
	NStart int
	// ExchangeLifetime is how long a message id is remembered for
	// deduplication (§4.8.2, EXCHANGE_LIFETIME, 247 s with the defaults).
	// Zero derives it from the parameters above.
	ExchangeLifetime time.Duration
	// ProcessingDelay is how long a confirmable request may be processed
	// before an empty ACK is sent and the response goes separately (§5.2.2).
	// Zero disables the empty ACK (the response is always piggybacked).
	ProcessingDelay time.Duration
	// RequestTimeout bounds outgoing requests whose context has no
	// deadline, so that every request to a device ends.
	RequestTimeout time.Duration
	// MaxMessageSize is the largest datagram accepted or sent (§4.6).
	MaxMessageSize int
	// BlockSize is the preferred block size for block-wise transfers
	// (RFC 7959), a power of two from 16 to 1024.
	BlockSize int
	// MaxBodySize bounds a body reassembled from blocks, in both directions.
	MaxBodySize int
	// MaxDedup bounds the remembered message ids (§4.5). Each is kept
	// EXCHANGE_LIFETIME; a flood from many source addresses would keep
	// millions, so past this the oldest are forgotten early (counted as
	// DedupEvicted). About 200 bytes each.
	MaxDedup int
	// MaxBlockTransfers bounds concurrently reassembled Block1 bodies.
	MaxBlockTransfers int
	// Workers is the number of handler goroutines. A peer's requests and
	// notifications are handled one at a time, in arrival order; different
	// peers in parallel, taking turns under overload (round-robin across
	// peers, so no peer is served more than another for where its address
	// hashes to).
	Workers int
	// QueueLength bounds the work queued for the workers, per worker (the
	// endpoint queues at most Workers × QueueLength jobs). When it is
	// full, confirmable requests get 5.03 and other messages are dropped
	// (counted as Overloaded). The default, 8 × 2048 jobs, is about 1.6 s
	// of 10,000 notifications a second: enough to ride out a pause of the
	// workers (a store compaction or checkpoint taking the core) without
	// leaving a device unacknowledged. The queue allocates only what it
	// holds.
	QueueLength int
	// PeerQueueLength bounds the jobs queued for one peer, so that one
	// peer cannot fill the endpoint's queue; over it, the same 5.03.
	PeerQueueLength int
	// MaxWaiting bounds the outgoing requests waiting for one of a peer's
	// NSTART slots. A request over it fails at once with ErrPeerBusy
	// (counted as PeerBusy) instead of waiting: a device that does not
	// answer must not collect an unbounded queue of callers.
	MaxWaiting int
	// PeerRate and PeerBurst rate-limit datagrams per peer (a token bucket)
	// so that a flood from one peer cannot starve the others. PeerRate 0
	// disables the limit.
	PeerRate  float64
	PeerBurst int
	// MaxPeers bounds the per-peer state; datagrams from further new
	// peers are dropped (counted as rate-limited) until idle ones are
	// forgotten, so spoofed source addresses cannot exhaust memory.
	MaxPeers int
	// AmplificationFactor bounds what is sent to a peer whose address is
	// not verified (RFC 7252 §11.3): a response is at most this many times
	// the size of its request — a large body goes in smaller Block2
	// blocks, a diagnostic is cut. A peer is verified once it has answered a
	// message sent to it (its ACK, RST or response proves it receives at
	// that address), or when the application calls Verify; DTLS peers
	// always are (the handshake's cookie exchange did it). Negative turns
	// the limit off.
	AmplificationFactor int
	// PeerIdle is how long per-peer state (rate limit, message id counter)
	// is kept after the last datagram.
	PeerIdle time.Duration
}

// DefaultConfig returns the RFC 7252 §4.8 defaults and conservative limits.
func DefaultConfig() Config {
	return Config{
		ACKTimeout:        2 * time.Second,
		ACKRandomFactor:   1.5,
		MaxRetransmit:     4,
		NStart:            1,
		ProcessingDelay:   time.Second,
		RequestTimeout:    93 * time.Second,
		MaxMessageSize:    1152,
		BlockSize:         1024,
		MaxBodySize:       4 << 20,
		MaxBlockTransfers: 4096,
		MaxDedup:          1 << 19,
		Workers:           8,
		QueueLength:       2048,
		PeerQueueLength:   64,
		MaxWaiting:        64,
		PeerRate:          1000,
		PeerBurst:         2000,
		MaxPeers:          200000,
		PeerIdle:          5 * time.Minute,

		AmplificationFactor: 3,
	}
}

// exchangeLifetime is EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 *
// MAX_LATENCY + PROCESSING_DELAY (RFC 7252 §4.8.2), MAX_LATENCY being 100 s.
func (c Config) exchangeLifetime() time.Duration {
	if c.ExchangeLifetime > 0 {
		return c.ExchangeLifetime
	}
	return c.maxTransmitSpan() + 200*time.Second + c.ACKTimeout
}

// maxTransmitSpan is ACK_TIMEOUT * (2^MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR.
func (c Config) maxTransmitSpan() time.Duration {
	return time.Duration(float64(c.ACKTimeout) * float64(int(1)<<c.MaxRetransmit-1) * c.ACKRandomFactor)
}

func (c Config) normalized() Config {
	d := DefaultConfig()
	if c.ACKTimeout <= 0 {
		c.ACKTimeout = d.ACKTimeout
	}
	if c.ACKRandomFactor < 1 {
		c.ACKRandomFactor = d.ACKRandomFactor
	}
	if c.MaxRetransmit < 0 {
		c.MaxRetransmit = 0
	}
	if c.MaxRetransmit > 10 {
		c.MaxRetransmit = 10
	}
	if c.NStart <= 0 {
		c.NStart = d.NStart
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxMessageSize < 64 {
		c.MaxMessageSize = d.MaxMessageSize
	}
	if c.BlockSize < 16 || c.BlockSize > 1024 {
		c.BlockSize = d.BlockSize
	}
	c.BlockSize = 1 << (SZXFor(c.BlockSize) + 4)
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = d.MaxBodySize
	}
	if c.MaxDedup <= 0 {
		c.MaxDedup = d.MaxDedup
	}
	if c.MaxBlockTransfers <= 0 {
		c.MaxBlockTransfers = d.MaxBlockTransfers
	}
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.QueueLength <= 0 {
		c.QueueLength = d.QueueLength
	}
	if c.PeerQueueLength <= 0 {
		c.PeerQueueLength = d.PeerQueueLength
	}
	if c.MaxWaiting <= 0 {
		c.MaxWaiting = d.MaxWaiting
	}
	if c.PeerBurst <= 0 {
		c.PeerBurst = d.PeerBurst
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = d.MaxPeers
	}
	if c.AmplificationFactor == 0 {
		c.AmplificationFactor = d.AmplificationFactor
	}
	if c.PeerIdle <= 0 {
		c.PeerIdle = d.PeerIdle
	}
	return c
}

// EndpointOption configures an Endpoint.
type EndpointOption func(*Endpoint)

// WithLogger sets the logger (scoped with component=coap).
func WithLogger(l *slog.Logger) EndpointOption {
	return func(e *Endpoint) {
		if l != nil {
			e.log = l.With("component", "coap")
		}
	}
}

// WithResetHandler sets a function called when a peer answers a message
// this endpoint sent without a waiting caller (a NON notification, a
// separate response) with RST. For an observe server, that is the
// observer cancelling reactively (RFC 7641 §3.6): token is the
// observation's token. It runs on the read loop: it must not block.
func WithResetHandler(f func(peer Peer, token []byte)) EndpointOption {
	return func(e *Endpoint) { e.onReset = f }
}
