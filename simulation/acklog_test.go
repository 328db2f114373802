package simulation

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
)

func TestAckLogRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	l := NewAckLog(&buf)
	p := lwm2m.NewPath(3303, 0, 5700)
	l.Record(client.Event{Kind: client.EventNotified, Endpoint: "a", Err: errors.New("5.03"), Acked: nil})
	l.Record(client.Event{Kind: client.EventNotified, Endpoint: "a", Acked: []lwm2m.Record{{Path: p, Value: lwm2m.Float(21.5)}}})
	l.Record(client.Event{Kind: client.EventSent, Endpoint: "b", Acked: []lwm2m.Record{{Path: p, Value: lwm2m.Float(22)}, {Path: p, Value: lwm2m.Float(22)}}})
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAckLog(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Endpoint != "a" || got[0].Value != lwm2m.Float(21.5).Text() || got[0].Path != "/3303/0/5700" {
		t.Fatalf("read back %+v", got)
	}
	if mem := l.Acked(); len(mem) != 3 {
		t.Fatalf("in memory %+v", mem)
	}
	// 22 was acknowledged twice: one stored copy leaves one missing.
	stored := []Acked{got[0], got[1]}
	if m := Missing(got, stored); len(m) != 1 || m[0].Endpoint != "b" {
		t.Fatalf("missing %+v", m)
	}
	if m := Missing(got, got); len(m) != 0 {
		t.Fatalf("missing %+v from a complete store", m)
	}
}

func TestReadAckLogRefusesGarbage(t *testing.T) {
	for _, in := range []string{"{", `{"ep":"a","path":"not a path","v":"1"}`, "[]"} {
		if _, err := ReadAckLog(strings.NewReader(in + "\n")); err == nil {
			t.Errorf("%q read without error", in)
		}
	}
}

// FuzzReadAckLog: any input reads to entries or an error, never a panic,
// and what it reads has parseable paths.
func FuzzReadAckLog(f *testing.F) {
	f.Add(`{"ep":"a","path":"/3303/0/5700","v":"21.5"}` + "\n")
	f.Add(`{"ep":"b","path":"/3/0/0","v":"x","t":1700000000000}` + "\n" + `{"ep":"b","path":"/3/0/9","v":"80"}`)
	f.Add("{\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ReadAckLog(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, a := range got {
			if _, err := lwm2m.ParsePath(a.Path); err != nil {
				t.Fatalf("accepted bad path %q", a.Path)
			}
		}
	})
}
