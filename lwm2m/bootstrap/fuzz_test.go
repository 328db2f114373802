package bootstrap

import (
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// FuzzBootstrapRequest feeds arbitrary CoAP datagrams to the request parser
// and discover answers to the instance parser: no panic, and an accepted
// request always names an endpoint.
func FuzzBootstrapRequest(f *testing.F) {
	seed := func(qs ...string) []byte {
		m := newRequest(coap.POST, "/bs")
		for _, q := range qs {
			m.AddQuery(q)
		}
		b, _ := m.Marshal()
		return b
	}
	f.Add(seed("ep=urn:imei:1", "pct=112"), `</>;lwm2m=1.1,</0/0>,</1>`)
	f.Add(seed("ep="), `</0/65535>,</0/99999>`)
	f.Add(seed("pct=x"), `<`)
	f.Add([]byte{0x40, 0x02, 0, 1}, "")
	f.Fuzz(func(t *testing.T, datagram []byte, links string) {
		if m, err := coap.Unmarshal(datagram); err == nil {
			if req, err := parseRequest(m, coap.Peer{}); err == nil && req.Endpoint == "" {
				t.Fatal("accepted a request without an endpoint")
			}
		}
		for _, id := range securityInstances(links) {
			_ = id
		}
	})
}
