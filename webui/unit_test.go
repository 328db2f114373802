package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("s3cret passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q lacks OWASP parameters", h)
	}
	h2, _ := HashPassword("s3cret passphrase")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
	if !CheckPassword(h, "s3cret passphrase") || CheckPassword(h, "s3cret passphrasE") || CheckPassword(h, "") {
		t.Fatal("CheckPassword")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=0,t=2,p=1$c2FsdA$a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$a2V5", "$argon2id$v=18$m=19456,t=2,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdA$a2V5"} {
		if CheckPassword(bad, "x") {
			t.Fatalf("malformed hash %q accepted", bad)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(3, time.Minute, 5*time.Minute)
	now := time.Unix(1000, 0)
	if l.fail("k", now) || l.fail("k", now.Add(time.Second)) {
		t.Fatal("locked too early")
	}
	if l.blocked("k", now) != 0 {
		t.Fatal("blocked before the limit")
	}
	if !l.fail("k", now.Add(2*time.Second)) {
		t.Fatal("not locked at the limit")
	}
	if w := l.blocked("k", now.Add(3*time.Second)); w != 5*time.Minute-time.Second {
		t.Fatalf("wait %v", w)
	}
	if l.blocked("k", now.Add(6*time.Minute)) != 0 {
		t.Fatal("lockout did not end")
	}
	// Failures spread over more than the window do not add up.
	l.fail("j", now)
	l.fail("j", now.Add(30*time.Second))
	if l.fail("j", now.Add(2*time.Minute)) {
		t.Fatal("old failures counted")
	}
	l.succeed("j")
	if _, ok := l.keys["j"]; ok {
		t.Fatal("success kept failures")
	}
}

func TestJSONToValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		t    lwm2m.DataType
		want string
		err  bool
	}{
		{`"12"`, lwm2m.TypeInteger, "integer(12)", false},
		{`12`, lwm2m.TypeInteger, "integer(12)", false},
		{`12.5`, lwm2m.TypeInteger, "", true},
		{`12.5`, lwm2m.TypeFloat, "float(12.5)", false},
		{`-1`, lwm2m.TypeUnsigned, "", true},
		{`true`, lwm2m.TypeBoolean, "boolean(1)", false},
		{`true`, lwm2m.TypeString, "", true},
		{`"hello"`, lwm2m.TypeString, "string(hello)", false},
		{`5`, lwm2m.TypeString, "", true},
		{`"aGk="`, lwm2m.TypeOpaque, "opaque(aGk=)", false},
		{`"not base64!"`, lwm2m.TypeOpaque, "", true},
		{`"3:0"`, lwm2m.TypeObjlnk, "objlnk(3:0)", false},
		{`7`, lwm2m.TypeNone, "integer(7)", false},
		{`7.25`, lwm2m.TypeNone, "float(7.25)", false},
		{`"x"`, lwm2m.TypeNone, "string(x)", false},
		{`null`, lwm2m.TypeNone, "", true},
		{`{}`, lwm2m.TypeString, "", true},
		{`[1]`, lwm2m.TypeInteger, "", true},
	} {
		v, err := jsonToValue(json.RawMessage(c.in), c.t)
		if (err != nil) != c.err || !c.err && v.String() != c.want {
			t.Errorf("jsonToValue(%s, %s) = %v, %v; want %s (err %v)", c.in, c.t, v, err, c.want, c.err)
		}
	}
}

func TestLinkPaths(t *testing.T) {
	got := linkPaths(`</>;rt="oma.lwm2m";ct=11543, </1/0>,</3/0>;ver=1.1, </3303/0>, </5>, </3/0/1>, garbage, <>`)
	var s []string
	for _, p := range got {
		s = append(s, p.Relative())
	}
	if strings.Join(s, " ") != "1/0 3/0 3303/0 5" {
		t.Fatalf("linkPaths = %v", s)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/devices": "/devices", "//evil.example": "/", "https://evil.example": "/", "/\\evil": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q", in, got)
		}
	}
}

func TestBrokerDropsForSlowSubscriber(t *testing.T) {
	b := NewBroker()
	slow, cancel := b.Subscribe()
	defer cancel()
	for i := 0; i < 1000; i++ {
		b.Publish(LiveEvent{Kind: "value"})
	}
	if len(slow) != 256 || b.drops != 1000-256 {
		t.Fatalf("buffered %d, dropped %d", len(slow), b.drops)
	}
	cancel()
	if b.Subscribers() != 0 {
		t.Fatal("cancel kept the subscriber")
	}
}

func TestPublicMessage(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("provision %q: %w", "d1", fmt.Errorf("store: provision %q: %w", "d1", store.ErrConflict)), `provision "d1": already exists`},
		{fmt.Errorf("store: endpoint %q: %w", "nope", store.ErrNotFound), `endpoint "nope": not found`},
		{fmt.Errorf("%w: retention must be 1 to 3650 days", ErrInvalid), "retention must be 1 to 3650 days"},
	} {
		if got := publicMessage(c.err); got != c.want {
			t.Errorf("publicMessage(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestBrokerFollowsStoreOnlyWhileSubscribed (issue 15): with no page
// subscribed, the broker holds no store subscription, so the store's
// writer publishes nothing; the first Subscribe opens one before it
// returns (a commit right after it reaches the page), and the last cancel
// closes it.
func TestBrokerFollowsStoreOnlyWhileSubscribed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if n := e.db.Subscribers(); n != 0 {
		t.Fatalf("%d store subscriptions with no page open, want 0", n)
	}
	if _, err := e.db.UpsertEndpoint(ctx, store.Endpoint{Name: "dev", Online: true, Lifetime: 300}); err != nil {
		t.Fatal(err)
	}
	ch1, cancel1 := e.broker.Subscribe()
	ch2, cancel2 := e.broker.Subscribe()
	if n := e.db.Subscribers(); n != 1 {
		t.Fatalf("%d store subscriptions for two pages, want 1", n)
	}
	rec := lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(21.5)}
	if err := e.db.IngestWait(ctx, store.Batch{Endpoint: "dev", Received: time.Now(), Records: []lwm2m.Record{rec}}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan LiveEvent{ch1, ch2} {
		select {
		case ev := <-ch:
			if ev.Kind != "value" || ev.Endpoint != "dev" || ev.Path != "3303/0/5700" {
				t.Fatalf("got %+v", ev)
			}
		case <-time.After(time.Minute):
			t.Fatal("the commit never reached the page")
		}
	}
	cancel1()
	if n := e.db.Subscribers(); n != 1 {
		t.Fatalf("%d store subscriptions for one page, want 1", n)
	}
	cancel2()
	if n := e.db.Subscribers(); n != 0 {
		t.Fatalf("%d store subscriptions after the last page left, want 0", n)
	}
	// A page that comes back is followed again.
	ch3, cancel3 := e.broker.Subscribe()
	defer cancel3()
	if n := e.db.Subscribers(); n != 1 {
		t.Fatalf("%d store subscriptions for a returning page, want 1", n)
	}
	if err := e.db.IngestWait(ctx, store.Batch{Endpoint: "dev", Received: time.Now(), Records: []lwm2m.Record{rec}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch3:
		if ev.Kind != "value" {
			t.Fatalf("got %+v", ev)
		}
	case <-time.After(time.Minute):
		t.Fatal("the commit never reached the returning page")
	}
}
