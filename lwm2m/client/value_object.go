package client

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/flownexus/flownexus/lwm2m"
)

// ValueObject is a generic Object that keeps its values in memory, driven by
// an lwm2m.ObjectModel: single and multiple-instance resources, writes that
// the model allows, executes dispatched to registered functions, and
// resources computed on read (a clock, a counter). Simulated devices build
// most of their objects from it.
type ValueObject struct {
	model *lwm2m.ObjectModel

	mu        sync.Mutex
	instances map[uint16]map[uint16]*resourceValue
	exec      map[uint16]ExecuteFunc
	dynamic   map[uint16]ReadFunc
	onWrite   WriteFunc
	notify    func(paths ...lwm2m.Path)
}

// ExecuteFunc runs an executable resource of instance inst.
type ExecuteFunc func(inst uint16, args string) error

// ReadFunc computes a resource's value when it is read.
type ReadFunc func(inst uint16) lwm2m.Value

// WriteFunc is told about every value the server wrote (after it is stored);
// returning an error refuses the write (its sentinel decides the code) and
// the old values stay.
type WriteFunc func(p lwm2m.Path, v lwm2m.Value) error

// resourceValue is a single value, or resource instances for a multiple
// resource.
type resourceValue struct {
	single lwm2m.Value
	multi  map[uint16]lwm2m.Value
}

// NewValueObject returns an object without instances for model m.
func NewValueObject(m *lwm2m.ObjectModel) *ValueObject {
	return &ValueObject{
		model:     m,
		instances: make(map[uint16]map[uint16]*resourceValue),
		exec:      make(map[uint16]ExecuteFunc),
		dynamic:   make(map[uint16]ReadFunc),
	}
}

// Model implements Object.
func (o *ValueObject) Model() *lwm2m.ObjectModel { return o.model }

// SetNotify implements Notifier.
func (o *ValueObject) SetNotify(f func(paths ...lwm2m.Path)) {
	o.mu.Lock()
	o.notify = f
	o.mu.Unlock()
}

// OnExecute sets the function an Execute on resource res runs.
func (o *ValueObject) OnExecute(res uint16, f ExecuteFunc) {
	o.mu.Lock()
	o.exec[res] = f
	o.mu.Unlock()
}

// OnRead makes resource res computed on every read (and present in every
// instance).
func (o *ValueObject) OnRead(res uint16, f ReadFunc) {
	o.mu.Lock()
	o.dynamic[res] = f
	o.mu.Unlock()
}

// OnWrite sets the function told about server writes.
func (o *ValueObject) OnWrite(f WriteFunc) {
	o.mu.Lock()
	o.onWrite = f
	o.mu.Unlock()
}

// AddInstance creates (or replaces) instance id with single-resource values.
// It is the device's own setup, not a server Create, so it does not notify.
func (o *ValueObject) AddInstance(id uint16, values map[uint16]lwm2m.Value) error {
	inst := make(map[uint16]*resourceValue, len(values))
	for rid, v := range values {
		tv, err := o.typed(rid, v)
		if err != nil {
			return err
		}
		inst[rid] = &resourceValue{single: tv}
	}
	o.mu.Lock()
	o.instances[id] = inst
	o.mu.Unlock()
	return nil
}

// Set stores a single-resource value at /O/I/R (or one resource instance at
// /O/I/R/RI) and notifies observers when it changed. The instance must exist.
func (o *ValueObject) Set(p lwm2m.Path, v lwm2m.Value) error {
	if p.Len() < 3 || p.ObjectID() != o.model.ID {
		return fmt.Errorf("client: set %s: %w: not a resource of object %d", p, ErrBadRequest, o.model.ID)
	}
	tv, err := o.typed(p.ResourceID(), v)
	if err != nil {
		return err
	}
	o.mu.Lock()
	inst, ok := o.instances[p.InstanceID()]
	if !ok {
		o.mu.Unlock()
		return fmt.Errorf("client: set %s: %w", p, ErrNotFound)
	}
	changed := o.store(inst, p, tv)
	notify := o.notify
	o.mu.Unlock()
	if changed && notify != nil {
		notify(p)
	}
	return nil
}

// SetValues stores several values (resource or resource instance paths of
// existing instances) and notifies observers once for all of them, so that
// a composite observation of values sampled together sends one
// notification, not one per value.
func (o *ValueObject) SetValues(recs ...lwm2m.Record) error {
	typed := make([]lwm2m.Record, len(recs))
	for i, r := range recs {
		if r.Path.Len() < 3 || r.Path.ObjectID() != o.model.ID {
			return fmt.Errorf("client: set %s: %w: not a resource of object %d", r.Path, ErrBadRequest, o.model.ID)
		}
		v, err := o.typed(r.Path.ResourceID(), r.Value)
		if err != nil {
			return err
		}
		typed[i] = lwm2m.Record{Path: r.Path, Value: v}
	}
	o.mu.Lock()
	for _, r := range typed {
		if _, ok := o.instances[r.Path.InstanceID()]; !ok {
			o.mu.Unlock()
			return fmt.Errorf("client: set %s: %w", r.Path, ErrNotFound)
		}
	}
	var changed []lwm2m.Path
	for _, r := range typed {
		if o.store(o.instances[r.Path.InstanceID()], r.Path, r.Value) {
			changed = append(changed, r.Path)
		}
	}
	notify := o.notify
	o.mu.Unlock()
	if len(changed) > 0 && notify != nil {
		notify(changed...)
	}
	return nil
}

// SetMulti replaces all instances of a multiple resource /O/I/R.
func (o *ValueObject) SetMulti(p lwm2m.Path, values map[uint16]lwm2m.Value) error {
	if !p.IsResource() || p.ObjectID() != o.model.ID {
		return fmt.Errorf("client: set %s: %w: not a resource of object %d", p, ErrBadRequest, o.model.ID)
	}
	m := make(map[uint16]lwm2m.Value, len(values))
	for ri, v := range values {
		tv, err := o.typed(p.ResourceID(), v)
		if err != nil {
			return err
		}
		m[ri] = tv
	}
	o.mu.Lock()
	inst, ok := o.instances[p.InstanceID()]
	if !ok {
		o.mu.Unlock()
		return fmt.Errorf("client: set %s: %w", p, ErrNotFound)
	}
	old := inst[p.ResourceID()]
	changed := old == nil || !maps.EqualFunc(old.multi, m, lwm2m.Value.Equal)
	inst[p.ResourceID()] = &resourceValue{multi: m}
	notify := o.notify
	o.mu.Unlock()
	if changed && notify != nil {
		notify(p)
	}
	return nil
}

// Get returns the stored value at a resource or resource instance path.
func (o *ValueObject) Get(p lwm2m.Path) (lwm2m.Value, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if f, ok := o.dynamic[p.ResourceID()]; ok && p.IsResource() {
		if _, ok := o.instances[p.InstanceID()]; ok {
			return f(p.InstanceID()), true
		}
	}
	inst, ok := o.instances[p.InstanceID()]
	if !ok {
		return lwm2m.Value{}, false
	}
	rv, ok := inst[p.ResourceID()]
	if !ok {
		return lwm2m.Value{}, false
	}
	if p.IsResourceInstance() {
		v, ok := rv.multi[p.ResourceInstanceID()]
		return v, ok
	}
	return rv.single, rv.multi == nil
}

// typed converts v to the model's type for resource rid.
func (o *ValueObject) typed(rid uint16, v lwm2m.Value) (lwm2m.Value, error) {
	rm, ok := o.model.Resources[rid]
	if !ok {
		return v, fmt.Errorf("client: object %d resource %d: %w", o.model.ID, rid, ErrNotFound)
	}
	if rm.Type == lwm2m.TypeNone {
		return v, nil
	}
	tv, err := v.As(rm.Type)
	if err != nil {
		return v, fmt.Errorf("client: /%d/x/%d: %w: %w", o.model.ID, rid, ErrBadRequest, err)
	}
	return tv, nil
}

// store puts one value at p (resource or resource instance) into inst and
// reports whether anything changed. o.mu is held.
func (o *ValueObject) store(inst map[uint16]*resourceValue, p lwm2m.Path, v lwm2m.Value) bool {
	rid := p.ResourceID()
	rv := inst[rid]
	if p.IsResourceInstance() {
		if rv == nil || rv.multi == nil {
			rv = &resourceValue{multi: make(map[uint16]lwm2m.Value)}
			inst[rid] = rv
		}
		old, ok := rv.multi[p.ResourceInstanceID()]
		rv.multi[p.ResourceInstanceID()] = v
		return !ok || !old.Equal(v)
	}
	if rv != nil && rv.multi == nil && rv.single.Equal(v) {
		return false
	}
	inst[rid] = &resourceValue{single: v}
	return true
}

// Instances implements Object.
func (o *ValueObject) Instances() []uint16 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Sorted(maps.Keys(o.instances))
}

// Read implements Object.
func (o *ValueObject) Read(p lwm2m.Path) ([]lwm2m.Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	inst, ok := o.instances[p.InstanceID()]
	if !ok {
		return nil, fmt.Errorf("client: read %s: %w", p, ErrNotFound)
	}
	if p.IsInstance() {
		var out []lwm2m.Record
		for _, rid := range o.model.ResourceIDs() {
			rm := o.model.Resources[rid]
			if rm.Operations&lwm2m.OpRead == 0 {
				continue
			}
			out = o.appendResource(out, p.Append(rid), inst)
		}
		return out, nil
	}
	rp := p.Truncate(3)
	out := o.appendResource(nil, rp, inst)
	if p.IsResourceInstance() {
		for _, r := range out {
			if r.Path == p {
				return []lwm2m.Record{r}, nil
			}
		}
		return nil, fmt.Errorf("client: read %s: %w", p, ErrNotFound)
	}
	if len(out) == 0 {
		rv := inst[p.ResourceID()]
		if rv != nil && rv.multi != nil {
			// An empty multiple resource exists but has no instances to show.
			return nil, nil
		}
		return nil, fmt.Errorf("client: read %s: %w", p, ErrNotFound)
	}
	return out, nil
}

// appendResource appends the records of resource rp. o.mu is held.
func (o *ValueObject) appendResource(out []lwm2m.Record, rp lwm2m.Path, inst map[uint16]*resourceValue) []lwm2m.Record {
	if f, ok := o.dynamic[rp.ResourceID()]; ok {
		return append(out, lwm2m.Record{Path: rp, Value: f(rp.InstanceID())})
	}
	rv, ok := inst[rp.ResourceID()]
	if !ok {
		return out
	}
	if rv.multi == nil {
		return append(out, lwm2m.Record{Path: rp, Value: rv.single})
	}
	for _, ri := range slices.Sorted(maps.Keys(rv.multi)) {
		out = append(out, lwm2m.Record{Path: rp.Append(ri), Value: rv.multi[ri]})
	}
	return out
}

// Write implements Object. It applies all records or none.
func (o *ValueObject) Write(p lwm2m.Path, recs []lwm2m.Record, replace bool) error {
	o.mu.Lock()
	inst, ok := o.instances[p.InstanceID()]
	if !ok {
		o.mu.Unlock()
		return fmt.Errorf("client: write %s: %w", p, ErrNotFound)
	}
	// Work on a copy so a refused record or callback leaves the instance as it was.
	next := cloneInstance(inst)
	if replace {
		// PUT replaces multiple resources named in the payload as a whole
		// (Core §6.3.3: "Replace").
		for _, r := range recs {
			if r.Path.IsResourceInstance() || o.model.Resources[r.Path.ResourceID()].Multiple {
				if p.Len() <= 3 {
					next[r.Path.ResourceID()] = &resourceValue{multi: make(map[uint16]lwm2m.Value)}
				}
			}
		}
		if p.IsResource() && o.model.Resources[p.ResourceID()].Multiple && len(recs) == 0 {
			next[p.ResourceID()] = &resourceValue{multi: make(map[uint16]lwm2m.Value)}
		}
	}
	var changed []lwm2m.Path
	for _, r := range recs {
		if o.store(next, r.Path, r.Value) {
			changed = append(changed, r.Path)
		}
	}
	onWrite, notify := o.onWrite, o.notify
	o.instances[p.InstanceID()] = next
	o.mu.Unlock()
	if onWrite != nil {
		for _, r := range recs {
			if err := onWrite(r.Path, r.Value); err != nil {
				o.mu.Lock()
				o.instances[p.InstanceID()] = inst
				o.mu.Unlock()
				return err
			}
		}
	}
	if notify != nil && (len(changed) > 0 || replace) {
		if len(changed) == 0 {
			changed = append(changed, p)
		}
		notify(changed...)
	}
	return nil
}

func cloneInstance(inst map[uint16]*resourceValue) map[uint16]*resourceValue {
	out := make(map[uint16]*resourceValue, len(inst))
	for rid, rv := range inst {
		c := &resourceValue{single: rv.single}
		if rv.multi != nil {
			c.multi = maps.Clone(rv.multi)
		}
		out[rid] = c
	}
	return out
}

// Execute implements Object.
func (o *ValueObject) Execute(p lwm2m.Path, args string) error {
	o.mu.Lock()
	_, ok := o.instances[p.InstanceID()]
	f := o.exec[p.ResourceID()]
	o.mu.Unlock()
	if !ok {
		return fmt.Errorf("client: execute %s: %w", p, ErrNotFound)
	}
	if f == nil {
		// The model allows it but the device does nothing on it: a plain
		// acknowledgement is what devices answer for such resources.
		return nil
	}
	return f(p.InstanceID(), args)
}

// Create implements Object.
func (o *ValueObject) Create(id uint16, recs []lwm2m.Record) error {
	inst := make(map[uint16]*resourceValue)
	for _, r := range recs {
		o.store(inst, r.Path, r.Value)
	}
	o.mu.Lock()
	if _, exists := o.instances[id]; exists {
		o.mu.Unlock()
		return fmt.Errorf("client: create /%d/%d: %w: instance exists", o.model.ID, id, ErrBadRequest)
	}
	o.instances[id] = inst
	notify := o.notify
	o.mu.Unlock()
	if notify != nil {
		notify(lwm2m.NewPath(o.model.ID, id))
	}
	return nil
}

// Delete implements Object.
func (o *ValueObject) Delete(id uint16) error {
	o.mu.Lock()
	if _, ok := o.instances[id]; !ok {
		o.mu.Unlock()
		return fmt.Errorf("client: delete /%d/%d: %w", o.model.ID, id, ErrNotFound)
	}
	delete(o.instances, id)
	notify := o.notify
	o.mu.Unlock()
	if notify != nil {
		notify(lwm2m.NewPath(o.model.ID, id))
	}
	return nil
}
