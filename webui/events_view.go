package webui

import (
	"time"
)

// eventRow is one line of a device's event panel: an event, or a run of
// repeats of the same kind (per-second composite notifications) folded
// into one line with their count, so registrations stay in view.
type eventRow struct {
	DeviceEvent
	Count int
	First time.Time // the oldest of the run
}

// eventKinds are the kinds the panel filters by; "registration" covers
// registered, updated and unregistered.
var eventKinds = map[string]func(kind string) bool{
	"registration": func(k string) bool {
		return k == "registered" || k == "updated" || k == "unregistered" || k == "deregistered"
	},
	"composite": func(k string) bool { return k == "composite" },
}

// foldEvents filters newest-first events by kind ("" for all) and folds
// consecutive events of the same kind into one row, up to max rows.
func foldEvents(evs []DeviceEvent, kind string, max int) []eventRow {
	keep := eventKinds[kind]
	var out []eventRow
	for _, ev := range evs {
		if keep != nil && !keep(ev.Kind) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Kind == ev.Kind && ev.Kind != "registered" {
			out[n-1].Count++
			out[n-1].First = ev.Time
			continue
		}
		if len(out) == max {
			break
		}
		out = append(out, eventRow{DeviceEvent: ev, Count: 1, First: ev.Time})
	}
	return out
}

// eventsPanel is what the events fragment renders.
type eventsPanel struct {
	Rows []eventRow
	Kind string
}

// eventsFetch is how many events are read to fill a panel of folded rows.
const eventsFetch = 500

func (s *Server) eventsPanel(c interface{ QueryParam(string) string }, evs []DeviceEvent) eventsPanel {
	kind := c.QueryParam("kind")
	if _, ok := eventKinds[kind]; !ok {
		kind = ""
	}
	return eventsPanel{Rows: foldEvents(evs, kind, 20), Kind: kind}
}
