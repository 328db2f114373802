package client

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// ServeCoAP answers the server's device-management and information-reporting
// requests (Core §6.3, §6.4; Transport §6.4 for the CoAP mapping):
//
//	GET            Read, Discover (Accept link-format), Observe (Observe=0/1)
//	FETCH          Read-Composite, Observe-Composite (Observe=0/1)
//	PUT            Write (replace), Write-Attributes (URI-Query, no payload)
//	POST           Create (/O), Write partial update (/O/I), Execute (/O/I/R)
//	iPATCH         Write-Composite
//	DELETE         Delete
func (c *Client) ServeCoAP(ctx context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	if c.bootstrapHandler != nil && isBootstrapPath(m) {
		return c.bootstrapHandler.ServeCoAP(ctx, r)
	}
	c.stats.requests.Add(1)
	p, err := lwm2m.ParsePath(strings.Join(m.PathSegments(), "/"))
	if err != nil {
		return c.fail(coap.NotFound, err)
	}
	accept := lwm2m.FormatNone
	if a, ok := m.Accept(); ok {
		accept = lwm2m.Format(a)
	}
	ct := lwm2m.FormatNone
	if f, ok := m.ContentFormat(); ok {
		ct = lwm2m.Format(f)
	}
	obs, hasObs := m.Observe()
	switch m.Code {
	case coap.GET:
		if accept == lwm2m.FormatLinkFormat {
			b, err := c.Discover(p)
			if err != nil {
				return c.fail(CodeOf(err), err)
			}
			return content(b, lwm2m.FormatLinkFormat)
		}
		if hasObs && obs == 1 {
			c.obs.cancel(string(m.Token))
		}
		recs, err := c.tree.Read(p)
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		b, f, err := encodeAnswer(c.cfg.Version, accept, p, recs, c.tree.Registry())
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		resp := content(b, f)
		if hasObs && obs == 0 {
			c.startObservation(r, resp, []lwm2m.Path{p}, false, f, recs)
		}
		return resp
	case coap.FETCH:
		paths, err := decodePathList(ct, m.Payload)
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		if hasObs && obs == 1 {
			c.obs.cancel(string(m.Token))
		}
		recs, err := c.tree.ReadComposite(paths)
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		if accept == lwm2m.FormatNone && ct.Composite() {
			// Answer in the format the request came in (Core §6.3.8).
			accept = ct
		}
		b, f, err := encodeComposite(accept, recs, c.tree.Registry())
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		resp := content(b, f)
		if hasObs && obs == 0 {
			c.startObservation(r, resp, paths, true, f, recs)
		}
		return resp
	case coap.PUT:
		if len(m.Payload) == 0 && len(m.Queries()) > 0 {
			if err := c.writeAttributes(p, m.Queries()); err != nil {
				return c.fail(CodeOf(err), err)
			}
			return coap.NewResponse(coap.Changed)
		}
		if err := c.write(p, ct, m.Payload, true); err != nil {
			return c.fail(CodeOf(err), err)
		}
		return coap.NewResponse(coap.Changed)
	case coap.POST:
		switch p.Len() {
		case 1:
			var recs []lwm2m.Record
			if len(m.Payload) > 0 {
				if recs, err = decodeRequest(ct, p, m.Payload, c.tree.Registry()); err != nil {
					return c.fail(CodeOf(err), err)
				}
			}
			ip, err := c.tree.Create(p, recs)
			if err != nil {
				return c.fail(CodeOf(err), err)
			}
			c.objectsChanged()
			resp := coap.NewResponse(coap.Created)
			// Location-Path names the new instance as "O" "I", as Zephyr and
			// Wakaama send it (Transport §6.4, Create).
			resp.AddOption(coap.LocationPath, []byte(strconv.Itoa(int(ip.ObjectID()))))
			resp.AddOption(coap.LocationPath, []byte(strconv.Itoa(int(ip.InstanceID()))))
			return resp
		case 2:
			if err := c.write(p, ct, m.Payload, false); err != nil {
				return c.fail(CodeOf(err), err)
			}
			return coap.NewResponse(coap.Changed)
		case 3:
			return c.execute(p, string(m.Payload))
		}
		return c.fail(coap.MethodNotAllowed, errors.New("POST needs an object, instance or resource"))
	case coap.IPATCH:
		if !p.IsRoot() {
			return c.fail(coap.MethodNotAllowed, errors.New("Write-Composite targets /"))
		}
		recs, err := decodeRequest(ct, lwm2m.Path{}, m.Payload, c.tree.Registry())
		if err != nil {
			return c.fail(CodeOf(err), err)
		}
		if err := c.tree.WriteComposite(recs); err != nil {
			return c.fail(CodeOf(err), err)
		}
		return coap.NewResponse(coap.Changed)
	case coap.DELETE:
		if err := c.tree.Delete(p); err != nil {
			return c.fail(CodeOf(err), err)
		}
		c.objectsChanged()
		return coap.NewResponse(coap.Deleted)
	}
	return c.fail(coap.MethodNotAllowed, errors.New("method not supported"))
}

// isBootstrapPath reports the Bootstrap-Finish and Bootstrap-Discover/Write
// requests that go to the bootstrap hook when one is installed.
func isBootstrapPath(m *coap.Message) bool {
	segs := m.PathSegments()
	return len(segs) == 1 && segs[0] == "bs"
}

func content(b []byte, f lwm2m.Format) *coap.Response {
	resp := coap.NewResponse(coap.Content)
	resp.SetContentFormat(uint16(f))
	resp.Payload = b
	return resp
}

// execute runs an Execute (Core §6.3.5). A Register or Update that the
// resource asks for (Reboot, Core §E.4 resource 4) waits until this answer
// has gone out: a server that saw the new Register first would end the
// registration the Execute was sent to, and the Execute with it.
func (c *Client) execute(p lwm2m.Path, args string) (resp *coap.Response) {
	c.execMu.RLock()
	defer func() {
		if resp == nil { // a panic: there is no answer to wait for
			c.execMu.RUnlock()
			return
		}
		resp.Then = c.execMu.RUnlock
	}()
	if err := c.tree.Execute(p, args); err != nil {
		return c.fail(CodeOf(err), err)
	}
	return coap.NewResponse(coap.Changed)
}

// fail builds an error response with a diagnostic payload (RFC 7252 §5.5.2).
func (c *Client) fail(code coap.Code, err error) *coap.Response {
	c.stats.refused.Add(1)
	c.log.Debug("request refused", "code", code.String(), "err", err)
	return coap.ErrorResponse(code, err.Error())
}

// write decodes and stores a Write payload.
func (c *Client) write(p lwm2m.Path, ct lwm2m.Format, payload []byte, replace bool) error {
	if p.Len() < 2 {
		_, _, err := c.tree.lookup("write", p)
		if err == nil {
			err = ErrMethodNotAllowed
		}
		return err
	}
	if len(payload) == 0 {
		return ErrBadRequest
	}
	// Resolve the path first so that an unknown target is 4.04 whatever the
	// payload holds.
	if _, _, err := c.tree.lookup("write", p); err != nil {
		return err
	}
	recs, err := decodeRequest(ct, p, payload, c.tree.Registry())
	if err != nil {
		return err
	}
	return c.tree.Write(p, recs, replace)
}

// writeAttributes handles Write-Attributes on p (Core §6.3.4).
func (c *Client) writeAttributes(p lwm2m.Path, queries []string) error {
	if p.IsRoot() {
		return ErrMethodNotAllowed
	}
	_, rm, err := c.tree.lookup("write-attributes", p)
	if err != nil {
		return err
	}
	u, err := parseWriteAttributes(p, queries, rm)
	if err != nil {
		return err
	}
	return c.obs.writeAttributes(p, u, rm)
}
