package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// The operation types of API.md, and whether each takes several paths.
var operationTypes = map[string]bool{
	"read": false, "write": false, "execute": false, "observe": false, "cancel-observe": false,
	"discover": false, "write-attributes": false, "create": false, "delete": false,
	"read-composite": true, "write-composite": true, "observe-composite": true,
}

// Write-Attributes parameters (Core §5.1.2), all numeric except none.
var attributeNames = map[string]bool{
	"pmin": true, "pmax": true, "gt": true, "lt": true, "st": true,
	"epmin": true, "epmax": true, "edge": true, "con": true, "hqmax": true,
}

type operationBody struct {
	Type       string            `json:"type"`
	Path       string            `json:"path"`
	Paths      []string          `json:"paths"`
	Value      json.RawMessage   `json:"value"`
	Args       string            `json:"args"`
	Attributes map[string]string `json:"attributes"`
	Format     json.RawMessage   `json:"format"`
	// Partial makes a write a partial update (CoAP POST) that leaves the
	// resources it does not name alone; the default replaces (PUT).
	Partial bool `json:"partial"`
}

// unprocessable is a well-formed request that cannot be done (422).
func unprocessable(format string, args ...any) error {
	return errorf(http.StatusUnprocessableEntity, format, args...)
}

// operationRequest validates a request against the object models: a write
// to a read-only resource, an execute on a value or a value of the wrong
// type are refused here rather than by the device minutes later.
func (s *Server) operationRequest(b operationBody) (OperationRequest, error) {
	composite, ok := operationTypes[b.Type]
	if !ok {
		return OperationRequest{}, unprocessable("type %q unknown (read, write, execute, observe, cancel-observe, discover, write-attributes, create, delete, read-composite, write-composite, observe-composite)", b.Type)
	}
	req := OperationRequest{Type: b.Type, Args: b.Args, Format: lwm2m.FormatNone, Partial: b.Partial}
	if b.Partial && b.Type != "write" {
		return req, unprocessable("partial applies to write only")
	}
	raw := b.Paths
	if b.Path != "" {
		raw = append([]string{b.Path}, raw...)
	}
	if len(raw) == 0 && b.Type == "write-composite" && len(b.Value) > 0 {
		raw = nil // the paths are the keys of value
	} else if len(raw) == 0 {
		return req, unprocessable("path is required")
	}
	if !composite && len(raw) > 1 {
		return req, unprocessable("%s takes one path", b.Type)
	}
	for _, r := range raw {
		p, err := lwm2m.ParsePath(r)
		if err != nil {
			return req, unprocessable("path %q: %v", r, err)
		}
		req.Paths = append(req.Paths, p)
	}
	if len(b.Format) > 0 && string(b.Format) != "null" {
		var name string
		if err := json.Unmarshal(b.Format, &name); err != nil {
			name = string(b.Format) // a bare number
		}
		f, err := lwm2m.ParseFormat(name)
		if err != nil {
			return req, unprocessable("format: %v", err)
		}
		req.Format = f
	}
	var p lwm2m.Path
	if len(req.Paths) > 0 {
		p = req.Paths[0]
	}
	switch b.Type {
	case "write":
		if len(b.Value) == 0 || string(b.Value) == "null" {
			return req, unprocessable("write needs a value")
		}
		if p.Len() < 3 {
			recs, err := s.recordsFromObject(p, b.Value)
			if err != nil {
				return req, err
			}
			if len(recs) == 0 {
				return req, unprocessable("write to %s needs at least one resource value", p.Relative())
			}
			req.Values = recs
			break
		}
		if err := s.checkOp(p, lwm2m.OpWrite, "written"); err != nil {
			return req, err
		}
		v, err := s.valueFor(p, b.Value)
		if err != nil {
			return req, err
		}
		req.Value = &v
	case "write-composite":
		if len(b.Value) == 0 || string(b.Value) == "null" || string(b.Value) == "{}" {
			return req, unprocessable("write-composite needs value: {\"<path>\": <value>, …}")
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b.Value, &m); err != nil {
			return req, unprocessable("write-composite value must be an object of path to value")
		}
		req.Paths = nil
		for k, raw := range m {
			rp, err := lwm2m.ParsePath(k)
			if err != nil || rp.Len() < 3 {
				return req, unprocessable("write-composite path %q must name a resource", k)
			}
			if err := s.checkOp(rp, lwm2m.OpWrite, "written"); err != nil {
				return req, err
			}
			v, err := s.valueFor(rp, raw)
			if err != nil {
				return req, err
			}
			req.Values = append(req.Values, lwm2m.Record{Path: rp, Value: v})
			req.Paths = append(req.Paths, rp)
		}
		if len(req.Values) == 0 {
			return req, unprocessable("write-composite needs at least one path and value")
		}
		lwm2m.SortRecords(req.Values)
	case "execute":
		if p.Len() != 3 {
			return req, unprocessable("execute needs a resource path (object/instance/resource)")
		}
		if err := s.checkOp(p, lwm2m.OpExecute, "executed"); err != nil {
			return req, err
		}
	case "read":
		if p.IsResource() || p.IsResourceInstance() {
			if err := s.checkOp(p, lwm2m.OpRead, "read"); err != nil {
				return req, err
			}
		}
	case "write-attributes":
		if len(b.Attributes) == 0 {
			return req, unprocessable("write-attributes needs attributes, e.g. {\"pmin\":\"10\"}")
		}
		for k, v := range b.Attributes {
			if !attributeNames[k] {
				return req, unprocessable("attribute %q unknown (pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax)", k)
			}
			if v != "" {
				if _, err := strconv.ParseFloat(v, 64); err != nil {
					return req, unprocessable("attribute %s=%q is not a number", k, v)
				}
			}
		}
		req.Attributes = b.Attributes
	case "create":
		if p.Len() != 1 && p.Len() != 2 {
			return req, unprocessable("create needs an object or object/instance path")
		}
		if len(b.Value) > 0 {
			recs, err := s.recordsFromObject(p, b.Value)
			if err != nil {
				return req, err
			}
			req.Values = recs
		}
	case "delete":
		if p.Len() != 2 {
			return req, unprocessable("delete needs an object/instance path")
		}
	}
	return req, nil
}

// checkOp refuses an operation the object model says the resource lacks.
// Resources without a model are let through: the device decides.
func (s *Server) checkOp(p lwm2m.Path, op lwm2m.Operations, verb string) error {
	m, ok := s.deps.Registry.Resource(p.ObjectID(), p.ResourceID())
	if !ok {
		return nil
	}
	if m.Operations&op == 0 {
		return unprocessable("resource %s (%s) cannot be %s: it allows %q", p.Relative(), m.Name, verb, m.Operations.String())
	}
	return nil
}

// valueFor turns a JSON value into a typed LwM2M value, using the model's
// type when there is one.
func (s *Server) valueFor(p lwm2m.Path, raw json.RawMessage) (lwm2m.Value, error) {
	t := lwm2m.TypeNone
	if m, ok := s.deps.Registry.Resource(p.ObjectID(), p.ResourceID()); ok {
		t = m.Type
	}
	v, err := jsonToValue(raw, t)
	if err != nil {
		return v, unprocessable("value for %s: %v", p.Relative(), err)
	}
	return v, nil
}

// recordsFromObject reads {"<res>": value, …} or {"<inst>/<res>": …} below
// p, for instance-level writes and create.
func (s *Server) recordsFromObject(p lwm2m.Path, raw json.RawMessage) ([]lwm2m.Record, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, unprocessable("value below %s must be an object of resource id to value", p.Relative())
	}
	var recs []lwm2m.Record
	for k, rv := range m {
		rel, err := lwm2m.ParsePath(p.Relative() + "/" + k)
		if err != nil || rel.Len() < 3 {
			return nil, unprocessable("%q below %s does not name a resource", k, p.Relative())
		}
		v, err := s.valueFor(rel, rv)
		if err != nil {
			return nil, err
		}
		recs = append(recs, lwm2m.Record{Path: rel, Value: v})
	}
	lwm2m.SortRecords(recs)
	return recs, nil
}

// jsonToValue converts one JSON scalar. Strings go through the type's text
// form (Core §7.4.1), so "12" writes an integer resource as well as 12 does.
func jsonToValue(raw json.RawMessage, t lwm2m.DataType) (lwm2m.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return lwm2m.Value{}, errors.New("missing")
	}
	switch raw[0] {
	case '"':
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return lwm2m.Value{}, err
		}
		if t == lwm2m.TypeNone {
			return lwm2m.String(str), nil
		}
		return lwm2m.ParseText(t, str)
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return lwm2m.Value{}, err
		}
		if t != lwm2m.TypeNone && t != lwm2m.TypeBoolean {
			return lwm2m.Value{}, fmt.Errorf("a boolean for a %s resource", t)
		}
		return lwm2m.Bool(b), nil
	case '{', '[', 'n':
		return lwm2m.Value{}, errors.New("want a string, number or boolean")
	}
	num := string(raw)
	switch t {
	case lwm2m.TypeNone:
		if i, err := strconv.ParseInt(num, 10, 64); err == nil {
			return lwm2m.Int(i), nil
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return lwm2m.Value{}, fmt.Errorf("%q is not a number", num)
		}
		return lwm2m.Float(f), nil
	case lwm2m.TypeString, lwm2m.TypeOpaque, lwm2m.TypeObjlnk, lwm2m.TypeCorelnk:
		return lwm2m.Value{}, fmt.Errorf("a number for a %s resource", t)
	}
	return lwm2m.ParseText(t, num)
}

type operationJSON struct {
	ID       int64           `json:"id"`
	Endpoint string          `json:"endpoint"`
	Type     string          `json:"type"`
	Paths    []string        `json:"paths"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"`
	Format   string          `json:"format,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	Created  string          `json:"created,omitempty"`
	Updated  string          `json:"updated,omitempty"`
}

func toOperationJSON(o store.Operation) operationJSON {
	j := operationJSON{ID: o.ID, Endpoint: o.Endpoint, Type: o.Type, Paths: o.Paths, Status: o.Status, Attempts: o.Attempts, Result: o.Result, Error: o.Error, Format: o.Format}
	if !o.Created.IsZero() {
		j.Created = rfc3339(o.Created)
	}
	if !o.Updated.IsZero() {
		j.Updated = rfc3339(o.Updated)
	}
	return j
}

// queueOperation checks that the device exists, validates and queues.
func (s *Server) queueOperation(c *echo.Context, ep string, b operationBody) (store.Operation, error) {
	if s.deps.Operations == nil {
		return store.Operation{}, errorf(http.StatusServiceUnavailable, "the operation dispatcher is not available")
	}
	ctx := c.Request().Context()
	if _, err := s.deps.Store.Endpoint(ctx, ep); err != nil {
		return store.Operation{}, err
	}
	req, err := s.operationRequest(b)
	if err != nil {
		return store.Operation{}, err
	}
	if u, ok := currentUser(c); ok {
		req.By = u.Name
	}
	op, err := s.deps.Operations.Queue(ctx, ep, req)
	if err != nil {
		return store.Operation{}, err
	}
	s.audit(c, "operation "+req.Type, ep+" "+strings.Join(pathStrings(req.Paths), ","))
	return op, nil
}

func pathStrings(ps []lwm2m.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Relative()
	}
	return out
}

// waitFor waits for an operation to end, at most d; it returns the latest
// state either way.
func (s *Server) waitFor(ctx context.Context, op store.Operation, d time.Duration) (store.Operation, error) {
	if opDone(op) || d <= 0 {
		return op, nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	got, err := s.deps.Operations.Wait(wctx, op.ID)
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return s.deps.Operations.Operation(ctx, op.ID)
	}
	return got, err
}

func (s *Server) apiQueueOperation(c *echo.Context) error {
	var wait time.Duration
	if w := c.QueryParam("wait"); w != "" {
		n, err := strconv.ParseFloat(w, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "wait must be a number of seconds")
		}
		wait = min(time.Duration(n*float64(time.Second)), s.cfg.MaxWait)
	}
	var b operationBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	op, err := s.queueOperation(c, c.Param("ep"), b)
	if err != nil {
		return err
	}
	if wait == 0 {
		return c.JSON(http.StatusAccepted, map[string]any{"id": op.ID, "status": op.Status})
	}
	op, err = s.waitFor(c.Request().Context(), op, wait)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toOperationJSON(op))
}

func (s *Server) apiGetOperation(c *echo.Context) error {
	if s.deps.Operations == nil {
		return errorf(http.StatusServiceUnavailable, "the operation dispatcher is not available")
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return errorf(http.StatusBadRequest, "operation id must be a positive integer")
	}
	op, err := s.deps.Operations.Operation(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toOperationJSON(op))
}

func (s *Server) apiListOperations(c *echo.Context) error {
	if s.deps.Operations == nil {
		return errorf(http.StatusServiceUnavailable, "the operation dispatcher is not available")
	}
	ep := c.Param("ep")
	if _, err := s.deps.Store.Endpoint(c.Request().Context(), ep); err != nil {
		return err
	}
	ops, err := s.deps.Operations.List(c.Request().Context(), ep, limitParam(c, 50))
	if err != nil {
		return err
	}
	out := make([]operationJSON, len(ops))
	for i, o := range ops {
		out[i] = toOperationJSON(o)
	}
	return c.JSON(http.StatusOK, map[string]any{"operations": out})
}

// limitParam reads ?limit= within 1..1000.
func limitParam(c *echo.Context, def int) int {
	n, err := strconv.Atoi(c.QueryParam("limit"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, 1000)
}
