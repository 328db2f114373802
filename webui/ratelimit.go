package webui

import (
	"sync"
	"time"
)

// limiter counts failed logins per key (a user name, a client address) and
// locks a key out for a while once it fails too often. It is in memory:
// a restart forgives, which an attacker cannot trigger from outside.
type limiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	lockout time.Duration
	keys    map[string]*attempts
}

type attempts struct {
	first  time.Time
	count  int
	locked time.Time // locked until
}

func newLimiter(max int, window, lockout time.Duration) *limiter {
	return &limiter{max: max, window: window, lockout: lockout, keys: make(map[string]*attempts)}
}

// blocked returns how long key must still wait, or 0.
func (l *limiter) blocked(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.keys[key]
	if a == nil || !now.Before(a.locked) {
		return 0
	}
	return a.locked.Sub(now)
}

// fail records a failure and reports whether key is now locked.
func (l *limiter) fail(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.keys) > 100000 {
		l.sweep(now)
	}
	a := l.keys[key]
	if a == nil || now.Sub(a.first) > l.window {
		a = &attempts{first: now}
		l.keys[key] = a
	}
	a.count++
	if a.count >= l.max {
		a.locked = now.Add(l.lockout)
		a.count = 0
		a.first = now
		return true
	}
	return false
}

// succeed forgets a key's failures.
func (l *limiter) succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// sweep drops stale entries so that a spray of names cannot grow the map
// without bound.
func (l *limiter) sweep(now time.Time) {
	for k, a := range l.keys {
		if now.Sub(a.first) > l.window && !now.Before(a.locked) {
			delete(l.keys, k)
		}
	}
}
