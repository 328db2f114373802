package webui

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

type objectView struct {
	ID        uint16
	Name      string
	Instances []instanceView
	Open      bool // has a recent value: shown unfolded
}

type instanceView struct {
	Path      string
	Resources []resourceView
}

type resourceView struct {
	Path       string
	ID         uint16
	Name       string
	Units      string
	Type       string
	Ops        string
	Value      string
	Time       time.Time
	Readable   bool
	Writable   bool
	Executable bool
	Numeric    bool
	Confirm    string // a destructive execute: what to ask about
}

type devicePageData struct {
	Device  store.Endpoint
	Status  string
	Objects []objectView
	Ops     []store.Operation
	Events  eventsPanel
	Logs    logView
	Charts  []resourceView
	// Destructive lists the executes the op form asks about.
	Destructive string
}

// IPSO sensors (Smart Objects guideline) carry their unit as a value of
// resource 5701 rather than in the model; these are the resources it
// qualifies.
const ipsoSensorUnits = 5701

var ipsoMeasured = map[uint16]bool{5700: true, 5601: true, 5602: true, 5603: true, 5604: true}

// linkPaths reads the object and instance paths of a registration's CoRE
// link list (Core §6.2.1: "</1/0>,</3/0>;ver=1.1,</3303/0>").
func linkPaths(links string) []lwm2m.Path {
	var out []lwm2m.Path
	for _, l := range strings.Split(links, ",") {
		l = strings.TrimSpace(l)
		a, b := strings.IndexByte(l, '<'), strings.IndexByte(l, '>')
		if a != 0 || b < 2 {
			continue
		}
		p, err := lwm2m.ParsePath(l[1:b])
		if err != nil || p.IsRoot() || p.Len() > 2 {
			continue
		}
		out = append(out, p)
	}
	return out
}

// objectTree merges what the device announced with what it reported, and
// lays each instance out by its object model so that any resource can be
// read, written or executed even before it has a value.
func (s *Server) objectTree(links string, latest []Reading) []objectView {
	instances := map[lwm2m.Path]bool{}
	objects := map[uint16]bool{}
	for _, p := range linkPaths(links) {
		objects[p.ObjectID()] = true
		if p.Len() == 2 {
			instances[p] = true
		}
	}
	byRes := map[lwm2m.Path][]Reading{}
	for _, r := range latest {
		// Registration events are stored as readings of object 10240;
		// they belong in the event list, not the device's object tree.
		if r.Path.Len() < 3 || r.Path.ObjectID() == store.RegistrationObject {
			continue
		}
		objects[r.Path.ObjectID()] = true
		instances[r.Path.Truncate(2)] = true
		byRes[r.Path.Truncate(3)] = append(byRes[r.Path.Truncate(3)], r)
	}
	var oids []uint16
	for id := range objects {
		oids = append(oids, id)
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	var insts []lwm2m.Path
	for p := range instances {
		insts = append(insts, p)
	}
	sort.Slice(insts, func(i, j int) bool { return insts[i].Compare(insts[j]) < 0 })

	var out []objectView
	for _, oid := range oids {
		ov := objectView{ID: oid, Name: "Object " + lwm2m.NewPath(oid).Relative()}
		model, known := s.deps.Registry.Object(oid)
		if known {
			ov.Name = model.Name
		}
		for _, ip := range insts {
			if ip.ObjectID() != oid {
				continue
			}
			iv := instanceView{Path: ip.Relative()}
			var rids []uint16
			if known {
				rids = model.ResourceIDs()
			}
			seen := map[uint16]bool{}
			for _, id := range rids {
				seen[id] = true
			}
			for p := range byRes {
				if p.Truncate(2) == ip && !seen[p.ResourceID()] {
					rids = append(rids, p.ResourceID())
					seen[p.ResourceID()] = true
				}
			}
			sort.Slice(rids, func(i, j int) bool { return rids[i] < rids[j] })
			for _, rid := range rids {
				rp := ip.Append(rid)
				rv := resourceView{Path: rp.Relative(), ID: rid, Name: "Resource " + rp.Relative(), Readable: true, Writable: true, Executable: true}
				if m, ok := s.deps.Registry.Resource(oid, rid); ok {
					rv.Name, rv.Units, rv.Type, rv.Ops = m.Name, unitLabel(m.Units), m.Type.String(), m.Operations.String()
					if rv.Executable = m.Operations&lwm2m.OpExecute != 0; rv.Executable {
						if what, ok := destructiveExecutes[[2]uint16{oid, rid}]; ok {
							rv.Confirm = what
						}
					}
					rv.Readable, rv.Writable, rv.Executable = m.Operations&lwm2m.OpRead != 0, m.Operations&lwm2m.OpWrite != 0, m.Operations&lwm2m.OpExecute != 0
					switch m.Type {
					case lwm2m.TypeInteger, lwm2m.TypeUnsigned, lwm2m.TypeFloat:
						rv.Numeric = !m.Multiple
					}
				}
				if rv.Units == "" && ipsoMeasured[rid] {
					if u := byRes[ip.Append(ipsoSensorUnits)]; len(u) > 0 {
						rv.Units = u[0].Value.Text()
					}
				}
				if rs := byRes[rp]; len(rs) > 0 {
					var parts []string
					for _, r := range rs {
						if r.Path.Len() == 4 {
							parts = append(parts, r.Path.Relative()[len(rp.Relative())+1:]+": "+valueText(r.Value, rv.Type))
						} else {
							parts = append(parts, valueText(r.Value, rv.Type))
						}
						if r.Time.After(rv.Time) {
							rv.Time = r.Time
						}
						if _, ok := r.Value.Number(); ok && rv.Type == "" && r.Path.Len() == 3 {
							rv.Numeric = true
						}
					}
					rv.Value = strings.Join(parts, ", ")
				}
				iv.Resources = append(iv.Resources, rv)
			}
			ov.Instances = append(ov.Instances, iv)
		}
		out = append(out, ov)
	}
	return out
}

func (s *Server) devicePage(c *echo.Context) (devicePageData, error) {
	ctx := c.Request().Context()
	ep := c.Param("ep")
	d, err := s.deps.Store.Endpoint(ctx, ep)
	if err != nil {
		return devicePageData{}, err
	}
	latest, err := s.deps.Data.Latest(ctx, ep)
	if err != nil {
		return devicePageData{}, err
	}
	pd := devicePageData{Device: d, Status: s.status(d), Objects: s.objectTree(d.ObjectLinks, latest)}
	openObjects(pd.Objects, s.now())
	pd.Destructive = destructiveList(pd.Objects)
	for _, o := range pd.Objects {
		for _, in := range o.Instances {
			for _, r := range in.Resources {
				if chartable(r, o.ID) {
					pd.Charts = append(pd.Charts, r)
				}
			}
		}
	}
	// Sensor readings are what people open a device for; chart them first.
	sort.SliceStable(pd.Charts, func(i, j int) bool {
		return ipsoMeasured[pd.Charts[i].ID] && !ipsoMeasured[pd.Charts[j].ID]
	})
	return pd, nil
}

func (s *Server) pageDevice(c *echo.Context) error {
	pd, err := s.devicePage(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if s.deps.Operations != nil {
		if pd.Ops, err = s.deps.Operations.List(ctx, pd.Device.Name, 20); err != nil {
			return err
		}
	}
	evs, err := s.deps.Data.Events(ctx, pd.Device.Name, eventsFetch)
	if err != nil {
		return err
	}
	pd.Events = s.eventsPanel(c, evs)
	if pd.Logs, err = s.buildLogView(c, pd.Device.Name, false); err != nil {
		return err
	}
	v := s.newView(c, pd.Device.Name, "devices", pd)
	v.Error = c.QueryParam("error")
	return s.render(c, http.StatusOK, "device", v)
}

// objectsPartial carries what the objects fragment needs, including
// whether to show action buttons.
type objectsPartial struct {
	Device     store.Endpoint
	Objects    []objectView
	CanOperate bool
}

func (s *Server) partialObjects(c *echo.Context) error {
	pd, err := s.devicePage(c)
	if err != nil {
		return err
	}
	u, _ := currentUser(c)
	return s.partial(c, "objects", objectsPartial{pd.Device, pd.Objects, Role(u.Role).rank() >= RoleOperator.rank()})
}

func (s *Server) partialOperations(c *echo.Context) error {
	if s.deps.Operations == nil {
		return s.partial(c, "operations", []store.Operation(nil))
	}
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	ops, err := s.deps.Operations.List(c.Request().Context(), ep, 20)
	if err != nil {
		return err
	}
	return s.partial(c, "operations", ops)
}

func (s *Server) partialEvents(c *echo.Context) error {
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	evs, err := s.deps.Data.Events(c.Request().Context(), ep, eventsFetch)
	if err != nil {
		return err
	}
	return s.partial(c, "events", s.eventsPanel(c, evs))
}

type opResult struct {
	Op     store.Operation
	Pretty string
	Error  string
}

// Done reports whether the operation ended (for the template).
func (r opResult) Done() bool { return opDone(r.Op) }

// partialOperate queues an operation from the device page and waits a few
// seconds for it, so that a Read shows its value right where it was asked.
func (s *Server) partialOperate(c *echo.Context) error {
	b := operationBody{Type: c.FormValue("type"), Path: strings.TrimSpace(c.FormValue("path")), Args: c.FormValue("args")}
	if v := c.FormValue("value"); v != "" || b.Type == "write" {
		b.Value, _ = json.Marshal(v)
	}
	if f := c.FormValue("format"); f != "" {
		b.Format, _ = json.Marshal(f)
	}
	if b.Type == "write-attributes" {
		b.Attributes = map[string]string{}
		for _, k := range []string{"pmin", "pmax", "gt", "lt", "st"} {
			if v := strings.TrimSpace(c.FormValue(k)); v != "" {
				b.Attributes[k] = v
			}
		}
	}
	c.Response().Header().Set("HX-Trigger", "fxop")
	op, err := s.queueOperation(c, c.Param("ep"), b)
	if err != nil {
		code, msg := statusOf(err)
		if code >= 500 && code != http.StatusServiceUnavailable {
			return err
		}
		return s.partial(c, "op-result", opResult{Error: msg})
	}
	op, err = s.waitFor(c.Request().Context(), op, min(10*time.Second, s.cfg.MaxWait))
	if err != nil {
		return err
	}
	r := opResult{Op: op}
	if len(op.Result) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, op.Result, "", "  ") == nil {
			r.Pretty = buf.String()
		}
	}
	return s.partial(c, "op-result", r)
}
