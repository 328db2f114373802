package client

import (
	"fmt"
	"slices"

	"github.com/flownexus/flownexus/lwm2m"
)

// objectVersion returns the version an object link carries, empty for 1.0
// (Core §6.2.1: the version is given when it is not 1.0).
func objectVersion(m *lwm2m.ObjectModel) string {
	if m.Version == "" || m.Version == "1.0" {
		return ""
	}
	return m.Version
}

// registrationLinks is the Register/Update payload (Core §6.2.1): the root
// with the content formats the client prefers (1.1+), then every object the
// server may see, with its version, as its instances, or bare when it has
// none.
func (c *Client) registrationLinks() []byte {
	rp := lwm2m.RegisterPayload{RootPath: "/"}
	if c.cfg.Version != Version10 {
		rp.ContentFormats = []lwm2m.Format{c.preferredFormat()}
	}
	for _, id := range c.tree.ObjectIDs() {
		if !serverVisible(id) {
			continue
		}
		o, ok := c.tree.Object(id)
		if !ok {
			continue
		}
		rp.Objects = append(rp.Objects, lwm2m.RegisteredObject{ID: id, Version: objectVersion(o.Model()), Instances: o.Instances()})
	}
	return rp.Format()
}

// Discover answers a Discover on p (Core 1.1 §6.3.2 / 1.0 §5.4.2): for an
// object its link with version and attributes, its instances and their
// resources; for an instance the same from the instance down; for a
// resource its link with the attributes it gets from every level.
// Multiple resources carry dim, the number of their instances.
func (c *Client) Discover(p lwm2m.Path) ([]byte, error) {
	o, rm, err := c.tree.lookup("discover", p)
	if err != nil {
		return nil, err
	}
	if p.Len() > 3 {
		return nil, fmt.Errorf("client: discover %s: %w: discover stops at resources", p, ErrBadRequest)
	}
	if rm != nil {
		l := lwm2m.DiscoverLink{Path: p, Attrs: c.obs.effectiveAt(p)}
		l.Dim = c.dim(o, p, rm)
		return lwm2m.FormatDiscover([]lwm2m.DiscoverLink{l}), nil
	}
	var links []lwm2m.DiscoverLink
	var insts []uint16
	if p.IsObject() {
		links = append(links, lwm2m.DiscoverLink{Path: p, Version: objectVersion(o.Model()), Attrs: c.obs.attrsAt(p)})
		insts = o.Instances()
	} else {
		insts = []uint16{p.InstanceID()}
	}
	for _, i := range insts {
		ip := lwm2m.NewPath(p.ObjectID(), i)
		links = append(links, lwm2m.DiscoverLink{Path: ip, Attrs: c.obs.attrsAt(ip)})
		for _, rid := range c.presentResources(o, ip) {
			rp := ip.Append(rid)
			links = append(links, lwm2m.DiscoverLink{Path: rp, Attrs: c.obs.attrsAt(rp), Dim: c.dim(o, rp, o.Model().Resources[rid])})
		}
	}
	return lwm2m.FormatDiscover(links), nil
}

// presentResources lists the resources an instance has: those with values
// and the executable ones of the model.
func (c *Client) presentResources(o Object, ip lwm2m.Path) []uint16 {
	var ids []uint16
	if recs, err := o.Read(ip); err == nil {
		for _, r := range recs {
			if !slices.Contains(ids, r.Path.ResourceID()) {
				ids = append(ids, r.Path.ResourceID())
			}
		}
	}
	for id, rm := range o.Model().Resources {
		if rm.Operations&lwm2m.OpExecute != 0 && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// dim is the number of instances of a multiple resource (Core §5.1.1).
func (c *Client) dim(o Object, rp lwm2m.Path, rm *lwm2m.ResourceModel) lwm2m.UintAttr {
	if rm == nil || !rm.Multiple {
		return lwm2m.UintAttr{}
	}
	recs, err := o.Read(rp)
	if err != nil {
		return lwm2m.AttrUint(0)
	}
	return lwm2m.AttrUint(uint64(len(recs)))
}
