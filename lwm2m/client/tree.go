package client

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/flownexus/flownexus/lwm2m"
)

// Tree is the client's object tree: it resolves paths, checks each
// operation against the object model (Core §6.3 and Appendix D) and calls
// the Objects. It speaks in paths and records; the CoAP edge
// (handler.go) turns its errors into response codes.
type Tree struct {
	reg *lwm2m.Registry

	mu      sync.RWMutex
	objects map[uint16]Object
	changed func(paths ...lwm2m.Path)
}

// NewTree returns an empty tree typing values by reg's models (a nil reg is
// the empty registry; objects bring their own models anyway).
func NewTree(reg *lwm2m.Registry) *Tree {
	if reg == nil {
		reg = lwm2m.NewEmptyRegistry()
	}
	return &Tree{reg: reg, objects: make(map[uint16]Object)}
}

// Registry returns the registry the tree types payloads with.
func (t *Tree) Registry() *lwm2m.Registry { return t.reg }

// Add puts objects into the tree, replacing objects of the same id. An
// object whose model the registry does not know is added to the registry so
// that decoders type its values.
func (t *Tree) Add(objs ...Object) error {
	for _, o := range objs {
		if o == nil || o.Model() == nil {
			return fmt.Errorf("client: add object: %w: nil object or model", ErrBadRequest)
		}
	}
	t.mu.Lock()
	for _, o := range objs {
		m := o.Model()
		if known, ok := t.reg.Object(m.ID); !ok || known != m {
			if err := t.reg.Add(m); err != nil {
				t.mu.Unlock()
				return fmt.Errorf("client: add object %d: %w", m.ID, err)
			}
		}
		t.objects[m.ID] = o
	}
	t.mu.Unlock()
	for _, o := range objs {
		if n, ok := o.(Notifier); ok {
			n.SetNotify(t.notify)
		}
	}
	return nil
}

// Remove takes an object out of the tree.
func (t *Tree) Remove(id uint16) {
	t.mu.Lock()
	delete(t.objects, id)
	t.mu.Unlock()
}

// Object returns the object with id.
func (t *Tree) Object(id uint16) (Object, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	o, ok := t.objects[id]
	return o, ok
}

// ObjectIDs returns the object ids in ascending order.
func (t *Tree) ObjectIDs() []uint16 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Sorted(maps.Keys(t.objects))
}

// SetOnChange installs the function told about changed paths (the observe
// engine). Objects report through Notifier; writes through the tree to
// objects that are not Notifiers are reported by the tree itself.
func (t *Tree) SetOnChange(f func(paths ...lwm2m.Path)) {
	t.mu.Lock()
	t.changed = f
	t.mu.Unlock()
}

func (t *Tree) notify(paths ...lwm2m.Path) {
	t.mu.RLock()
	f := t.changed
	t.mu.RUnlock()
	if f != nil {
		f(paths...)
	}
}

// Changed tells observers that values under paths changed; custom objects
// that are not Notifiers call it after changing themselves.
func (t *Tree) Changed(paths ...lwm2m.Path) { t.notify(paths...) }

// serverVisible refuses the Security object to a management server (Core
// §E.1: "the LwM2M Server MUST NOT access" Object 0; OSCORE, 21, likewise).
func serverVisible(id uint16) bool { return id != 0 && id != 21 }

// lookup resolves p down to its object and resource model, checking that
// the path exists. The root and object paths return a nil resource model.
func (t *Tree) lookup(op string, p lwm2m.Path) (Object, *lwm2m.ResourceModel, error) {
	if p.IsRoot() {
		return nil, nil, fmt.Errorf("client: %s /: %w", op, ErrMethodNotAllowed)
	}
	if !serverVisible(p.ObjectID()) {
		return nil, nil, fmt.Errorf("client: %s %s: %w: object %d is reserved to bootstrap", op, p, ErrUnauthorized, p.ObjectID())
	}
	o, ok := t.Object(p.ObjectID())
	if !ok {
		return nil, nil, fmt.Errorf("client: %s %s: %w: no object %d", op, p, ErrNotFound, p.ObjectID())
	}
	if p.Len() >= 2 && !slices.Contains(o.Instances(), p.InstanceID()) {
		return nil, nil, fmt.Errorf("client: %s %s: %w: no instance", op, p, ErrNotFound)
	}
	if p.Len() < 3 {
		return o, nil, nil
	}
	rm, ok := o.Model().Resources[p.ResourceID()]
	if !ok {
		return nil, nil, fmt.Errorf("client: %s %s: %w: object %d has no resource %d", op, p, ErrNotFound, p.ObjectID(), p.ResourceID())
	}
	if p.IsResourceInstance() && !rm.Multiple {
		return nil, nil, fmt.Errorf("client: %s %s: %w: resource %d is single-instance", op, p, ErrNotFound, p.ResourceID())
	}
	return o, rm, nil
}

// Read returns the readable values under p (Core §6.3.1). Object and
// instance reads leave out resources the model does not let be read; a
// resource read of such a resource is ErrMethodNotAllowed.
func (t *Tree) Read(p lwm2m.Path) ([]lwm2m.Record, error) {
	o, rm, err := t.lookup("read", p)
	if err != nil {
		return nil, err
	}
	if rm != nil && rm.Operations&lwm2m.OpRead == 0 {
		return nil, fmt.Errorf("client: read %s: %w: resource is not readable", p, ErrMethodNotAllowed)
	}
	if p.IsObject() {
		var out []lwm2m.Record
		for _, id := range o.Instances() {
			recs, err := o.Read(p.Append(id))
			if err != nil {
				return nil, err
			}
			out = append(out, recs...)
		}
		return out, nil
	}
	return o.Read(p)
}

// ReadComposite reads several paths (Core §6.3.8 Read-Composite). Paths that
// do not exist or cannot be read are left out; if none can, the first error
// is returned.
func (t *Tree) ReadComposite(paths []lwm2m.Path) ([]lwm2m.Record, error) {
	var out []lwm2m.Record
	var first error
	found := false
	for _, p := range paths {
		if p.IsRoot() {
			// "/" in a composite read means every object the server may see.
			for _, id := range t.ObjectIDs() {
				if serverVisible(id) {
					recs, err := t.Read(lwm2m.NewPath(id))
					if err == nil {
						out = append(out, recs...)
						found = true
					}
				}
			}
			continue
		}
		recs, err := t.Read(p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		found = true
		out = append(out, recs...)
	}
	if !found && first != nil {
		return nil, first
	}
	return out, nil
}

// checkWrite validates records written to p and types them by the model.
// bootstrap lifts the Write operation check (Core §6.1: the Bootstrap-Server
// may write any resource).
func (t *Tree) checkWrite(p lwm2m.Path, o Object, recs []lwm2m.Record, bootstrap bool) ([]lwm2m.Record, error) {
	m := o.Model()
	out := make([]lwm2m.Record, 0, len(recs))
	for _, r := range recs {
		if !p.Contains(r.Path) || r.Path.Len() < 3 {
			return nil, fmt.Errorf("client: write %s: %w: value for %s is outside the target", p, ErrBadRequest, r.Path)
		}
		rm, ok := m.Resources[r.Path.ResourceID()]
		if !ok {
			return nil, fmt.Errorf("client: write %s: %w: object %d has no resource %d", p, ErrNotFound, m.ID, r.Path.ResourceID())
		}
		if !bootstrap && rm.Operations&lwm2m.OpWrite == 0 {
			return nil, fmt.Errorf("client: write %s: %w: resource %d is not writable", p, ErrMethodNotAllowed, rm.ID)
		}
		if r.Path.IsResourceInstance() != rm.Multiple {
			if rm.Multiple {
				return nil, fmt.Errorf("client: write %s: %w: resource %d takes resource instances", p, ErrBadRequest, rm.ID)
			}
			return nil, fmt.Errorf("client: write %s: %w: resource %d is single-instance", p, ErrBadRequest, rm.ID)
		}
		v := r.Value
		if rm.Type != lwm2m.TypeNone {
			tv, err := v.As(rm.Type)
			if err != nil {
				return nil, fmt.Errorf("client: write %s: %w: %w", r.Path, ErrBadRequest, err)
			}
			v = tv
		}
		out = append(out, lwm2m.Record{Path: r.Path, Value: v, Time: r.Time})
	}
	return out, nil
}

// Write stores values under an instance, resource or resource instance
// (Core §6.3.3): replace is PUT, otherwise POST partial update.
func (t *Tree) Write(p lwm2m.Path, recs []lwm2m.Record, replace bool) error {
	if p.Len() < 2 {
		return fmt.Errorf("client: write %s: %w: write needs an instance, resource or resource instance", p, ErrMethodNotAllowed)
	}
	o, rm, err := t.lookup("write", p)
	if err != nil {
		return err
	}
	if rm != nil && rm.Operations&lwm2m.OpWrite == 0 {
		return fmt.Errorf("client: write %s: %w: resource is not writable", p, ErrMethodNotAllowed)
	}
	if len(recs) == 0 && !(replace && rm != nil && rm.Multiple) {
		return fmt.Errorf("client: write %s: %w: no values", p, ErrBadRequest)
	}
	typed, err := t.checkWrite(p, o, recs, false)
	if err != nil {
		return err
	}
	if err := o.Write(p, typed, replace); err != nil {
		return err
	}
	if _, ok := o.(Notifier); !ok {
		t.notify(p)
	}
	return nil
}

// WriteComposite writes values at unrelated paths (Core §6.3.9): all are
// checked before any is stored.
func (t *Tree) WriteComposite(recs []lwm2m.Record) error {
	if len(recs) == 0 {
		return fmt.Errorf("client: write-composite: %w: no values", ErrBadRequest)
	}
	type group struct {
		o    Object
		p    lwm2m.Path
		recs []lwm2m.Record
	}
	var groups []*group
	byInst := map[lwm2m.Path]*group{}
	for _, r := range recs {
		if r.Path.Len() < 3 {
			return fmt.Errorf("client: write-composite %s: %w: values must address resources", r.Path, ErrBadRequest)
		}
		ip := r.Path.Truncate(2)
		g := byInst[ip]
		if g == nil {
			o, _, err := t.lookup("write-composite", r.Path)
			if err != nil {
				return err
			}
			g = &group{o: o, p: ip}
			byInst[ip] = g
			groups = append(groups, g)
		}
		g.recs = append(g.recs, r)
	}
	for _, g := range groups {
		typed, err := t.checkWrite(g.p, g.o, g.recs, false)
		if err != nil {
			return err
		}
		g.recs = typed
	}
	for _, g := range groups {
		if err := g.o.Write(g.p, g.recs, false); err != nil {
			return err
		}
		if _, ok := g.o.(Notifier); !ok {
			t.notify(g.p)
		}
	}
	return nil
}

// Execute runs an executable resource (Core §6.3.5).
func (t *Tree) Execute(p lwm2m.Path, args string) error {
	if !p.IsResource() {
		return fmt.Errorf("client: execute %s: %w: only resources execute", p, ErrMethodNotAllowed)
	}
	o, rm, err := t.lookup("execute", p)
	if err != nil {
		return err
	}
	if rm.Operations&lwm2m.OpExecute == 0 {
		return fmt.Errorf("client: execute %s: %w: resource is not executable", p, ErrMethodNotAllowed)
	}
	if err := checkExecuteArgs(args); err != nil {
		return fmt.Errorf("client: execute %s: %w: %w", p, ErrBadRequest, err)
	}
	return o.Execute(p, args)
}

// Create makes a new instance of object p (Core §6.3.6). The instance id is
// the one the payload names, or the lowest free id. It returns the new
// instance's path.
func (t *Tree) Create(p lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error) {
	if !p.IsObject() {
		return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: create targets an object", p, ErrMethodNotAllowed)
	}
	o, _, err := t.lookup("create", p)
	if err != nil {
		return lwm2m.Path{}, err
	}
	existing := o.Instances()
	if !o.Model().Multiple && len(existing) > 0 {
		return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: single-instance object already has its instance", p, ErrBadRequest)
	}
	id, named := uint16(0), false
	for _, r := range recs {
		if r.Path.Len() < 2 {
			return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: value without an instance", p, ErrBadRequest)
		}
		if named && r.Path.InstanceID() != id {
			return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: values for more than one instance", p, ErrBadRequest)
		}
		id, named = r.Path.InstanceID(), true
	}
	if !named {
		for slices.Contains(existing, id) {
			id++
		}
	} else if slices.Contains(existing, id) {
		return lwm2m.Path{}, fmt.Errorf("client: create %s/%d: %w: instance exists", p, id, ErrBadRequest)
	}
	ip := p.Append(id)
	typed := make([]lwm2m.Record, 0, len(recs))
	for _, r := range recs {
		rm, ok := o.Model().Resources[r.Path.ResourceID()]
		if !ok || r.Path.Len() < 3 {
			return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: no resource %s", ip, ErrBadRequest, r.Path)
		}
		v, err := r.Value.As(rm.Type)
		if err != nil {
			return lwm2m.Path{}, fmt.Errorf("client: create %s: %w: %w", r.Path, ErrBadRequest, err)
		}
		typed = append(typed, lwm2m.Record{Path: r.Path, Value: v})
	}
	if err := o.Create(id, typed); err != nil {
		return lwm2m.Path{}, err
	}
	return ip, nil
}

// Delete removes an object instance (Core §6.3.7).
func (t *Tree) Delete(p lwm2m.Path) error {
	if !p.IsInstance() {
		return fmt.Errorf("client: delete %s: %w: only object instances can be deleted", p, ErrMethodNotAllowed)
	}
	o, _, err := t.lookup("delete", p)
	if err != nil {
		return err
	}
	if p.ObjectID() == 1 || p.ObjectID() == 3 {
		// The Server and Device objects are what the registration rests on;
		// only the Bootstrap-Server may remove them (Core §E.2, §E.4).
		return fmt.Errorf("client: delete %s: %w: object %d instances are mandatory", p, ErrMethodNotAllowed, p.ObjectID())
	}
	return o.Delete(p.InstanceID())
}

// BootstrapWrite writes values as a Bootstrap-Server does (Core §6.1.7):
// any object including Security, any resource regardless of its Write
// operation, creating the instance when it does not exist. It is the hook
// lwm2m/bootstrap's client side uses.
func (t *Tree) BootstrapWrite(p lwm2m.Path, recs []lwm2m.Record) error {
	if p.Len() < 1 {
		return fmt.Errorf("client: bootstrap write /: %w", ErrMethodNotAllowed)
	}
	o, ok := t.Object(p.ObjectID())
	if !ok {
		return fmt.Errorf("client: bootstrap write %s: %w: no object %d", p, ErrNotFound, p.ObjectID())
	}
	byInst := map[uint16][]lwm2m.Record{}
	var order []uint16
	for _, r := range recs {
		if !p.Contains(r.Path) || r.Path.Len() < 3 {
			return fmt.Errorf("client: bootstrap write %s: %w: value for %s outside the target", p, ErrBadRequest, r.Path)
		}
		id := r.Path.InstanceID()
		if _, seen := byInst[id]; !seen {
			order = append(order, id)
		}
		byInst[id] = append(byInst[id], r)
	}
	for _, id := range order {
		ip := lwm2m.NewPath(p.ObjectID(), id)
		typed, err := t.checkWrite(ip, o, byInst[id], true)
		if err != nil {
			return err
		}
		if slices.Contains(o.Instances(), id) {
			err = o.Write(ip, typed, false)
		} else {
			err = o.Create(id, typed)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// BootstrapDelete removes instances as a Bootstrap-Server does (Core
// §6.1.7.3): p may be "/", an object or an instance.
func (t *Tree) BootstrapDelete(p lwm2m.Path) error {
	var ids []uint16
	if p.IsRoot() {
		ids = t.ObjectIDs()
	} else {
		ids = []uint16{p.ObjectID()}
	}
	for _, oid := range ids {
		o, ok := t.Object(oid)
		if !ok {
			return fmt.Errorf("client: bootstrap delete %s: %w", p, ErrNotFound)
		}
		for _, id := range o.Instances() {
			if p.Len() >= 2 && id != p.InstanceID() {
				continue
			}
			if oid == 3 {
				continue // the Device object is not deleted (Core §6.1.7.3).
			}
			if err := o.Delete(id); err != nil {
				return err
			}
		}
	}
	return nil
}
