package webui

import (
	"testing"
	"time"
)

func TestFoldEvents(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var evs []DeviceEvent // newest first
	for i := 0; i < 50; i++ {
		evs = append(evs, DeviceEvent{Kind: "composite", Time: t0.Add(time.Duration(100-i) * time.Second)})
	}
	evs = append(evs, DeviceEvent{Kind: "updated", Time: t0.Add(40 * time.Second)}, DeviceEvent{Kind: "updated", Time: t0.Add(30 * time.Second)},
		DeviceEvent{Kind: "registered", Time: t0.Add(20 * time.Second)}, DeviceEvent{Kind: "registered", Time: t0.Add(10 * time.Second)})
	all := foldEvents(evs, "", 20)
	if len(all) != 4 || all[0].Count != 50 || !all[0].First.Equal(t0.Add(51*time.Second)) || all[1].Count != 2 || all[2].Kind != "registered" || all[3].Kind != "registered" {
		t.Fatalf("folded: %+v", all)
	}
	regs := foldEvents(evs, "registration", 20)
	if len(regs) != 3 || regs[0].Kind != "updated" {
		t.Fatalf("registrations: %+v", regs)
	}
	if comp := foldEvents(evs, "composite", 20); len(comp) != 1 || comp[0].Count != 50 {
		t.Fatalf("composite: %+v", comp)
	}
	if two := foldEvents(evs, "", 2); len(two) != 2 {
		t.Fatalf("max rows: %d", len(two))
	}
}
