package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// credCacheSize bounds the credentials kept in memory: a re-registration
// storm or a burst of handshakes is served from memory, a fleet larger
// than this costs a query per miss, never more memory.
const credCacheSize = 8192

// credCache remembers credentials looked up by endpoint name and by PSK
// identity, found or not, so that a Register and a handshake read the
// credential table only the first time (issue 15). Only this process
// writes credentials; every such write (putCredential's callers, revoke,
// delete, endpoint delete) bumps gen after it commits, which forgets
// every entry, like regCache.
type credCache struct {
	gen     atomic.Uint64
	mu      sync.Mutex
	entries map[credKey]credEntry
}

type credEntry struct {
	c   Credential
	err error // nil or ErrNotFound
	gen uint64
}

// invalidate forgets every entry; it runs after the write (see regCache).
func (c *credCache) invalidate() { c.gen.Add(1) }

// credKey names one lookup: by endpoint name or by PSK identity.
type credKey struct {
	psk bool
	key string
}

// get returns the entry for k when it is current.
func (c *credCache) get(k credKey) (credEntry, bool) {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	return e, ok && e.gen == c.gen.Load()
}

// put remembers a lookup made while gen was g; a store failure is not
// remembered.
func (c *credCache) put(k credKey, cr Credential, err error, g uint64) {
	if err != nil && !errors.Is(err, ErrNotFound) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[credKey]credEntry{}
	}
	if len(c.entries) >= credCacheSize {
		for victim := range c.entries { // the map's random order: a random victim
			delete(c.entries, victim)
			break
		}
	}
	c.entries[k] = credEntry{c: cr, err: err, gen: g}
}

// cached answers k from memory when current, else runs lookup and
// remembers its answer under the generation read before the query.
func (c *credCache) cached(k credKey, lookup func() (Credential, error)) (Credential, error) {
	if e, ok := c.get(k); ok {
		return copyCred(e.c), e.err
	}
	g := c.gen.Load()
	cr, err := lookup()
	c.put(k, cr, err, g)
	return copyCred(cr), err
}

// copyCred gives the caller its own key bytes: a caller that changes
// them must not change the cached credential.
func copyCred(c Credential) Credential {
	if c.PSKKey != nil {
		c.PSKKey = append([]byte(nil), c.PSKKey...)
	}
	return c
}

// Credential returns an endpoint's credential.
func (d *DB) Credential(ctx context.Context, endpoint string) (Credential, error) {
	return d.creds.cached(credKey{key: endpoint}, func() (Credential, error) {
		d.stats.credQueries.Add(1)
		c, err := scanCredential(d.r.QueryRowContext(ctx, `SELECT `+credCols+` FROM credential c JOIN endpoint e ON e.id = c.endpoint_id WHERE e.name = ?`, endpoint))
		return c, wrap(err, "credential of %q", endpoint)
	})
}

// CredentialByPSKIdentity finds the credential for a DTLS PSK identity
// (the handshake's lookup). Revoked credentials are returned with Revoked
// set; the caller refuses them.
func (d *DB) CredentialByPSKIdentity(ctx context.Context, identity string) (Credential, error) {
	return d.creds.cached(credKey{psk: true, key: identity}, func() (Credential, error) {
		d.stats.credQueries.Add(1)
		c, err := scanCredential(d.r.QueryRowContext(ctx, `SELECT `+credCols+` FROM credential c JOIN endpoint e ON e.id = c.endpoint_id WHERE c.psk_identity = ?`, identity))
		return c, wrap(err, "credential for psk identity %q", identity)
	})
}
