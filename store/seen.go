package store

import (
	"context"
	"time"
)

// Seen records that endpoint was heard from at t with nothing to store,
// such as an LwM2M Update (Core §6.2.2) that changes nothing and that the
// caller does not keep as an event (issue 15). The endpoint's last_seen
// follows within SeenEvery, as it does for readings, and subscribers get a
// Committed of kind EventUpdated with EventID 0: nothing was stored. A
// Seen for an endpoint the store does not hold writes nothing. Like
// RecordRegistration, it waits for room in the ingestion queue until ctx
// ends.
func (d *DB) Seen(ctx context.Context, endpoint string, t time.Time) error {
	return d.IngestWait(ctx, Batch{Endpoint: endpoint, Received: t, Seen: true})
}

// received is when the batch's payload arrived: its Received, or when the
// queue accepted it.
func (b *batch) received() time.Time {
	if b.Received.IsZero() {
		return b.accepted
	}
	return b.Received
}

// seenNote is what subscribers hear of a Seen batch.
func (b *batch) seenNote() Committed {
	return Committed{Endpoint: b.Endpoint, Received: b.received(), Event: EventUpdated}
}

// seenDue reports whether a Seen batch makes its endpoint's last_seen
// stale enough to write (seenStale): only then does it need a
// transaction.
func (d *DB) seenDue(b *batch) bool {
	ep, ok := d.tel.endpointID(b.Endpoint)
	return ok && d.tel.seenStale(ep, b.received().UnixMilli())
}

// seenStale reports whether last_seen of endpoint ep, written last at
// seenWritten, is to be written for a message at t (ms): SeenEvery or
// more later. Only the writer calls it, as it alone writes seenWritten.
func (c *telemetryCache) seenStale(ep, t int64) bool {
	return t-c.seenWritten[ep] >= SeenEvery.Milliseconds()
}

// settleSeen finishes the Seen batches of a group that needed no
// transaction: they count as committed, and subscribers hear of them.
func (d *DB) settleSeen(bs []*batch) {
	var n uint64
	for _, b := range bs {
		if b.done != nil || !b.Seen {
			continue
		}
		n++
		if d.subs.any() {
			d.subs.publish(b.seenNote(), &d.stats.subDrops)
		}
	}
	d.stats.committed.Add(n)
}
