package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUsers(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	if n, _ := d.CountUsers(ctx); n != 0 {
		t.Fatalf("fresh db has %d users", n)
	}
	a, err := d.CreateUser(ctx, "Alice", "$argon2id$a", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateUser(ctx, "alice", "h", RoleViewer); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name (other case): %v", err)
	}
	for _, bad := range [][3]string{{"", "h", RoleAdmin}, {"x", "", RoleAdmin}, {"x", "h", "root"}} {
		if _, err := d.CreateUser(ctx, bad[0], bad[1], bad[2]); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateUser%q: %v, want ErrInvalid", bad, err)
		}
	}
	b, _ := d.CreateUser(ctx, "bob", "h", RoleViewer)
	got, err := d.UserByName(ctx, "ALICE")
	if err != nil || got.ID != a.ID || got.PasswordHash != "$argon2id$a" || got.Role != RoleAdmin || got.Created.IsZero() {
		t.Fatalf("UserByName: %+v %v", got, err)
	}
	if _, err := d.UserByName(ctx, "carol"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := d.SetUserRole(ctx, b.ID, RoleOperator); err != nil {
		t.Fatal(err)
	}
	if err := d.SetUserRole(ctx, b.ID, "god"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad role: %v", err)
	}
	if err := d.SetUserRole(ctx, 999, RoleViewer); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	login := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := d.TouchUserLogin(ctx, b.ID, login); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.CountAdmins(ctx); n != 1 {
		t.Fatalf("admins %d", n)
	}
	if err := d.SetUserDisabled(ctx, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.CountAdmins(ctx); n != 0 {
		t.Fatalf("disabled admin counted: %d", n)
	}
	us, err := d.Users(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "Alice" || !us[0].Disabled || us[1].Role != RoleOperator || !us[1].LastLogin.Equal(login) {
		t.Fatalf("Users: %+v %v", us, err)
	}
	if err := d.DeleteUser(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteUser(ctx, b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	u, _ := d.CreateUser(ctx, "alice", "h", RoleAdmin)
	s, err := d.CreateSession(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ID) < 40 || len(s.CSRF) < 40 || s.ID == s.CSRF {
		t.Fatalf("weak session secrets: %+v", s)
	}
	var stored int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM session WHERE id_hash = ? OR csrf = ?`, s.ID, s.ID).Scan(&stored)
	if stored != 0 {
		t.Fatal("session id stored in clear")
	}
	got, err := d.SessionByID(ctx, s.ID)
	if err != nil || got.UserID != u.ID || got.CSRF != s.CSRF || !got.Expires.Equal(s.Expires) {
		t.Fatalf("SessionByID: %+v %v", got, err)
	}
	if _, err := d.SessionByID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if _, err := d.CreateSession(ctx, u.ID, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero ttl: %v", err)
	}
	if _, err := d.CreateSession(ctx, 999, time.Hour); !errors.Is(err, ErrConflict) {
		t.Fatalf("session for unknown user: %v", err)
	}
	c.add(50 * time.Minute)
	if err := d.TouchSession(ctx, s.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	c.add(50 * time.Minute) // past the first expiry, within the slid one
	if _, err := d.SessionByID(ctx, s.ID); err != nil {
		t.Fatalf("slid session expired: %v", err)
	}
	c.add(20 * time.Minute)
	if _, err := d.SessionByID(ctx, s.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if err := d.TouchSession(ctx, s.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session was not removed: %v", err)
	}
	s2, _ := d.CreateSession(ctx, u.ID, time.Hour)
	if err := d.DeleteSession(ctx, s2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SessionByID(ctx, s2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("logged-out session: %v", err)
	}
	s3, _ := d.CreateSession(ctx, u.ID, time.Hour)
	if err := d.SetUserPassword(ctx, u.ID, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SessionByID(ctx, s3.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session survived password change: %v", err)
	}
	s4, _ := d.CreateSession(ctx, u.ID, time.Minute)
	s5, _ := d.CreateSession(ctx, u.ID, time.Hour)
	c.add(2 * time.Minute)
	if n, err := d.DeleteExpiredSessions(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpiredSessions: %d %v", n, err)
	}
	if err := d.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{s4.ID, s5.ID} {
		if _, err := d.SessionByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session survived disabling: %v", err)
		}
	}
	s6, _ := d.CreateSession(ctx, u.ID, time.Hour)
	d.DeleteUser(ctx, u.ID)
	if _, err := d.SessionByID(ctx, s6.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session survived its user: %v", err)
	}
}

func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	u, _ := d.CreateUser(ctx, "ci", "h", RoleOperator)
	tok, err := d.CreateAPIToken(ctx, u.ID, "deploy script", time.Time{})
	if err != nil || tok.Token == "" || tok.ID == 0 {
		t.Fatalf("CreateAPIToken: %+v %v", tok, err)
	}
	exp, _ := d.CreateAPIToken(ctx, u.ID, "short", c.now().Add(time.Hour))
	var clear int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_token WHERE token_hash = ?`, tok.Token).Scan(&clear)
	if clear != 0 {
		t.Fatal("token stored in clear")
	}
	c.add(time.Minute)
	got, err := d.APITokenBySecret(ctx, tok.Token)
	if err != nil || got.UserID != u.ID || got.Name != "deploy script" || !got.LastUsed.Equal(c.now()) {
		t.Fatalf("APITokenBySecret: %+v %v", got, err)
	}
	if _, err := d.APITokenBySecret(ctx, tok.Token+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong secret: %v", err)
	}
	c.add(2 * time.Hour)
	if _, err := d.APITokenBySecret(ctx, exp.Token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token: %v", err)
	}
	list, err := d.APITokens(ctx, u.ID)
	if err != nil || len(list) != 2 || list[0].Token != "" {
		t.Fatalf("APITokens: %+v %v", list, err)
	}
	if err := d.DeleteAPIToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.APITokenBySecret(ctx, tok.Token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := d.DeleteAPIToken(ctx, tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
}

func TestSettingsAndAudit(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	type retention struct {
		Days int `json:"days"`
	}
	var r retention
	if err := d.Setting(ctx, "retention", &r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unset: %v", err)
	}
	if err := d.SetSetting(ctx, "retention", retention{30}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSetting(ctx, "retention", retention{7}); err != nil {
		t.Fatal(err)
	}
	if err := d.Setting(ctx, "retention", &r); err != nil || r.Days != 7 {
		t.Fatalf("Setting: %+v %v", r, err)
	}
	if err := d.SetSetting(ctx, "", 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: %v", err)
	}
	if err := d.SetSetting(ctx, "bad", func() {}); err == nil {
		t.Fatal("unmarshalable value accepted")
	}
	d.SetSetting(ctx, "autoObserve", []string{"/3303/0/5700"})
	all, err := d.Settings(ctx)
	if err != nil || len(all) != 2 || string(all["autoObserve"]) != `["/3303/0/5700"]` {
		t.Fatalf("Settings: %s %v", all, err)
	}
	if err := d.DeleteSetting(ctx, "retention"); err != nil {
		t.Fatal(err)
	}
	if err := d.Setting(ctx, "retention", &r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}

	for i, a := range []string{"login", "user.add", "device.delete"} {
		if _, err := d.Audit(ctx, AuditEntry{Actor: "alice", Action: a, Target: "t" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Audit(ctx, AuditEntry{Action: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("audit without actor: %v", err)
	}
	log, err := d.AuditLog(ctx, 0, 2)
	if err != nil || len(log) != 2 || log[0].Action != "device.delete" || log[1].Action != "user.add" || log[0].Time.IsZero() {
		t.Fatalf("AuditLog: %+v %v", log, err)
	}
	more, _ := d.AuditLog(ctx, log[1].ID, 10)
	if len(more) != 1 || more[0].Action != "login" {
		t.Fatalf("AuditLog page 2: %+v", more)
	}
}
