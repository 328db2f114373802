package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestEndpointUpsertAndState(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	reg := c.now()
	e, err := d.UpsertEndpoint(ctx, Endpoint{Name: "urn:imei:1", RegistrationID: "r1", Online: true, LastSeen: reg, Lifetime: 300,
		Binding: "UQ", LwM2MVersion: "1.1", QueueMode: true, SecurityMode: ModePSK, ObjectLinks: "</1/0>,</3/0>",
		Address: "10.0.0.2:5684", RegisteredAt: reg})
	if err != nil {
		t.Fatal(err)
	}
	if e.ID == 0 || !e.Online || e.Lifetime != 300 || e.Binding != "UQ" || !e.QueueMode || e.SecurityMode != ModePSK ||
		e.ObjectLinks != "</1/0>,</3/0>" || !e.RegisteredAt.Equal(reg) || e.Created.IsZero() {
		t.Fatalf("after register: %+v", e)
	}
	if err := d.SetEndpointFirmwareVersion(ctx, "urn:imei:1", "1.2.0"); err != nil {
		t.Fatal(err)
	}
	// A re-registration overwrites the registration fields but keeps the
	// firmware version and security mode when not given.
	c.add(time.Minute)
	e2, err := d.UpsertEndpoint(ctx, Endpoint{Name: "urn:imei:1", RegistrationID: "r2", Online: true, LastSeen: c.now(), Lifetime: 600,
		Binding: "U", LwM2MVersion: "1.2", RegisteredAt: c.now()})
	if err != nil {
		t.Fatal(err)
	}
	if e2.ID != e.ID || e2.RegistrationID != "r2" || e2.Lifetime != 600 || e2.QueueMode || e2.FirmwareVersion != "1.2.0" ||
		e2.SecurityMode != ModePSK || !e2.Created.Equal(e.Created) {
		t.Fatalf("after re-register: %+v", e2)
	}
	if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: "  "}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty name: %v", err)
	}
	c.add(time.Minute)
	if err := d.TouchEndpoint(ctx, "urn:imei:1", c.now(), "10.0.0.3:1"); err != nil {
		t.Fatal(err)
	}
	got, _ := d.Endpoint(ctx, "urn:imei:1")
	if !got.LastSeen.Equal(c.now()) || got.Address != "10.0.0.3:1" {
		t.Fatalf("after touch: %+v", got)
	}
	if err := d.TouchEndpoint(ctx, "nobody", c.now(), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch unknown: %v", err)
	}
	if err := d.SetEndpointOffline(ctx, "urn:imei:1", c.now(), true); err != nil {
		t.Fatal(err)
	}
	got, _ = d.EndpointByID(ctx, e.ID)
	if got.Online || !got.DeregisteredAt.Equal(c.now()) {
		t.Fatalf("after deregister: %+v", got)
	}
	if err := d.SetEndpointPending(ctx, "urn:imei:1", true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEndpointSecurityMode(ctx, "urn:imei:1", ModeX509); err != nil {
		t.Fatal(err)
	}
	got, _ = d.Endpoint(ctx, "urn:imei:1")
	if !got.Pending || got.SecurityMode != ModeX509 {
		t.Fatalf("pending/security: %+v", got)
	}
	if _, err := d.CreateEndpoint(ctx, Endpoint{Name: "urn:imei:1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("create existing: %v", err)
	}
	if err := d.DeleteEndpoint(ctx, "urn:imei:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Endpoint(ctx, "urn:imei:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if err := d.DeleteEndpoint(ctx, "urn:imei:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestExpireEndpoints(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	d.UpsertEndpoint(ctx, Endpoint{Name: "short", Online: true, LastSeen: c.now(), Lifetime: 60})
	d.UpsertEndpoint(ctx, Endpoint{Name: "long", Online: true, LastSeen: c.now(), Lifetime: 3600})
	names, err := d.ExpireEndpoints(ctx, c.now().Add(90*time.Second), 10*time.Second)
	if err != nil || len(names) != 1 || names[0] != "short" {
		t.Fatalf("ExpireEndpoints: %v %v", names, err)
	}
	names, _ = d.ExpireEndpoints(ctx, c.now().Add(90*time.Second), 10*time.Second)
	if len(names) != 0 {
		t.Fatalf("expired twice: %v", names)
	}
}

func TestListEndpoints(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	modes := []string{ModeNoSec, ModePSK, ModeX509}
	for i := 0; i < 30; i++ {
		_, err := d.UpsertEndpoint(ctx, Endpoint{Name: fmt.Sprintf("dev-%02d", i), Online: i%2 == 0, QueueMode: i%4 == 0,
			SecurityMode: modes[i%3], FirmwareVersion: fmt.Sprintf("1.%d", i%2), LastSeen: c.now().Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	d.CreateEndpoint(ctx, Endpoint{Name: "waiting_%", Pending: true})
	on := true
	list, total, err := d.ListEndpoints(ctx, EndpointQuery{Online: &on, Limit: 5})
	if err != nil || total != 15 || len(list) != 5 || list[0].Name != "dev-00" || list[1].Name != "dev-02" {
		t.Fatalf("online page: %d %d %v %v", total, len(list), names(list), err)
	}
	list, total, _ = d.ListEndpoints(ctx, EndpointQuery{Online: &on, Limit: 5, Offset: 10})
	if total != 15 || len(list) != 5 || list[0].Name != "dev-20" {
		t.Fatalf("online page 3: %v", names(list))
	}
	list, total, _ = d.ListEndpoints(ctx, EndpointQuery{SecurityMode: ModeX509, FirmwareVersion: "1.1"})
	if total != 5 || list[0].Name != "dev-05" {
		t.Fatalf("x509 + 1.1: %d %v", total, names(list))
	}
	list, _, _ = d.ListEndpoints(ctx, EndpointQuery{Sort: "-lastSeen", Limit: 2})
	if list[0].Name != "dev-29" || list[1].Name != "dev-28" {
		t.Fatalf("sort -lastSeen: %v", names(list))
	}
	list, total, _ = d.ListEndpoints(ctx, EndpointQuery{Search: "V-1"})
	if total != 10 {
		t.Fatalf("search: %d %v", total, names(list))
	}
	// LIKE wildcards in the search are literal.
	list, total, _ = d.ListEndpoints(ctx, EndpointQuery{Search: "_%"})
	if total != 1 || list[0].Name != "waiting_%" || !list[0].Pending {
		t.Fatalf("literal search: %d %v", total, names(list))
	}
	pend := true
	if _, total, _ = d.ListEndpoints(ctx, EndpointQuery{Pending: &pend}); total != 1 {
		t.Fatalf("pending: %d", total)
	}
	if _, _, err := d.ListEndpoints(ctx, EndpointQuery{Sort: "password"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad sort: %v", err)
	}
	cnt, err := d.CountEndpoints(ctx)
	if err != nil || cnt != (EndpointCounts{Total: 31, Online: 15, Offline: 16, Sleeping: 8, Pending: 1}) {
		t.Fatalf("CountEndpoints: %+v %v", cnt, err)
	}
	// Of the 8 online queue-mode devices (seen at +0, +4, … +28 s), those
	// not heard from since +10 s are asleep: +0, +4, +8.
	cnt, err = d.CountEndpointsAsleep(ctx, c.now().Add(10*time.Second))
	if err != nil || cnt != (EndpointCounts{Total: 31, Online: 15, Offline: 16, Sleeping: 3, Pending: 1}) {
		t.Fatalf("CountEndpointsAsleep: %+v %v", cnt, err)
	}
	vs, _ := d.FirmwareVersions(ctx)
	if len(vs) != 2 || vs[0] != "1.0" {
		t.Fatalf("FirmwareVersions: %v", vs)
	}
}

func names(es []Endpoint) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestCredentials(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	e, err := d.ProvisionEndpoint(ctx, Credential{Endpoint: "dev-psk", Mode: ModePSK, PSKIdentity: "dev-psk", PSKKey: []byte{1, 2, 3, 4}})
	if err != nil || e.SecurityMode != ModePSK {
		t.Fatalf("ProvisionEndpoint: %+v %v", e, err)
	}
	if _, err := d.ProvisionEndpoint(ctx, Credential{Endpoint: "dev-psk", Mode: ModeNoSec}); !errors.Is(err, ErrConflict) {
		t.Fatalf("provision twice: %v", err)
	}
	if _, err := d.ProvisionEndpoint(ctx, Credential{Endpoint: "other", Mode: ModePSK, PSKIdentity: "dev-psk", PSKKey: []byte{9}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("psk identity reused: %v", err)
	}
	if _, err := d.Endpoint(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Fatal("failed provisioning left an endpoint behind")
	}
	for _, bad := range []Credential{{Endpoint: "x", Mode: "plain"}, {Endpoint: "x", Mode: ModePSK}, {Mode: ModeNoSec}} {
		if _, err := d.ProvisionEndpoint(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("provision %+v: %v", bad, err)
		}
	}
	c, err := d.CredentialByPSKIdentity(ctx, "dev-psk")
	if err != nil || c.Endpoint != "dev-psk" || string(c.PSKKey) != "\x01\x02\x03\x04" || c.Revoked {
		t.Fatalf("CredentialByPSKIdentity: %+v %v", c, err)
	}
	if _, err := d.CredentialByPSKIdentity(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown identity: %v", err)
	}
	if err := d.SetCredential(ctx, Credential{Endpoint: "dev-x509", Mode: ModeX509, CertPEM: "-----BEGIN CERTIFICATE-----", CertSerial: "0a1b"}); err != nil {
		t.Fatal(err)
	}
	ex, _ := d.Endpoint(ctx, "dev-x509")
	if ex.SecurityMode != ModeX509 {
		t.Fatalf("SetCredential did not create the endpoint: %+v", ex)
	}
	if c, err := d.CredentialByCertSerial(ctx, "0a1b"); err != nil || c.Endpoint != "dev-x509" {
		t.Fatalf("CredentialByCertSerial: %+v %v", c, err)
	}
	if err := d.RevokeCredential(ctx, "dev-x509"); err != nil {
		t.Fatal(err)
	}
	if err := d.RevokeCredential(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if s, _ := d.RevokedSerials(ctx); len(s) != 1 || s[0] != "0a1b" {
		t.Fatalf("RevokedSerials: %v", s)
	}
	// Switching a device to another mode replaces its credential.
	if err := d.SetCredential(ctx, Credential{Endpoint: "dev-psk", Mode: ModeNoSec}); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.Credential(ctx, "dev-psk"); c.Mode != ModeNoSec || c.PSKIdentity != "" {
		t.Fatalf("replaced credential: %+v", c)
	}
	if _, err := d.CredentialByPSKIdentity(ctx, "dev-psk"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old identity still valid: %v", err)
	}
	if err := d.DeleteCredential(ctx, "dev-psk"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Credential(ctx, "dev-psk"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted credential: %v", err)
	}
	// Deleting the endpoint takes its credential.
	d.DeleteEndpoint(ctx, "dev-x509")
	if _, err := d.CredentialByCertSerial(ctx, "0a1b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("credential outlived endpoint: %v", err)
	}
}

// TestDeleteEndpointTakesTelemetry: deleting a device removes its series,
// raw readings, chunks, roll-ups and events, while Run is running.
func TestDeleteEndpointTakesTelemetry(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runWriter(t, d)
	ingestOne(t, d, "gone", "/3303/0/5700", 1)
	ingestOne(t, d, "kept", "/3303/0/5700", 2)
	d.RecordRegistration(ctx, "gone", RegRegistered, d.now(), "")
	flush(t, d)
	if err := d.DeleteEndpoint(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int{`SELECT COUNT(*) FROM series`: 1, `SELECT COUNT(*) FROM resource`: 1,
		`SELECT COUNT(*) FROM event`: 0, `SELECT COUNT(*) FROM event_resource`: 0} {
		var n int
		d.r.QueryRowContext(ctx, q).Scan(&n)
		if n != want {
			t.Errorf("%s = %d, want %d (the kept device's)", q, n, want)
		}
	}
	if st := d.Stats(); st.TailRecords != 1 {
		t.Fatalf("tail holds %d readings, want 1", st.TailRecords)
	}
	// The device may come back: its data recreates it.
	ingestOne(t, d, "gone", "/3303/0/5700", 3)
	if l, err := d.Latest(ctx, "gone"); err != nil || len(l) != 1 || l[0].Value.Float() != 3 {
		t.Fatalf("returning device: %v %v", l, err)
	}
}
