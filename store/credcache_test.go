package store

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

// TestCredentialCacheFollowsWrites: a credential looked up once is answered
// from memory, and every write that changes what a lookup would return
// (provision, set, revoke, delete, endpoint delete) is seen by the next
// lookup, by name and by PSK identity.
func TestCredentialCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	queries := func() uint64 { return d.Stats().CredentialQueries }

	// Not found, then provisioned: the remembered "not found" goes.
	if _, err := d.Credential(ctx, "dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before provisioning: %v", err)
	}
	if _, err := d.CredentialByPSKIdentity(ctx, "id-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("identity before provisioning: %v", err)
	}
	if _, err := d.ProvisionEndpoint(ctx, Credential{Endpoint: "dev", Mode: ModePSK, PSKIdentity: "id-1", PSKKey: []byte{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	c, err := d.Credential(ctx, "dev")
	if err != nil || c.PSKIdentity != "id-1" || c.Revoked {
		t.Fatalf("after provisioning: %+v %v", c, err)
	}
	if c, err := d.CredentialByPSKIdentity(ctx, "id-1"); err != nil || c.Endpoint != "dev" {
		t.Fatalf("identity after provisioning: %+v %v", c, err)
	}

	// Looked up again: no query, and the caller's key bytes are its own.
	n := queries()
	c.PSKKey[0] = 99
	for range 3 {
		if c, err := d.Credential(ctx, "dev"); err != nil || c.PSKKey[0] != 1 {
			t.Fatalf("cached lookup: %+v %v", c, err)
		}
		if _, err := d.CredentialByPSKIdentity(ctx, "id-1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := queries() - n; got != 0 {
		t.Fatalf("%d credential queries for 6 repeated lookups, want 0", got)
	}

	// A new identity: the old one is no longer found.
	if err := d.SetCredential(ctx, Credential{Endpoint: "dev", Mode: ModePSK, PSKIdentity: "id-2", PSKKey: []byte{4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CredentialByPSKIdentity(ctx, "id-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replaced identity still found: %v", err)
	}
	if c, err := d.Credential(ctx, "dev"); err != nil || c.PSKIdentity != "id-2" {
		t.Fatalf("after SetCredential: %+v %v", c, err)
	}

	if err := d.RevokeCredential(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if c, err := d.CredentialByPSKIdentity(ctx, "id-2"); err != nil || !c.Revoked {
		t.Fatalf("revocation not seen: %+v %v", c, err)
	}
	if c, err := d.Credential(ctx, "dev"); err != nil || !c.Revoked {
		t.Fatalf("revocation not seen by name: %+v %v", c, err)
	}

	if err := d.DeleteCredential(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Credential(ctx, "dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted credential still found: %v", err)
	}

	if err := d.SetCredential(ctx, Credential{Endpoint: "dev", Mode: ModeNoSec}); err != nil {
		t.Fatal(err)
	}
	if c, err := d.Credential(ctx, "dev"); err != nil || c.Mode != ModeNoSec {
		t.Fatalf("after setting nosec: %+v %v", c, err)
	}
	if err := d.DeleteEndpoint(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Credential(ctx, "dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("credential of a deleted endpoint still found: %v", err)
	}
}

// TestCredentialCacheBounded: more endpoints than the cache holds cost
// queries, not memory.
func TestCredentialCacheBounded(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	for i := range credCacheSize + 100 {
		d.Credential(ctx, "unknown-"+strconv.Itoa(i))
	}
	d.creds.mu.Lock()
	n := len(d.creds.entries)
	d.creds.mu.Unlock()
	if n > credCacheSize {
		t.Fatalf("%d entries cached, limit %d", n, credCacheSize)
	}
}
