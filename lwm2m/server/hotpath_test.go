package server

import (
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestWakeChannelOnlyWhileWaiting: an uplink with no request queued for
// it makes no channel; queued requests share one, which the next uplink
// closes (issue 15: a channel was made for every notification).
func TestWakeChannelOnlyWhileWaiting(t *testing.T) {
	r := &registration{}
	r.wakeLocked()
	if r.wake != nil {
		t.Fatal("an uplink with nobody waiting made a channel")
	}
	ch := r.wakeChanLocked()
	if r.wakeChanLocked() != ch {
		t.Fatal("two queued requests wait on different channels")
	}
	r.wakeLocked()
	select {
	case <-ch:
	default:
		t.Fatal("the uplink did not wake the queued requests")
	}
	if r.wake != nil {
		t.Fatal("the closed channel is kept for the next waiters")
	}
}

// viewSink keeps the copies on the heap, as a handler would.
var viewSink *Registration

// TestViewAllocatesOnce: the copy a notification's handler gets is one
// allocation whatever the device announced; snapshot, for everything
// else, copies each object's instances.
func TestViewAllocatesOnce(t *testing.T) {
	r := &registration{snap: Registration{Endpoint: "ep", Objects: []lwm2m.RegisteredObject{
		{ID: 1, Instances: []uint16{0}}, {ID: 3, Instances: []uint16{0}}, {ID: 3303, Instances: []uint16{0, 1}},
	}, ContentFormats: []lwm2m.Format{lwm2m.FormatSenMLCBOR}}}
	if n := testing.AllocsPerRun(100, func() { viewSink = r.view() }); n != 1 {
		t.Fatalf("view: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { viewSink = r.snapshot() }); n <= 1 {
		t.Fatalf("snapshot: %v allocations, the test no longer tells the two apart", n)
	}
	v := r.view()
	if v.Endpoint != "ep" || len(v.Objects) != 3 || v.Objects[2].Instances[1] != 1 {
		t.Fatalf("view %+v", v)
	}
}
