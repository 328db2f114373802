package webui

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
)

// FuzzOperationRequest feeds arbitrary JSON bodies to the operation
// validator: it must answer a request or refuse it, never panic, and an
// accepted request must be well formed.
func FuzzOperationRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"read","path":"3/0/0"}`,
		`{"type":"write","path":"1/0/1","value":"120"}`,
		`{"type":"write","path":"1/0","value":{"1":60,"2":10}}`,
		`{"type":"write-composite","value":{"1/0/1":60}}`,
		`{"type":"execute","path":"3/0/4","args":"0='x'"}`,
		`{"type":"write-attributes","path":"3303/0/5700","attributes":{"pmin":"10"}}`,
		`{"type":"read-composite","paths":["3/0/0","3303/0/5700"],"format":"senml-cbor"}`,
		`{"type":"create","path":"3303","value":{"0/5700":1.5}}`,
		`{"type":"observe","path":"3303/0/5700","format":112}`,
		`{"type":"delete","path":"3303/0"}`,
	} {
		f.Add([]byte(s))
	}
	s := &Server{deps: Deps{Registry: lwm2m.NewRegistry()}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b operationBody
		if json.Unmarshal(data, &b) != nil {
			return
		}
		req, err := s.operationRequest(b)
		if err != nil {
			if c, _ := statusOf(err); c != 422 {
				t.Fatalf("refusal with %d: %v", c, err)
			}
			return
		}
		if _, ok := operationTypes[req.Type]; !ok || len(req.Paths) == 0 && req.Type != "write-composite" {
			t.Fatalf("accepted a malformed request %+v from %s", req, data)
		}
		if (req.Type == "write" || req.Type == "write-composite") && req.Value == nil && len(req.Values) == 0 {
			t.Fatalf("write without value from %s", data)
		}
	})
}

// FuzzLinkPaths: a registration's link list from a device is untrusted.
func FuzzLinkPaths(f *testing.F) {
	f.Add(`</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1,</3303/0>`)
	f.Add(`<//>,<1/0>,</65535/0>,</1/0/0/0/0>`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range linkPaths(s) {
			if p.IsRoot() || p.Len() > 2 {
				t.Fatalf("linkPaths(%q) gave %v", s, p)
			}
		}
	})
}

// FuzzCheckPassword: stored hashes come from the database, which a
// restore may have filled; a malformed one must be refused, not crash.
func FuzzCheckPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U", "pw")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$$", "")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		// Costly but valid parameters only make the fuzzer slow.
		if parts := strings.Split(hash, "$"); len(parts) > 3 {
			var m, it, p int
			if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &it, &p); err == nil && (m > 4096 || it > 2) {
				return
			}
		}
		CheckPassword(hash, pw)
	})
}
