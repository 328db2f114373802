package firmware

import (
	"sync"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// grant is one device's permission to download one image: it exists from
// the moment its Package URI is written (or its push starts) until its
// download ends. It also counts the bytes served.
type grant struct {
	dep   int64
	ep    string
	sha   string
	token string
	size  int64

	bytes int64 // highest offset served (under grants.mu)
	dirty bool
}

type grantKey struct {
	dep int64
	ep  string
}

// grants indexes the permissions by image and by HTTP token.
type grants struct {
	mu      sync.Mutex
	byKey   map[grantKey]*grant
	bySHA   map[string]map[string]*grant // sha → endpoint → grant
	byToken map[string]*grant
	// done keeps the last progress of ended grants for the API.
	done map[grantKey]int64
	// ended holds the unsaved progress of grants removed since the last
	// flush.
	ended []progress
	// seen remembers which grant a peer matched, so that each block costs
	// one registration lookup instead of a scan of every device.
	seen map[peerGrantKey]*grant
}

type peerGrantKey struct {
	sha  string
	peer coap.PeerKey
	id   string
}

func newGrants() *grants {
	return &grants{byKey: map[grantKey]*grant{}, bySHA: map[string]map[string]*grant{}, byToken: map[string]*grant{}, done: map[grantKey]int64{}, seen: map[peerGrantKey]*grant{}}
}

func (g *grants) add(dd store.DeploymentDevice, fw store.Firmware) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := grantKey{dd.DeploymentID, dd.Endpoint}
	if old := g.byKey[k]; old != nil {
		g.removeLocked(old)
	}
	gr := &grant{dep: dd.DeploymentID, ep: dd.Endpoint, sha: fw.SHA256, token: dd.Token, size: fw.Size, bytes: dd.Progress}
	g.byKey[k] = gr
	m := g.bySHA[fw.SHA256]
	if m == nil {
		m = map[string]*grant{}
		g.bySHA[fw.SHA256] = m
	}
	m[dd.Endpoint] = gr
	if gr.token != "" {
		g.byToken[gr.token] = gr
	}
}

func (g *grants) remove(dep int64, ep string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gr := g.byKey[grantKey{dep, ep}]; gr != nil {
		g.removeLocked(gr)
	}
}

func (g *grants) removeLocked(gr *grant) {
	k := grantKey{gr.dep, gr.ep}
	delete(g.byKey, k)
	if m := g.bySHA[gr.sha]; m != nil && m[gr.ep] == gr {
		delete(m, gr.ep)
		if len(m) == 0 {
			delete(g.bySHA, gr.sha)
		}
	}
	delete(g.byToken, gr.token)
	g.done[k] = gr.bytes
	if gr.dirty {
		gr.dirty = false
		g.ended = append(g.ended, progress{gr.dep, gr.ep, gr.bytes})
	}
}

func (g *grants) byTokenFor(token string) (grant, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.byToken[token]
	if gr == nil {
		return grant{}, false
	}
	return *gr, true
}

// lookup finds the device a CoAP request for image sha comes from: by
// the download token in its path when it has one (lookupToken), else by
// its source (lookupPeer). known reports whether anyone at all may
// download the image now.
func (g *grants) lookup(sha, token string, peer coap.Peer, regOf func(string) (*server.Registration, bool)) (gr *grant, known bool) {
	if token != "" {
		return g.lookupToken(sha, token, peer, regOf)
	}
	return g.lookupPeer(sha, peer, regOf)
}

// lookupPeer finds the device a CoAP request comes from among those allowed
// to download image sha: over DTLS by the session's identity, over plain
// CoAP by the source address of its current registration (the port may
// differ: Zephyr's pull client opens its own socket). The security mode
// must be the registration's own. known reports whether anyone at all may
// download the image now.
func (g *grants) lookupPeer(sha string, peer coap.Peer, regOf func(string) (*server.Registration, bool)) (gr *grant, known bool) {
	pk := peerGrantKey{sha, peer.Key(), peer.Identity}
	g.mu.Lock()
	if c := g.seen[pk]; c != nil && g.byKey[grantKey{c.dep, c.ep}] == c {
		g.mu.Unlock()
		if reg, ok := regOf(c.ep); ok && matches(reg.Peer, peer, false) {
			return c, true
		}
		g.mu.Lock()
	}
	cands := make([]*grant, 0, len(g.bySHA[sha]))
	for _, c := range g.bySHA[sha] {
		cands = append(cands, c)
	}
	g.mu.Unlock()
	var found *grant
	for _, c := range cands {
		reg, ok := regOf(c.ep)
		if !ok {
			continue
		}
		if matches(reg.Peer, peer, true) {
			found = c
			break
		}
		if found == nil && matches(reg.Peer, peer, false) {
			found = c
		}
	}
	if found != nil {
		g.mu.Lock()
		if len(g.seen) > 100000 {
			clear(g.seen)
		}
		g.seen[pk] = found
		g.mu.Unlock()
	}
	return found, len(cands) > 0
}

// lookupToken finds the device a CoAP request with a download token in
// its path comes from: the token names the grant, which tells devices
// behind one address apart (a NAT, Zephyr's separate download socket);
// the source must still be the device, as for lookup, so a copied token
// gets nothing sent to anyone else.
func (g *grants) lookupToken(sha, token string, peer coap.Peer, regOf func(string) (*server.Registration, bool)) (gr *grant, known bool) {
	g.mu.Lock()
	c := g.byToken[token]
	known = len(g.bySHA[sha]) > 0
	g.mu.Unlock()
	if c == nil || c.sha != sha {
		return nil, known
	}
	if reg, ok := regOf(c.ep); ok && matches(reg.Peer, peer, false) {
		return c, true
	}
	return nil, true
}

// matches reports whether a request's peer is the registered device:
// same security mode, and the same DTLS identity or (plain CoAP) the same
// source address — with exact, also the same port.
func matches(reg, peer coap.Peer, exact bool) bool {
	if reg.Secure() != peer.Secure() {
		return false
	}
	if peer.Secure() {
		return reg.Identity == peer.Identity
	}
	if exact {
		return reg.Addr == peer.Addr
	}
	return reg.Addr.Addr() == peer.Addr.Addr()
}

// served records that bytes up to end were sent to a grant's device.
func (g *grants) served(gr *grant, end int64) {
	g.mu.Lock()
	if end > gr.bytes {
		gr.bytes, gr.dirty = end, true
	}
	g.mu.Unlock()
}

func (g *grants) progressOf(dep int64, ep string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gr := g.byKey[grantKey{dep, ep}]; gr != nil {
		return gr.bytes
	}
	return g.done[grantKey{dep, ep}]
}

func (g *grants) resetProgress(dep int64, ep string) {
	g.mu.Lock()
	delete(g.done, grantKey{dep, ep})
	g.mu.Unlock()
}

type progress struct {
	dep   int64
	ep    string
	bytes int64
}

// dirtyProgress returns the progress that changed since the last call.
func (g *grants) dirtyProgress() []progress {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.ended
	g.ended = nil
	for _, gr := range g.byKey {
		if gr.dirty {
			gr.dirty = false
			out = append(out, progress{gr.dep, gr.ep, gr.bytes})
		}
	}
	return out
}
