package webui

import "sync"

// Broker is a ready implementation of Events: the appliance publishes
// registrations, values and operation changes into it, and every SSE client
// gets a copy. A subscriber whose buffer is full misses events (its page
// then catches up on the next one) so that a stalled browser never slows
// ingestion.
type Broker struct {
	mu     sync.Mutex
	subs   map[chan LiveEvent]struct{}
	buffer int
	drops  uint64
}

// NewBroker returns a broker whose subscribers buffer up to 256 events.
func NewBroker() *Broker { return &Broker{subs: make(map[chan LiveEvent]struct{}), buffer: 256} }

// Subscribe implements Events.
func (b *Broker) Subscribe() (<-chan LiveEvent, func()) {
	ch := make(chan LiveEvent, b.buffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
		})
	}
}

// Publish hands ev to every subscriber without blocking.
func (b *Broker) Publish(ev LiveEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			b.drops++
		}
	}
}

// Subscribers returns how many subscribers are connected (tests wait on it
// before publishing).
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
