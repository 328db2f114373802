package appliance

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestMetricsGoroutines: /metrics carries the goroutine gauge that the
// benchmark (make bench) samples to see held work grow or return.
func TestMetricsGoroutines(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	req, _ := http.NewRequest("GET", ta.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "go_goroutines ")
		if !ok {
			continue
		}
		// The appliance runs its CoAP loop, ingestion writer and HTTP
		// server at least, each in a goroutine of its own.
		if n, err := strconv.Atoi(v); err != nil || n < 3 {
			t.Fatalf("go_goroutines %q: want a count of at least 3", v)
		}
		return
	}
	t.Fatal("no go_goroutines gauge in /metrics")
}
