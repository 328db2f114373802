package lwm2m

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckEndpointName(t *testing.T) {
	for _, ok := range []string{"urn:imei:352656100123456", "urn:uuid:0d5a1c2e-8a9b-4c7d-9e0f-112233445566", "sim-0001", "dev@site.example", strings.Repeat("a", 64)} {
		if err := CheckEndpointName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "zähler", "a\"b", `a\b`, "a/b", "a?b", "a#b", "a&b", "a%20b", "tab\t", strings.Repeat("a", 65)} {
		err := CheckEndpointName(bad)
		if !errors.Is(err, ErrBadEndpointName) || !strings.Contains(err.Error(), EndpointNameRule) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
