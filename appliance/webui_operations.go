package appliance

import (
	"context"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// uiOperations gives the web UI the dispatcher (webui.Operations).
type uiOperations struct {
	d  *Dispatcher
	db *store.DB
}

var _ webui.Operations = uiOperations{}

func (o uiOperations) Queue(ctx context.Context, endpoint string, req webui.OperationRequest) (store.Operation, error) {
	if _, err := o.db.Endpoint(ctx, endpoint); err != nil {
		return store.Operation{}, err
	}
	p := opPayload{Args: req.Args, Attributes: req.Attributes, Partial: req.Partial}
	switch {
	case req.Value != nil && len(req.Paths) == 1:
		p.Values = encodeRecords([]lwm2m.Record{{Path: req.Paths[0], Value: *req.Value}})
	case len(req.Values) > 0:
		p.Values = encodeRecords(req.Values)
	}
	return o.d.Queue(ctx, endpoint, req.Type, req.Paths, req.Format, p)
}

func (o uiOperations) Operation(ctx context.Context, id int64) (store.Operation, error) {
	return o.db.Operation(ctx, id)
}

func (o uiOperations) Wait(ctx context.Context, id int64) (store.Operation, error) {
	op, err := o.d.Wait(ctx, id)
	if err == nil && !op.Final() && ctx.Err() != nil {
		return op, ctx.Err()
	}
	return op, err
}

func (o uiOperations) List(ctx context.Context, endpoint string, limit int) ([]store.Operation, error) {
	return o.db.Operations(ctx, store.OperationQuery{Endpoint: endpoint, Limit: limit})
}
