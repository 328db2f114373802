package store

import (
	"sync"
	"time"
)

// NewSteadyClock returns a wall clock that never runs backwards: each
// reading is the wall time, or — when the wall clock was set back — the
// previous reading plus the time elapsed since on the monotonic clock.
// A forward step is taken as it comes (a correction, or a real jump of
// time), a backward step is absorbed, so that readings received later
// are never stamped earlier and telemetry keeps its order; the stamps
// rejoin the wall clock when it catches up, or at the next start.
//
// wall is the wall clock (time.Now); mono is the time elapsed on a
// monotonic clock (time.Since of a fixed start). The DB's default clock
// is NewSteadyClock(time.Now, time.Since(start)).
func NewSteadyClock(wall func() time.Time, mono func() time.Duration) func() time.Time {
	c := &steadyClock{wall: wall, mono: mono}
	return c.now
}

func defaultClock() func() time.Time {
	start := time.Now()
	return NewSteadyClock(time.Now, func() time.Duration { return time.Since(start) })
}

type steadyClock struct {
	wall     func() time.Time
	mono     func() time.Duration
	mu       sync.Mutex
	started  bool
	last     time.Time
	lastMono time.Duration
}

func (c *steadyClock) now() time.Time {
	w, m := c.wall().Round(0), c.mono() // Round(0): wall reading only
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		if floor := c.last.Add(m - c.lastMono); w.Before(floor) {
			w = floor
		}
	}
	c.started, c.last, c.lastMono = true, w, m
	return w
}

// Now is the DB's clock: the reception time it gives readings without
// one (Batch.Received zero) and the time retention measures from. Callers
// stamping readings themselves should use it too, so that a clock set
// back does not reorder telemetry.
func (d *DB) Now() time.Time { return d.now() }
