package webui

import (
	"context"

	"github.com/flownexus/flownexus/store"
)

// maxLiveLogLines bounds the lines one "log" event carries; the rest of a
// large commit is counted in Skipped (the page can page back for them).
const maxLiveLogLines = 200

// FollowLogs publishes committed device log lines as "log" events until
// ctx ends: one event per device and commit, so a flood costs a few events
// a second, not one per line.
func (b *Broker) FollowLogs(ctx context.Context, db *store.DB) {
	ch, cancel := db.SubscribeLogs(256)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case lines, ok := <-ch:
			if !ok {
				return
			}
			if len(lines) == 0 {
				continue
			}
			ev := LiveEvent{Kind: "log", Endpoint: lines[0].Endpoint, Time: lines[len(lines)-1].Time}
			if n := len(lines); n > maxLiveLogLines {
				ev.Skipped = n - maxLiveLogLines
				lines = lines[n-maxLiveLogLines:]
			}
			ev.Logs = make([]logJSON, len(lines))
			for i, l := range lines {
				ev.Logs[i] = toLogJSON(l, false)
			}
			b.Publish(ev)
		}
	}
}
