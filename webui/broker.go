package webui

import "sync"

// Broker is a ready implementation of Events: the appliance publishes
// registrations, values and operation changes into it, and every SSE client
// gets a copy. A subscriber whose buffer is full misses events (its page
// then catches up on the next one) so that a stalled browser never slows
// ingestion.
//
// A source (FollowStore's) runs only while someone is subscribed: with no
// page open, the store publishes nothing and no goroutine wakes per
// commit (issue 15).
type Broker struct {
	mu     sync.Mutex
	subs   map[chan LiveEvent]struct{}
	buffer int
	drops  uint64
	// source starts a feed into the broker and returns what stops it;
	// stop is the running feed's, nil when none runs.
	source func() (stop func())
	stop   func()
}

// NewBroker returns a broker whose subscribers buffer up to 256 events.
func NewBroker() *Broker { return &Broker{subs: make(map[chan LiveEvent]struct{}), buffer: 256} }

// Subscribe implements Events.
func (b *Broker) Subscribe() (<-chan LiveEvent, func()) {
	ch := make(chan LiveEvent, b.buffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	// Started before Subscribe returns, so that what commits after it
	// reaches ch.
	b.startLocked()
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			if len(b.subs) == 0 {
				b.stopLocked()
			}
			b.mu.Unlock()
		})
	}
}

// follow makes src the broker's source (nil: none), started now if
// someone is subscribed and otherwise at the first Subscribe.
func (b *Broker) follow(src func() (stop func())) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
	b.source = src
	b.startLocked()
}

func (b *Broker) startLocked() {
	if b.stop == nil && b.source != nil && len(b.subs) > 0 {
		b.stop = b.source()
	}
}

// stopLocked stops the running source without waiting for it: a feed may
// be blocked in Publish on b.mu.
func (b *Broker) stopLocked() {
	if b.stop != nil {
		b.stop()
		b.stop = nil
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
