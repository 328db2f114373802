package appliance

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Lines that devices cause one at a time: a fleet that registers at once
// (after a site's power cut) or a peer that keeps failing its handshake
// writes them thousands a second. journald then applies its own limit to
// the whole service (by default 10,000 lines per 30 s) and drops lines of
// every kind, warnings included, and an SD card takes every byte. So each
// of these messages may write a burst of ten seconds' worth of lines, then
// LogConfig.DeviceLinesPerSecond a second; what is left out is counted and
// reported in one line per message every logSampleEvery, when some were
// (issue 15: every resource bounded under a flood). The budget is per
// message, not per device. At level debug every line is written.
var logSampled = []string{
	"registered",
	"deregistered",
	"registration refused",
	"registration failed",
	"dtls handshake failed",
	"bootstrap refused",
	"bootstrap failed",
	"update from a deleted endpoint ignored; it must register again",
	"firmware version read failed",
	"model number read failed",
	"auto-observe failed",
	"auto composite observe failed",
}

// logSampleEvery is how often the counts of left-out lines are written.
const logSampleEvery = 10 * time.Second

// logSampler is a slog.Handler that passes every record to inner except
// those of logSampled beyond their budget.
type logSampler struct {
	inner slog.Handler
	st    *sampleState // shared by the handlers of WithAttrs and WithGroup
}

type sampleState struct {
	root    slog.Handler // the handler the counts are written to
	now     func() time.Time
	rate    float64 // lines a second per message
	burst   float64
	leftOut atomic.Uint64 // lines left out since the start

	kinds    map[string]*sampleKind // by message; empty when the sampler is off
	mu       sync.Mutex             // guards the kinds' fields and reported
	reported time.Time              // the last report, or the start
}

type sampleKind struct {
	tokens  float64
	last    time.Time
	dropped uint64
	level   slog.Level // the highest level left out since the last report
}

// newLogSampler wraps inner; perSecond <= 0, or inner enabled at level
// debug, leaves every line in (the sampler then only passes records on).
func newLogSampler(inner slog.Handler, perSecond int, now func() time.Time) *logSampler {
	st := &sampleState{root: inner, now: now, kinds: map[string]*sampleKind{}, reported: now()}
	if perSecond > 0 && !inner.Enabled(context.Background(), slog.LevelDebug) {
		st.rate = float64(perSecond)
		st.burst = st.rate * logSampleEvery.Seconds()
		for _, m := range logSampled {
			st.kinds[m] = &sampleKind{tokens: st.burst}
		}
	}
	return &logSampler{inner: inner, st: st}
}

func (h *logSampler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *logSampler) Handle(ctx context.Context, r slog.Record) error {
	if !h.st.admit(r.Message, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *logSampler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSampler{inner: h.inner.WithAttrs(as), st: h.st}
}

func (h *logSampler) WithGroup(name string) slog.Handler {
	return &logSampler{inner: h.inner.WithGroup(name), st: h.st}
}

// admit takes a token of the message's bucket, or counts the line as left
// out; messages outside logSampled always pass.
func (st *sampleState) admit(msg string, level slog.Level) bool {
	k := st.kinds[msg] // the map is not written after newLogSampler
	if k == nil {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	if !k.last.IsZero() {
		k.tokens = min(st.burst, k.tokens+now.Sub(k.last).Seconds()*st.rate)
	}
	k.last = now
	if k.tokens >= 1 {
		k.tokens--
		return true
	}
	if k.dropped == 0 || level > k.level {
		k.level = level
	}
	k.dropped++
	st.leftOut.Add(1)
	return false
}

// report writes one line per message with lines left out since the last
// report, at the highest level among them; nothing when none was.
func (st *sampleState) report(ctx context.Context) {
	type count struct {
		msg   string
		n     uint64
		level slog.Level
	}
	var out []count
	st.mu.Lock()
	now := st.now()
	within := now.Sub(st.reported).Round(time.Second)
	st.reported = now
	for _, m := range logSampled {
		if k := st.kinds[m]; k != nil && k.dropped > 0 {
			out = append(out, count{m, k.dropped, k.level})
			k.dropped = 0
		}
	}
	st.mu.Unlock()
	for _, c := range out {
		if !st.root.Enabled(ctx, c.level) {
			continue
		}
		r := slog.NewRecord(now, c.level, "log lines left out", 0)
		r.AddAttrs(slog.String("component", "log"), slog.String("message", c.msg),
			slog.Uint64("left_out", c.n), slog.Duration("within", within))
		_ = st.root.Handle(ctx, r)
	}
}

// LeftOut counts the lines left out since the start (/metrics).
func (h *logSampler) LeftOut() uint64 { return h.st.leftOut.Load() }

// Run reports the left-out lines every logSampleEvery until ctx ends;
// Flush reports the rest once every component has stopped.
func (h *logSampler) Run(ctx context.Context) error {
	t := time.NewTicker(logSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.st.report(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}

// Flush reports the lines left out since the last report.
func (h *logSampler) Flush() { h.st.report(context.Background()) }
