package firmware

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// etagOf is an image's ETag: the first 8 bytes of its SHA-256, the same
// for every download of the image, so a client that resumes (Anjay does
// only with an ETag) knows it is the same representation (RFC 7252 §5.10.6,
// RFC 7959 §2.4).
func etagOf(sha string) []byte {
	b, _ := hex.DecodeString(sha[:16])
	return b
}

// imageKey extracts <id-or-sha256> from /fw/<key>; ok is false for any
// other shape (more segments, "..", empty).
func imageKey(segs []string) (string, bool) {
	if len(segs) != 2 || segs[0] != "fw" {
		return "", false
	}
	k := segs[1]
	if _, ok := parseID(k); ok || isHash(k) {
		return strings.ToLower(k), true
	}
	return "", false
}

// isToken reports whether s has the shape of a download token (store's
// 16 random bytes in hex).
func isToken(s string) bool { return isHex(s, 32) }

// ServeCoAP serves GET /fw/<id-or-sha256>[/<token>] to devices with an active
// deployment of the image, in Block2 blocks of the size the device asks
// for, from any block (RFC 7959 §2.2–2.4: lwm2m/coap cuts the block, adds
// Block2 and Size2), with a stable ETag, piggybacked on the ACK. Whoever
// has no permission gets a short error, never a block of the image, so a
// spoofed request earns no large answer.
func (s *Service) ServeCoAP(ctx context.Context, r *coap.Request) *coap.Response {
	if r.Message.Code != coap.GET {
		return coap.ErrorResponse(coap.MethodNotAllowed, "firmware is downloaded with GET")
	}
	segs, token := r.Message.PathSegments(), ""
	if len(segs) == 3 && isToken(segs[2]) {
		segs, token = segs[:2], segs[2]
	}
	key, ok := imageKey(segs)
	if !ok {
		return coap.ErrorResponse(coap.NotFound, "no such image")
	}
	fw, err := s.image(ctx, key)
	if err != nil {
		return coap.ErrorResponse(coap.NotFound, "no such image")
	}
	gr, known := s.access.lookup(fw.SHA256, token, r.Peer, s.dev.Registration)
	if gr == nil {
		if !known {
			return coap.ErrorResponse(coap.NotFound, "no such image")
		}
		return coap.ErrorResponse(coap.Forbidden, "this image is not being deployed to you")
	}
	// The source is the device a deployment names: its DTLS identity, or
	// the address of its current registration, which completed a round
	// trip with the server. Zephyr's pull client downloads from a socket of
	// its own, unknown to the endpoint, and must still get the block size
	// it asks for: the address counts as verified (RFC 7252 §11.3). A
	// spoofed copy of it could only send the blocks to the device itself.
	r.Endpoint.Verify(r.Peer)
	fh, err := s.lib.file(fw)
	if err != nil {
		s.log.Warn("image file missing", "id", fw.ID, "err", err)
		return coap.ErrorResponse(coap.InternalServerError, "image unavailable")
	}
	resp := coap.NewResponse(coap.Content)
	resp.SetContentFormat(uint16(lwm2m.FormatOpaque))
	resp.SetOption(coap.ETag, etagOf(fw.SHA256))
	resp.Body, resp.BodySize = fh, fw.Size
	num, szx := uint32(0), coap.SZXFor(r.Endpoint.Config().BlockSize)
	if b2, asked := r.Message.Block(coap.Block2); asked {
		num, szx = b2.Num, min(szx, b2.SZX)
	}
	bs := int64(1) << (szx + 4)
	if end := min(int64(num+1)*bs, fw.Size); end > int64(num)*bs {
		s.access.served(gr, end)
		s.served.blocks.Add(1)
		s.served.coapBytes.Add(end - int64(num)*bs)
	}
	return resp
}

// ServeHTTP serves GET/HEAD /fw/<sha256>/<token> with Range requests
// (RFC 9110 §14, through http.ServeContent) to the device whose deployment
// the unguessable token names, while its download is allowed. Anything
// else is 404 (unknown image or token) or 403 (a token of another image
// or of a download that has ended).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "firmware is downloaded with GET", http.StatusMethodNotAllowed)
		return
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(segs) != 3 || segs[0] != "fw" || !isHash(segs[1]) || !isToken(segs[2]) {
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	fw, err := s.image(r.Context(), strings.ToLower(segs[1]))
	if err != nil {
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	gr, ok := s.access.byTokenFor(segs[2])
	if !ok {
		// A token of a device whose download ended, or none at all.
		if _, err := s.db.DeploymentDeviceByToken(r.Context(), segs[2]); err == nil {
			http.Error(w, "this download is no longer allowed", http.StatusForbidden)
			return
		}
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	if gr.sha != fw.SHA256 {
		http.Error(w, "this image is not being deployed to you", http.StatusForbidden)
		return
	}
	fh, err := s.lib.file(fw)
	if err != nil {
		http.Error(w, "image unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+fw.SHA256[:16]+`"`)
	w.Header().Set("Cache-Control", "no-store")
	rs := &trackedReader{r: io.NewSectionReader(fh, 0, fw.Size), done: func(n, end int64) {
		s.served.httpBytes.Add(n)
		s.access.servedKey(gr.dep, gr.ep, end)
	}}
	http.ServeContent(w, r, "", fw.Created.Truncate(time.Second), rs)
}

// trackedReader reports how far into the image a response got.
type trackedReader struct {
	r    *io.SectionReader
	pos  int64
	done func(n, end int64) // n bytes read, up to end
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.pos += int64(n)
	if n > 0 {
		t.done(int64(n), t.pos)
	}
	return n, err
}

func (t *trackedReader) Seek(off int64, whence int) (int64, error) {
	p, err := t.r.Seek(off, whence)
	if err == nil {
		t.pos = p
	}
	return p, err
}

// servedKey is served for a grant known by its key (HTTP).
func (g *grants) servedKey(dep int64, ep string, end int64) {
	g.mu.Lock()
	gr := g.byKey[grantKey{dep, ep}]
	g.mu.Unlock()
	if gr != nil {
		g.served(gr, end)
	}
}
