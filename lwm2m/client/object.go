package client

import "github.com/flownexus/flownexus/lwm2m"

// Object is one object of the client's tree. The tree checks paths and the
// model's operations before it calls an Object, so implementations only
// deal with paths that exist in their model and operations the model
// allows. Methods return the package's sentinel errors (ErrNotFound,
// ErrBadRequest, …) wrapped with context. Implementations must be safe for
// concurrent use.
type Object interface {
	// Model describes the object; its ID is the object id.
	Model() *lwm2m.ObjectModel
	// Instances returns the instance ids in ascending order.
	Instances() []uint16
	// Read returns the values under p, an instance, resource or resource
	// instance path, at resource or resource-instance level. Resources that
	// are not present (optional, unset) are left out; a resource path that
	// is not present is ErrNotFound.
	Read(p lwm2m.Path) ([]lwm2m.Record, error)
	// Write stores recs, all under p (an instance, resource or resource
	// instance path), already typed by the model. replace is the PUT
	// semantics of Core §6.3.3: a multiple-instance resource in recs loses
	// the instances not given; otherwise (POST, partial update) instances
	// are added or changed.
	Write(p lwm2m.Path, recs []lwm2m.Record, replace bool) error
	// Execute runs an executable resource with the Execute arguments (Core
	// §5.4.5, e.g. "0='x',1").
	Execute(p lwm2m.Path, args string) error
	// Create adds instance id with the given values.
	Create(id uint16, recs []lwm2m.Record) error
	// Delete removes an instance.
	Delete(id uint16) error
}

// Notifier is implemented by objects whose values change on their own (a
// sensor, a clock): the tree installs a function that the object calls
// with the paths that changed, which drives Observe notifications.
type Notifier interface {
	SetNotify(func(paths ...lwm2m.Path))
}
