package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The model a device reports (3/0/1) is stored, listed, filtered on
// exactly (alone and with the firmware version) and sorted by; a
// registration leaves it alone.
func TestEndpointModel(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	for i := 0; i < 9; i++ {
		ep := fmt.Sprintf("dev-%d", i)
		if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: ep, FirmwareVersion: fmt.Sprintf("1.%d", i%2)}); err != nil {
			t.Fatal(err)
		}
		if i < 8 {
			if err := d.SetEndpointModel(ctx, ep, []string{"nrf9160-dk", "nrf9160-dk-v2"}[i%2]); err != nil {
				t.Fatal(err)
			}
		}
	}
	e, err := d.Endpoint(ctx, "dev-3")
	if err != nil || e.Model != "nrf9160-dk-v2" {
		t.Fatalf("dev-3: %+v %v", e, err)
	}
	// Setting the same model again writes nothing and is no error.
	if err := d.SetEndpointModel(ctx, "dev-3", "nrf9160-dk-v2"); err != nil {
		t.Fatal(err)
	}
	// A registration keeps the model.
	if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: "dev-3", RegistrationID: "r9", Online: true}); err != nil {
		t.Fatal(err)
	}
	if e, _ := d.Endpoint(ctx, "dev-3"); e.Model != "nrf9160-dk-v2" || e.FirmwareVersion != "1.1" {
		t.Fatalf("after a registration: %+v", e)
	}
	list, total, err := d.ListEndpoints(ctx, EndpointQuery{Model: "nrf9160-dk"})
	if err != nil || total != 4 || fmt.Sprint(names(list)) != "[dev-0 dev-2 dev-4 dev-6]" {
		t.Fatalf("model filter: %d %v %v", total, names(list), err)
	}
	// Exact match: a prefix or another case is another model.
	for _, m := range []string{"nrf9160", "NRF9160-DK", "nrf9160-dk%"} {
		if _, total, _ := d.ListEndpoints(ctx, EndpointQuery{Model: m}); total != 0 {
			t.Errorf("model %q matched %d", m, total)
		}
	}
	list, total, _ = d.ListEndpoints(ctx, EndpointQuery{Model: "nrf9160-dk-v2", FirmwareVersion: "1.1"})
	if total != 4 || list[0].Name != "dev-1" {
		t.Fatalf("model and version: %d %v", total, names(list))
	}
	if _, total, _ = d.ListEndpoints(ctx, EndpointQuery{Model: "nrf9160-dk", FirmwareVersion: "1.1"}); total != 0 {
		t.Fatalf("model and a version none of it runs: %d", total)
	}
	list, _, _ = d.ListEndpoints(ctx, EndpointQuery{Sort: "model", Limit: 1})
	if list[0].Name != "dev-8" { // no model sorts first
		t.Fatalf("sort by model: %v", names(list))
	}
	ms, err := d.Models(ctx)
	if err != nil || fmt.Sprint(ms) != "[nrf9160-dk nrf9160-dk-v2]" {
		t.Fatalf("Models: %v %v", ms, err)
	}
	if err := d.SetEndpointModel(ctx, "ghost", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
}

// A database from before migration 0008 gets an empty model for every
// endpoint and the index the model filter uses.
func TestUpgradeAddsEndpointModel(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	raw, err := openRaw(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, raw, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO endpoint(name, online, lifetime, firmware_version, created) VALUES ('old-dev', 1, 300, '2.0', 1000)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	d := openWith(t, cfg)
	e, err := d.Endpoint(ctx, "old-dev")
	if err != nil || e.Model != "" || e.FirmwareVersion != "2.0" {
		t.Fatalf("after upgrade: %+v %v", e, err)
	}
	var plan string
	rows, err := d.r.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT id FROM endpoint WHERE model = 'x'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, unused int
		var detail string
		rows.Scan(&id, &parent, &unused, &detail)
		plan += detail
	}
	rows.Close()
	if !strings.Contains(plan, "endpoint_model") {
		t.Fatalf("the model filter does not use its index: %s", plan)
	}
	if err := d.SetEndpointModel(ctx, "old-dev", "m1"); err != nil {
		t.Fatal(err)
	}
	if _, total, _ := d.ListEndpoints(ctx, EndpointQuery{Model: "m1"}); total != 1 {
		t.Fatalf("model filter after upgrade: %d", total)
	}
}
