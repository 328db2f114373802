package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// ErrInvalidOperation marks an operation request that cannot be sent: an
// unknown type, a missing path, a value that does not fit. It wraps the web
// UI's ErrInvalid so the API answers 422.
var ErrInvalidOperation = fmt.Errorf("%w: invalid operation", webui.ErrInvalid)

// Dispatcher sends persisted operations to devices (ARCHITECTURE.md, "How
// data flows" 3): at once when the device is online and awake, otherwise
// right after its next Register or Update. Each attempt marks the operation
// sending; a definitive answer from the device confirms or fails it, a
// timeout or a vanished registration puts it back in the queue until the
// attempts run out. The state lives in store, so a restart loses nothing.
type Dispatcher struct {
	db          *store.DB
	srv         *server.Server
	log         *slog.Logger
	maxAttempts int
	timeout     time.Duration
	reachable   func(endpoint string) bool
	changed     func(store.Operation)
	logs        *logCollector // LogData in read results goes to device logs

	kick    chan string
	drains  atomic.Uint64 // drain passes done (tests wait on it)
	uplinks atomic.Uint64 // Uplink calls done (tests wait on it)

	mu      sync.Mutex
	running map[string]bool // endpoints with a worker
	again   map[string]bool // kicked while their worker ran
	// silent holds endpoints whose last attempt got no answer: their
	// queue waits for the device's next uplink instead of being retried
	// on a timer (the seed's rule: retry on the next Update).
	silent  map[string]bool
	waiters map[int64][]chan struct{}
}

func newDispatcher(db *store.DB, srv *server.Server, log *slog.Logger, maxAttempts int, timeout time.Duration,
	reachable func(string) bool, changed func(store.Operation)) *Dispatcher {
	if changed == nil {
		changed = func(store.Operation) {}
	}
	return &Dispatcher{
		db: db, srv: srv, log: log.With("component", "dispatcher"),
		maxAttempts: maxAttempts, timeout: timeout, reachable: reachable, changed: changed,
		kick:    make(chan string, 1024),
		running: make(map[string]bool), again: make(map[string]bool),
		silent: make(map[string]bool), waiters: make(map[int64][]chan struct{}),
	}
}

// Queue validates and persists an operation and, when the device can take
// it now, sends it.
func (d *Dispatcher) Queue(ctx context.Context, endpoint, typ string, paths []lwm2m.Path, format lwm2m.Format, p opPayload) (store.Operation, error) {
	if err := validateOperation(typ, paths, p); err != nil {
		return store.Operation{}, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return store.Operation{}, err
	}
	op := store.Operation{Endpoint: endpoint, Type: typ, Payload: raw}
	for _, path := range paths {
		op.Paths = append(op.Paths, path.String())
	}
	if format != lwm2m.FormatNone {
		op.Format = format.String()
	}
	op, err = d.db.CreateOperation(ctx, op)
	if err != nil {
		return store.Operation{}, err
	}
	d.changed(op)
	d.Kick(endpoint)
	return op, nil
}

func validateOperation(typ string, paths []lwm2m.Path, p opPayload) error {
	need := func(cond bool, msg string) error {
		if !cond {
			return fmt.Errorf("%w: %s: %s", ErrInvalidOperation, typ, msg)
		}
		return nil
	}
	switch typ {
	case OpRead, OpObserve, OpCancelObserve, OpDiscover, OpDelete, OpExecute:
		if err := need(len(paths) == 1, "needs exactly one path"); err != nil {
			return err
		}
		switch typ {
		case OpExecute:
			return need(paths[0].IsResource(), "the path must be a resource /O/I/R")
		case OpDelete:
			return need(paths[0].IsInstance(), "the path must be an object instance /O/I")
		}
		return need(!paths[0].IsRoot(), "the path must not be the root")
	case OpWrite:
		if err := need(len(paths) == 1 && paths[0].Len() >= 2, "needs one instance, resource or resource-instance path"); err != nil {
			return err
		}
		return need(len(p.Values) > 0, "needs a value")
	case OpWriteAttributes:
		if err := need(len(paths) == 1 && !paths[0].IsRoot(), "needs one path"); err != nil {
			return err
		}
		_, err := lwm2m.ParseAttributes(attrQueries(p.Attributes))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidOperation, err)
		}
		return nil
	case OpCreate:
		return need(len(paths) == 1 && (paths[0].IsObject() || paths[0].IsInstance()), "needs an object (or new instance) path")
	case OpReadComposite, OpObserveComposite:
		return need(len(paths) >= 1, "needs at least one path")
	case OpWriteComposite:
		return need(len(p.Values) > 0, "needs values")
	}
	return fmt.Errorf("%w: unknown type %q", ErrInvalidOperation, typ)
}

func attrQueries(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if m[k] == "" {
			out = append(out, k)
		} else {
			out = append(out, k+"="+m[k])
		}
	}
	return out
}

// Uplink tells the dispatcher the device just spoke (Register, Update, or
// a notification in queue mode): what waited for it goes out now. With
// nothing queued for the device (the steady state of a fleet) it starts
// no drain: an operation queued meanwhile kicks the dispatcher itself.
func (d *Dispatcher) Uplink(endpoint string) {
	defer d.uplinks.Add(1)
	d.mu.Lock()
	delete(d.silent, endpoint)
	d.mu.Unlock()
	if d.db.MayHaveQueued(endpoint) {
		d.Kick(endpoint)
	}
}

// Kick asks the dispatcher to look at an endpoint's queue (a new operation,
// or the periodic sweep).
func (d *Dispatcher) Kick(endpoint string) {
	select {
	case d.kick <- endpoint:
	default:
		// The queue is full of kicks; the worker of every endpoint named
		// there reads all of its queue anyway, and the periodic sweep in
		// Run catches the rest.
	}
}

// Wait blocks until operation id is final or ctx ends, and returns its
// latest state either way.
func (d *Dispatcher) Wait(ctx context.Context, id int64) (store.Operation, error) {
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	d.waiters[id] = append(d.waiters[id], ch)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		ws := d.waiters[id]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(d.waiters, id)
		} else {
			d.waiters[id] = ws
		}
		d.mu.Unlock()
	}()
	for {
		op, err := d.db.Operation(context.WithoutCancel(ctx), id)
		if err != nil || op.Final() {
			return op, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return d.db.Operation(context.WithoutCancel(ctx), id)
		}
	}
}

func (d *Dispatcher) notify(op store.Operation) {
	d.changed(op)
	d.mu.Lock()
	for _, ch := range d.waiters[op.ID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	d.mu.Unlock()
}

// Run resumes operations left sending by a crash, then serves kicks until
// ctx ends. A sweep every minute retries endpoints whose kick was lost.
func (d *Dispatcher) Run(ctx context.Context) error {
	if n, err := d.db.RequeueSending(ctx); err != nil {
		return fmt.Errorf("dispatcher: resume: %w", err)
	} else if n > 0 {
		d.log.Info("resumed operations left sending", "count", n)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	d.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ep := <-d.kick:
			d.start(ctx, &wg, ep)
		case <-sweep.C:
			d.sweep(ctx)
		}
	}
}

func (d *Dispatcher) sweep(ctx context.Context) {
	ops, err := d.db.Operations(ctx, store.OperationQuery{Status: store.StatusQueued, Oldest: true, Limit: 1000})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("sweep", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if !seen[op.Endpoint] {
			seen[op.Endpoint] = true
			d.Kick(op.Endpoint)
		}
	}
}

func (d *Dispatcher) start(ctx context.Context, wg *sync.WaitGroup, ep string) {
	d.mu.Lock()
	if d.running[ep] {
		d.again[ep] = true
		d.mu.Unlock()
		return
	}
	d.running[ep] = true
	d.mu.Unlock()
	wg.Go(func() {
		for {
			d.drain(ctx, ep)
			d.mu.Lock()
			if !d.again[ep] || ctx.Err() != nil {
				delete(d.running, ep)
				delete(d.again, ep)
				d.mu.Unlock()
				return
			}
			d.again[ep] = false
			d.mu.Unlock()
		}
	})
}

// drain sends the endpoint's queued operations in order while it is
// reachable. An operation that must be retried stops the drain: the device
// is gone or asleep, and the next Update brings it back.
func (d *Dispatcher) drain(ctx context.Context, ep string) {
	defer d.drains.Add(1)
	for ctx.Err() == nil && d.reachable(ep) && !d.isSilent(ep) {
		ops, err := d.db.QueuedOperations(ctx, ep, 20)
		if err != nil || len(ops) == 0 {
			if err != nil && ctx.Err() == nil {
				d.log.Warn("list queued operations", "endpoint", ep, "err", err)
			}
			return
		}
		for _, op := range ops {
			if !d.send(ctx, op) {
				return
			}
		}
	}
}

func (d *Dispatcher) isSilent(ep string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.silent[ep]
}

// send makes one attempt and reports whether the next operation may follow.
func (d *Dispatcher) send(ctx context.Context, op store.Operation) bool {
	op, err := d.db.ClaimOperation(ctx, op.ID)
	if err != nil {
		// Someone else (a cancel, a concurrent worker) changed the row:
		// read the queue again. Anything else stops this drain; the
		// sweep comes back to it.
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Warn("claim operation", "id", op.ID, "err", err)
		}
		return errors.Is(err, store.ErrConflict)
	}
	d.notify(op)
	octx, cancel := context.WithTimeout(ctx, d.timeout)
	result, err := d.execute(octx, op)
	cancel()
	bg := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		raw, merr := marshalResult(result)
		if merr != nil {
			op, err = d.db.FailOperation(bg, op.ID, "result: "+merr.Error())
		} else {
			op, err = d.db.ConfirmOperation(bg, op.ID, raw)
		}
	case retryable(err) && ctx.Err() == nil:
		d.mu.Lock()
		d.silent[op.Endpoint] = true
		d.mu.Unlock()
		id := op.ID
		op, err = d.db.RetryOperation(bg, id, err.Error(), d.maxAttempts)
		if err != nil {
			d.log.Warn("record failed attempt", "id", id, "err", err)
			return false
		}
		d.log.Info("operation attempt failed", "id", op.ID, "endpoint", op.Endpoint, "type", op.Type, "status", op.Status, "attempts", op.Attempts, "err", op.Error)
		d.notify(op)
		return false
	case ctx.Err() != nil:
		// Shutting down: the row stays sending and RequeueSending puts it
		// back at the next start without using up an attempt's result.
		return false
	default:
		op, err = d.db.FailOperation(bg, op.ID, err.Error())
	}
	if err != nil {
		d.log.Warn("record operation result", "id", op.ID, "err", err)
		return false
	}
	d.notify(op)
	return true
}

// retryable errors say nothing about the operation itself: the device did
// not answer or was not there.
func retryable(err error) bool {
	return errors.Is(err, server.ErrTimeout) || errors.Is(err, server.ErrNotRegistered) ||
		errors.Is(err, server.ErrClosed) || errors.Is(err, server.ErrReset) ||
		errors.Is(err, server.ErrDeviceBusy) ||
		errors.Is(err, context.DeadlineExceeded)
}

// marshalResult writes a result as JSON without HTML escaping: a Discover
// answer is link-format, and "</3/0>" should read as such in the API.
func marshalResult(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
