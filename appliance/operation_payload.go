package appliance

import (
	"encoding/json"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
)

// Operation types the dispatcher sends (../shared/API.md).
const (
	OpRead             = "read"
	OpWrite            = "write"
	OpExecute          = "execute"
	OpObserve          = "observe"
	OpCancelObserve    = "cancel-observe"
	OpDiscover         = "discover"
	OpWriteAttributes  = "write-attributes"
	OpCreate           = "create"
	OpDelete           = "delete"
	OpReadComposite    = "read-composite"
	OpWriteComposite   = "write-composite"
	OpObserveComposite = "observe-composite"
)

// opPayload is what an operation carries besides its type and paths,
// persisted as JSON in the operation row. Values keep their LwM2M type so
// that a write sent after a restart is byte-for-byte the one asked for.
type opPayload struct {
	Values     []opValue         `json:"values,omitempty"`
	Args       string            `json:"args,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Partial makes a write a partial update (POST) instead of a replace
	// (PUT) (Core §6.3.4).
	Partial bool `json:"partial,omitempty"`
}

type opValue struct {
	Path string `json:"path"`
	Type string `json:"type"`
	Text string `json:"text"`
}

func encodeRecords(recs []lwm2m.Record) []opValue {
	out := make([]opValue, len(recs))
	for i, r := range recs {
		out[i] = opValue{Path: r.Path.String(), Type: r.Value.Type().String(), Text: r.Value.Text()}
	}
	return out
}

func (p opPayload) records() ([]lwm2m.Record, error) {
	out := make([]lwm2m.Record, 0, len(p.Values))
	for _, v := range p.Values {
		path, err := lwm2m.ParsePath(v.Path)
		if err != nil {
			return nil, err
		}
		t, err := lwm2m.ParseDataType(v.Type)
		if err != nil {
			return nil, err
		}
		val, err := lwm2m.ParseText(t, v.Text)
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", v.Path, err)
		}
		out = append(out, lwm2m.Record{Path: path, Value: val})
	}
	return out, nil
}

func decodePayload(raw json.RawMessage) (opPayload, error) {
	var p opPayload
	if len(raw) == 0 || string(raw) == "null" {
		return p, nil
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("operation payload: %w", err)
	}
	return p, nil
}

// readResult is a read's result as ../shared/API.md gives it: one entry per
// resource (instance), keyed by path without the leading slash. When a
// payload holds a time series of one resource, the newest value wins.
func readResult(recs []lwm2m.Record) map[string]any {
	values := make(map[string]any, len(recs))
	newest := make(map[lwm2m.Path]lwm2m.Record, len(recs))
	for _, r := range recs {
		if old, ok := newest[r.Path]; ok && old.Time.After(r.Time) {
			continue
		}
		newest[r.Path] = r
	}
	for p, r := range newest {
		values[p.Relative()] = r.Value
	}
	return map[string]any{"values": values}
}
