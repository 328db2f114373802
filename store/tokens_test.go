package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestNamedTokens(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	tok, err := d.CreateToken(ctx, "ci-deploy", RoleOperator, "admin", time.Time{})
	if err != nil || tok.Secret == "" || tok.Role != RoleOperator || tok.CreatedBy != "admin" {
		t.Fatalf("CreateToken: %+v %v", tok, err)
	}
	if _, err := d.CreateToken(ctx, "CI-deploy", RoleViewer, "admin", time.Time{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, bad := range []struct {
		name, role string
		exp        time.Time
	}{{"", RoleViewer, time.Time{}}, {"x", "root", time.Time{}}, {"x", RoleViewer, c.now().Add(-time.Hour)}} {
		if _, err := d.CreateToken(ctx, bad.name, bad.role, "admin", bad.exp); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateToken(%q, %q, %v): %v, want ErrInvalid", bad.name, bad.role, bad.exp, err)
		}
	}
	var clear int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM token WHERE token_hash = ?`, tok.Secret).Scan(&clear)
	if clear != 0 {
		t.Fatal("token stored in clear")
	}
	short, _ := d.CreateToken(ctx, "short", RoleViewer, "admin", c.now().Add(time.Hour))
	c.add(2 * time.Minute)
	got, err := d.TokenBySecret(ctx, tok.Secret)
	if err != nil || got.Name != "ci-deploy" || !got.LastUsed.Equal(c.now()) {
		t.Fatalf("TokenBySecret: %+v %v", got, err)
	}
	if _, err := d.TokenBySecret(ctx, tok.Secret+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong secret: %v", err)
	}
	c.add(2 * time.Hour)
	if _, err := d.TokenBySecret(ctx, short.Secret); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token: %v", err)
	}
	list, err := d.Tokens(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "ci-deploy" || list[0].Secret != "" || list[0].LastUsed.IsZero() {
		t.Fatalf("Tokens: %+v %v", list, err)
	}
	if byName, err := d.TokenByName(ctx, "SHORT"); err != nil || byName.ID != short.ID {
		t.Fatalf("TokenByName: %+v %v", byName, err)
	}
	if err := d.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TokenBySecret(ctx, tok.Secret); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := d.DeleteToken(ctx, tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
}

func TestRefusalsCountedAndBounded(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	for i := 0; i < 3; i++ {
		c.add(time.Second)
		if err := d.RecordRefusal(ctx, "urn:imei:1", fmt.Sprintf("reason %d", i), "10.0.0.1:5683"); err != nil {
			t.Fatal(err)
		}
	}
	c.add(time.Second)
	d.RecordRefusal(ctx, "bad name", "malformed", "10.0.0.2:5683")
	list, err := d.Refusals(ctx, 10)
	if err != nil || len(list) != 2 || list[0].Endpoint != "bad name" || list[1].Count != 3 || list[1].Reason != "reason 2" || list[1].First.Equal(list[1].Last) {
		t.Fatalf("Refusals: %+v %v", list, err)
	}
	// A spray of made-up names is bounded by retention.
	for i := 0; i < maxRefusals+50; i++ {
		d.RecordRefusal(ctx, fmt.Sprintf("spray-%d", i), "unknown", "")
	}
	r, err := d.ApplyRetention(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM refused_registration`).Scan(&n)
	if n != maxRefusals || r.Refusals != 52 {
		t.Fatalf("after retention: %d rows (removed %d), want %d", n, r.Refusals, maxRefusals)
	}
	if err := d.ClearRefusal(ctx, "spray-1049"); err != nil {
		t.Fatal(err)
	}
	// Long names and reasons are clipped, not refused.
	long := string(make([]byte, 1000))
	if err := d.RecordRefusal(ctx, "x"+long, long, ""); err != nil {
		t.Fatal(err)
	}
}

func TestAuditRetention(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	d.Audit(ctx, AuditEntry{Actor: "admin", Action: "login"})
	c.add(400 * 24 * time.Hour)
	d.Audit(ctx, AuditEntry{Actor: "admin", Action: "backup"})
	r, err := d.ApplyRetention(ctx)
	if err != nil || r.Audit != 1 {
		t.Fatalf("retention: %+v %v", r, err)
	}
	log, _ := d.AuditLog(ctx, 0, 10)
	if len(log) != 1 || log[0].Action != "backup" {
		t.Fatalf("audit after retention: %+v", log)
	}
}
