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
	lockout time.Duration // the longest lock
	base    time.Duration // the first lock; each next one doubles, up to lockout
	keys    map[string]*attempts
}

type attempts struct {
	first  time.Time
	count  int
	locks  int       // locks so far, for the backoff
	locked time.Time // locked until
}

func newLimiter(max int, window, lockout time.Duration) *limiter {
	return &limiter{max: max, window: window, lockout: lockout, base: lockout, keys: make(map[string]*attempts)}
}

// withBackoff makes the first lock last base, each further one twice the
// last, up to the lockout: a mistyping user waits a minute, a guesser
// ever longer.
func (l *limiter) withBackoff(base time.Duration) *limiter {
	if base > 0 && base < l.lockout {
		l.base = base
	}
	return l
}

// lockFor is the length of a key's next lock.
func (l *limiter) lockFor(locks int) time.Duration {
	d := l.base
	for i := 0; i < locks && d < l.lockout; i++ {
		d *= 2
	}
	return min(d, l.lockout)
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
	if a == nil {
		a = &attempts{first: now}
		l.keys[key] = a
	}
	if now.Sub(a.first) > l.window {
		a.first, a.count = now, 0
	}
	a.count++
	if a.count >= l.max {
		a.locked = now.Add(l.lockFor(a.locks))
		a.locks++
		a.count = 0
		a.first = now
		return true
	}
	return false
}

// lockedUntil is when key's lock ends (zero: not locked).
func (l *limiter) lockedUntil(key string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.keys[key]; a != nil && now.Before(a.locked) {
		return a.locked
	}
	return time.Time{}
}

// locked lists the keys with prefix that are locked now, with the end of
// their lock.
func (l *limiter) locked(prefix string, now time.Time) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for k, a := range l.keys {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && now.Before(a.locked) {
			out[k] = a.locked
		}
	}
	return out
}

// forget drops every key with prefix (an admin unlocking a user).
func (l *limiter) forget(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.keys {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(l.keys, k)
			n++
		}
	}
	return n
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
