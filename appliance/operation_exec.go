package appliance

import (
	"context"
	"fmt"
	"slices"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// execute sends one operation to its device and returns the result that is
// stored with it (../shared/API.md: reads give {"values":…}, discover
// {"links":…}).
func (d *Dispatcher) execute(ctx context.Context, op store.Operation) (any, error) {
	p, err := decodePayload(op.Payload)
	if err != nil {
		return nil, err
	}
	paths := make([]lwm2m.Path, 0, len(op.Paths))
	for _, s := range op.Paths {
		path, err := lwm2m.ParsePath(s)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	format := lwm2m.FormatNone
	if op.Format != "" {
		if format, err = lwm2m.ParseFormat(op.Format); err != nil {
			return nil, err
		}
	}
	ep := op.Endpoint
	first := func() lwm2m.Path {
		if len(paths) == 0 {
			return lwm2m.Path{}
		}
		return paths[0]
	}()
	switch op.Type {
	case OpRead:
		recs, err := d.srv.Read(ctx, ep, first, format)
		if err != nil {
			return nil, err
		}
		d.keep(ctx, ep, recs)
		return readResult(recs), nil
	case OpDiscover:
		links, err := d.srv.Discover(ctx, ep, first)
		if err != nil {
			return nil, err
		}
		return map[string]any{"links": links}, nil
	case OpWrite:
		recs, err := p.records()
		if err != nil {
			return nil, err
		}
		return map[string]any{}, d.srv.Write(ctx, ep, first, writeFormat(format, first, recs), recs, !p.Partial)
	case OpExecute:
		return map[string]any{}, d.srv.Execute(ctx, ep, first, p.Args)
	case OpWriteAttributes:
		attrs, err := lwm2m.ParseAttributes(attrQueries(p.Attributes))
		if err != nil {
			return nil, err
		}
		return map[string]any{}, d.srv.WriteAttributes(ctx, ep, first, attrs)
	case OpCreate:
		recs, err := p.records()
		if err != nil {
			return nil, err
		}
		// Create addresses the object; a chosen instance id travels in the
		// payload (Core §6.3.7), which is why values lie under /O/I.
		created, err := d.srv.Create(ctx, ep, first.Truncate(1), createFormat(format), recs)
		if err != nil {
			return nil, err
		}
		return map[string]any{"path": created.String()}, nil
	case OpDelete:
		return map[string]any{}, d.srv.Delete(ctx, ep, first)
	case OpObserve:
		o, recs, err := d.srv.Observe(ctx, ep, first, format)
		if err != nil {
			return nil, err
		}
		d.keep(ctx, ep, recs)
		res := readResult(recs)
		res["observation"] = o.ID
		return res, nil
	case OpObserveComposite:
		o, recs, err := d.srv.ObserveComposite(ctx, ep, paths, compositeFormat(format))
		if err != nil {
			return nil, err
		}
		d.keep(ctx, ep, recs)
		res := readResult(recs)
		res["observation"] = o.ID
		return res, nil
	case OpCancelObserve:
		for _, o := range d.srv.Observations(ep) {
			if slices.Equal(o.Paths, paths) || (len(paths) == 1 && slices.Contains(o.Paths, first) && o.Composite) {
				if err := d.srv.CancelObservation(ctx, o, true); err != nil {
					return nil, err
				}
				return map[string]any{"observation": o.ID}, nil
			}
		}
		return nil, fmt.Errorf("%w: no observation of %s on %s", ErrInvalidOperation, first, ep)
	case OpReadComposite:
		recs, err := d.srv.ReadComposite(ctx, ep, paths, compositeFormat(format))
		if err != nil {
			return nil, err
		}
		d.keep(ctx, ep, recs)
		return readResult(recs), nil
	case OpWriteComposite:
		recs, err := p.records()
		if err != nil {
			return nil, err
		}
		return map[string]any{}, d.srv.WriteComposite(ctx, ep, compositeFormat(format), recs)
	}
	return nil, fmt.Errorf("%w: unknown type %q", ErrInvalidOperation, op.Type)
}

// keep stores what a read brought back, like any other reading, so the
// device page's latest values and charts include it. A full ingestion queue
// only costs the copy: the operation's own result holds the values.
func (d *Dispatcher) keep(ctx context.Context, ep string, recs []lwm2m.Record) {
	recs, err := d.logs.take(ep, recs, false)
	if err != nil {
		d.log.Info("log lines not kept", "endpoint", ep, "err", err)
	}
	if len(recs) == 0 {
		return
	}
	if err := d.db.Ingest(store.Batch{Endpoint: ep, Received: d.db.Now(), Records: recs}); err != nil {
		d.log.Debug("reading not kept", "endpoint", ep, "err", err)
	}
}

// writeFormat picks the payload format of a Write or Create the user did
// not specify: text for one plain resource value, TLV for anything
// structured — what every LwM2M 1.0 and 1.1 client accepts.
func writeFormat(f lwm2m.Format, target lwm2m.Path, recs []lwm2m.Record) lwm2m.Format {
	if f != lwm2m.FormatNone {
		return f
	}
	if target.IsResource() && len(recs) == 1 && recs[0].Path == target && recs[0].Value.Type() != lwm2m.TypeOpaque {
		return lwm2m.FormatText
	}
	return lwm2m.FormatTLV
}

// compositeFormat defaults composite operations to SenML CBOR, the format
// Zephyr prefers (ZEPHYR.md).
func compositeFormat(f lwm2m.Format) lwm2m.Format {
	if f == lwm2m.FormatNone {
		return lwm2m.FormatSenMLCBOR
	}
	return f
}

// createFormat defaults Create to TLV, which carries the new instance's id
// (Core §6.3.7) and which every client version accepts.
func createFormat(f lwm2m.Format) lwm2m.Format {
	if f == lwm2m.FormatNone {
		return lwm2m.FormatTLV
	}
	return f
}
