package coap

import (
	"hash/fnv"
	"strings"
	"time"
	"unicode/utf8"
)

// block1Key identifies a Block1 transfer: the peer and the request's method
// and URI (RFC 7959 §2.5).
type block1Key struct {
	peer PeerKey
	uri  string
}

type block1State struct {
	buf     []byte
	expires int64
}

// knownOptions are the options this endpoint understands; a request with
// another critical option gets 4.02 (RFC 7252 §5.4.1).
func knownOption(id OptionID) bool {
	switch id {
	case IfMatch, URIHost, ETag, IfNoneMatch, Observe, URIPort, LocationPath, URIPath,
		ContentFormat, MaxAge, URIQuery, Accept, LocationQuery, Block2, Block1, Size2, Size1, NoResponse:
		return true
	}
	return false
}

// receiveRequest deduplicates (RFC 7252 §4.5) and queues a request.
func (e *Endpoint) receiveRequest(m *Message, from Peer, now time.Time) {
	mk := midKey{from.Key(), m.MessageID}
	ns := now.UnixNano()
	e.mu.Lock()
	e.dedup.expire(ns)
	if d := e.dedup.get(mk); d != nil {
		if d.rerun && d.done && m.Type == Confirmable {
			d.rerun, d.done = false, false
			ref := d.ref() // d is the cache's: read under e.mu
			e.mu.Unlock()
			e.stats.duplicates.Add(1)
			e.serveRequest(job{peer: from, msg: m, entry: ref})
			return
		}
		reply := e.dedup.replyOf(d)
		e.mu.Unlock()
		e.stats.duplicates.Add(1)
		if reply != nil && m.Type == Confirmable {
			e.write(reply, from)
		}
		return
	}
	ref := e.dedup.add(mk, ns+e.cfg.exchangeLifetime().Nanoseconds()).ref()
	e.mu.Unlock()
	e.stats.requests.Add(1)
	e.serveRequest(job{peer: from, msg: m, entry: ref})
}

// serveRequest hands a request to its peer's worker; a full queue gets
// 5.03 with Max-Age.
func (e *Endpoint) serveRequest(j job) {
	m, d, from := j.msg, j.entry, j.peer
	if m.Type == Confirmable && e.cfg.ProcessingDelay > 0 {
		j.timer = time.AfterFunc(e.cfg.ProcessingDelay, func() { e.emptyAck(d, m.MessageID, from) })
	}
	if !e.dispatch(j) {
		if j.timer != nil {
			j.timer.Stop()
		}
		if m.Type == Confirmable {
			r := &Message{Type: Acknowledgement, Code: ServiceUnavailable, MessageID: m.MessageID, Token: m.Token}
			r.SetUint(MaxAge, 2)
			e.replyOnce(d, r, from)
		}
	}
}

// markDone notes that the handling of r's message finished.
func (e *Endpoint) markDone(r dedupRef) {
	e.mu.Lock()
	if d := e.dedup.at(r); d != nil {
		d.done = true
	}
	e.mu.Unlock()
}

// emptyAck acknowledges a CON request whose handler is slow, so the peer
// stops retransmitting; the response then goes separately (§5.2.2).
func (e *Endpoint) emptyAck(r dedupRef, mid uint16, to Peer) {
	b, _ := (&Message{Type: Acknowledgement, MessageID: mid}).Marshal()
	e.mu.Lock()
	d := e.dedup.at(r)
	if d != nil && (d.done || d.emptyAck) {
		e.mu.Unlock()
		return
	}
	if d != nil {
		d.emptyAck = true
		e.dedup.setReply(d, b)
	}
	e.mu.Unlock()
	e.write(b, to)
}

// serve runs a request on a worker.
func (e *Endpoint) serve(j job) {
	req := j.msg
	for _, o := range req.Options {
		if o.ID.Critical() && !knownOption(o.ID) {
			e.respond(j, ErrorResponse(BadOption, "unsupported critical option"))
			return
		}
	}
	var echo *Block
	if b1, ok := req.Block(Block1); ok {
		full, resp := e.reassemble(j.peer, req, b1)
		if resp != nil {
			e.respond(j, resp)
			return
		}
		req = full
		echo = &Block{Num: b1.Num, SZX: b1.SZX}
	} else if req.HasOption(Block1) {
		e.respond(j, ErrorResponse(BadOption, "invalid Block1"))
		return
	}
	r := &Request{Peer: j.peer, Message: req, Endpoint: e}
	r.answer = func(resp *Response) {
		if resp != nil && echo != nil {
			resp.SetBlock(Block1, *echo)
		}
		e.respond(j, resp)
	}
	resp := e.h.ServeCoAP(e.ctx, r)
	if r.deferred {
		return // the handler answers through Request.Defer
	}
	r.answer(resp)
}

// reassemble collects Block1 blocks (RFC 7959 §2.3, §2.5). It returns the
// whole request, or the response to send now (2.31 Continue, 4.08, 4.13).
func (e *Endpoint) reassemble(from Peer, req *Message, b1 Block) (*Message, *Response) {
	k := block1Key{peer: from.Key(), uri: req.Code.String() + " " + req.Path() + "?" + strings.Join(req.Queries(), "&")}
	now := time.Now().UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	if s1, ok := req.Uint(Size1); ok && int(s1) > e.cfg.MaxBodySize {
		delete(e.block1, k)
		return nil, e.tooLargeResponse()
	}
	st := e.block1[k]
	if b1.Num == 0 {
		if st == nil {
			if len(e.block1) >= e.cfg.MaxBlockTransfers {
				return nil, ErrorResponse(ServiceUnavailable, "too many block-wise transfers")
			}
			st = &block1State{}
			e.block1[k] = st
		}
		st.buf = st.buf[:0]
	} else if st == nil || b1.Offset() != len(st.buf) {
		delete(e.block1, k)
		return nil, ErrorResponse(RequestEntityIncomplete, "block out of sequence")
	}
	if b1.More && len(req.Payload) != b1.Size() {
		delete(e.block1, k)
		return nil, ErrorResponse(BadRequest, "block payload does not match its size")
	}
	if len(st.buf)+len(req.Payload) > e.cfg.MaxBodySize {
		delete(e.block1, k)
		return nil, e.tooLargeResponse()
	}
	st.buf = append(st.buf, req.Payload...)
	st.expires = now + e.cfg.exchangeLifetime().Nanoseconds()
	if b1.More {
		r := NewResponse(Continue)
		r.SetBlock(Block1, Block{Num: b1.Num, More: true, SZX: min(b1.SZX, SZXFor(e.cfg.BlockSize))})
		return nil, r
	}
	delete(e.block1, k)
	full := cloneShallow(req)
	full.Payload = st.buf
	full.RemoveOption(Block1)
	full.RemoveOption(Size1)
	return full, nil
}

func (e *Endpoint) tooLargeResponse() *Response {
	r := ErrorResponse(RequestEntityTooLarge, "body too large")
	r.SetUint(Size1, uint32(e.cfg.MaxBodySize))
	return r
}

// respond sends the handler's response: piggybacked on the ACK when the
// request is still unacknowledged, separately otherwise (RFC 7252 §5.2).
func (e *Endpoint) respond(j job, resp *Response) {
	req, d := j.msg, j.entry
	if j.timer != nil {
		j.timer.Stop()
	}
	if resp == nil {
		if req.Type == Confirmable {
			e.mu.Lock()
			send := true
			if x := e.dedup.at(d); x != nil {
				send = !x.emptyAck && !x.done
			}
			e.mu.Unlock()
			if send {
				e.replyOnce(d, &Message{Type: Acknowledgement, MessageID: req.MessageID}, j.peer)
				return
			}
		}
		e.markDone(d)
		return
	}
	m := cloneShallow(&resp.Message)
	m.Token = req.Token
	num, szx := uint32(0), SZXFor(e.cfg.BlockSize)
	b2, asked := req.Block(Block2)
	if asked {
		num, szx = b2.Num, min(szx, b2.SZX)
	}
	base := m
	m, err := e.block2(cloneShallow(base), resp, num, szx, asked)
	if err != nil {
		m = &Message{Code: BadOption, Token: req.Token, Payload: []byte(err.Error())}
	}
	verified := e.verified(j.peer)
	if !verified {
		m = e.fitUnverified(req, base, m, resp, num, szx)
	}
	e.mu.Lock()
	separate := false
	if x := e.dedup.at(d); x != nil {
		separate = x.emptyAck
	}
	e.mu.Unlock()
	switch {
	case req.Type == Confirmable && !separate && resp.Body != nil && req.Code == GET:
		m.Type = Acknowledgement
		m.MessageID = req.MessageID
		e.replyRerun(d, m, j.peer)
	case req.Type == Confirmable && !separate:
		m.Type = Acknowledgement
		m.MessageID = req.MessageID
		e.replyOnce(d, m, j.peer)
	case req.Type == Confirmable:
		m.Type = Confirmable
		x := &exchange{peer: j.peer, key: j.peer.Key(), con: true, oneWay: true}
		if err := e.start(x, m, false); err != nil {
			e.log.Debug("separate response", "peer", j.peer.Addr, "err", err)
		}
		e.markDone(d)
	default:
		m.Type = NonConfirmable
		x := &exchange{peer: j.peer, key: j.peer.Key(), oneWay: true}
		_ = e.start(x, m, false)
		e.markDone(d)
	}
	if resp.Then != nil {
		resp.Then()
	}
}

// block2 cuts block num out of a large body (RFC 7959 §2.4), adding Block2,
// Size2 and — when the handler set none — an ETag computed from the body
// so the receiver notices a change between blocks.
func (e *Endpoint) block2(m *Message, resp *Response, num uint32, szx uint8, asked bool) (*Message, error) {
	total := int64(len(resp.Payload))
	if resp.Body != nil {
		total = resp.BodySize
	}
	size := int64(1) << (szx + 4)
	if total <= size && !asked && resp.Body == nil {
		return m, nil
	}
	off := int64(num) * size
	if off > total || (off == total && total > 0) {
		return nil, blockErr("block %d is past the end of a %d-byte body", num, total)
	}
	end := min(off+size, total)
	if resp.Body != nil {
		buf := make([]byte, end-off)
		n, err := resp.Body.ReadAt(buf, off)
		if int64(n) < end-off {
			return nil, blockErr("reading the body at %d: %v", off, err)
		}
		m.Payload = buf
	} else {
		m.Payload = resp.Payload[off:end]
	}
	m.SetBlock(Block2, Block{Num: num, More: end < total, SZX: szx})
	m.SetUint(Size2, uint32(total))
	if !m.HasOption(ETag) && resp.Body == nil {
		h := fnv.New64a()
		_, _ = h.Write(resp.Payload)
		m.SetOption(ETag, h.Sum(nil))
	}
	return m, nil
}

// minAnswer is what an unverified peer may always get, whatever the size
// of its request: an error code with a short diagnostic, a 16-byte block.
const minAnswer = 64

// fitUnverified keeps a response to a peer whose address is not verified
// within AmplificationFactor times its request (RFC 7252 §11.3: no
// responses to unverified sources "significantly larger than the
// request"): a body goes in smaller Block2 blocks, which the peer then
// asks for one by one (RFC 7959 §2.4 lets the server pick a smaller block
// size than asked, the block number scaled to the same offset), and an
// error's diagnostic is cut. base is the response before block2 cut it.
func (e *Endpoint) fitUnverified(req, base, m *Message, resp *Response, num uint32, szx uint8) *Message {
	limit := max(e.cfg.AmplificationFactor*req.size(), minAnswer)
	if m.size() <= limit {
		return m
	}
	e.stats.trimmed.Add(1)
	if !m.Code.IsSuccess() {
		cut := cloneShallow(m)
		room := max(limit-(m.size()-len(m.Payload)), 0)
		cut.Payload = truncateUTF8(m.Payload, room)
		return cut
	}
	if len(resp.Payload) == 0 && resp.Body == nil {
		return m
	}
	off := int64(num) << (szx + 4)
	smallest := m
	for s := int(szx) - 1; s >= 0; s-- {
		b, err := e.block2(cloneShallow(base), resp, uint32(off>>(s+4)), uint8(s), true)
		if err != nil {
			return m
		}
		smallest = b
		if b.size() <= limit {
			break
		}
	}
	return smallest
}

// truncateUTF8 cuts s to at most n bytes without splitting a character
// (a diagnostic payload is UTF-8, RFC 7252 §5.5.2).
func truncateUTF8(s []byte, n int) []byte {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
