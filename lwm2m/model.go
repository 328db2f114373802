package lwm2m

import (
	"fmt"
	"sort"
	"sync"
)

// Operations are the operations a resource allows (DDF <Operations>: R, W,
// RW, E or empty).
type Operations uint8

const (
	OpRead Operations = 1 << iota
	OpWrite
	OpExecute
)

func (o Operations) String() string {
	s := ""
	if o&OpRead != 0 {
		s += "R"
	}
	if o&OpWrite != 0 {
		s += "W"
	}
	if o&OpExecute != 0 {
		s += "E"
	}
	return s
}

// ResourceModel describes one resource of an object (Core Appendix D, DDF).
type ResourceModel struct {
	ID          uint16
	Name        string
	Operations  Operations
	Multiple    bool // multiple-instance resource
	Mandatory   bool
	Type        DataType
	Range       string // RangeEnumeration, as written
	Units       string
	Description string
}

// ObjectModel describes an object (Core Appendix D, DDF XML).
type ObjectModel struct {
	ID           uint16
	Name         string
	Description  string
	URN          string
	Version      string // ObjectVersion, "1.0" when absent
	LwM2MVersion string
	Multiple     bool // multiple instances
	Mandatory    bool
	Resources    map[uint16]*ResourceModel
}

// ResourceIDs returns the resource ids in ascending order.
func (o *ObjectModel) ResourceIDs() []uint16 {
	ids := make([]uint16, 0, len(o.Resources))
	for id := range o.Resources {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Registry holds object models by id. It is safe for concurrent use; models
// added at run time (a vendor's DDF) replace built-in ones of the same id.
// Models are treated as immutable once added.
type Registry struct {
	mu      sync.RWMutex
	objects map[uint16]*ObjectModel
}

// NewEmptyRegistry returns a registry without any model.
func NewEmptyRegistry() *Registry {
	return &Registry{objects: make(map[uint16]*ObjectModel)}
}

// NewRegistry returns a registry holding the built-in models (core objects
// 0–7, 9, 19, 20 and the IPSO objects common clients use).
func NewRegistry() *Registry {
	r := NewEmptyRegistry()
	for _, m := range builtinModels() {
		r.objects[m.ID] = m
	}
	return r
}

// Add adds or replaces models.
func (r *Registry) Add(models ...*ObjectModel) error {
	for _, m := range models {
		if m == nil {
			return fmt.Errorf("%w: nil model", ErrUnknownObject)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range models {
		r.objects[m.ID] = m
	}
	return nil
}

// Object returns the model of an object.
func (r *Registry) Object(id uint16) (*ObjectModel, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.objects[id]
	return m, ok
}

// Resource returns the model of one resource.
func (r *Registry) Resource(obj, res uint16) (*ResourceModel, bool) {
	m, ok := r.Object(obj)
	if !ok {
		return nil, false
	}
	rm, ok := m.Resources[res]
	return rm, ok
}

// Objects returns all models in ascending id order.
func (r *Registry) Objects() []*ObjectModel {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*ObjectModel, 0, len(r.objects))
	for _, m := range r.objects {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
