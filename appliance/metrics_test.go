package appliance

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
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

// TestMetricsCountFloodProtection: what the CoAP and DTLS layers refuse
// under a flood is counted on /metrics (issue 13 §4, issue 15).
func TestMetricsCountFloodProtection(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	c, err := net.Dial("udp", ta.a.Addrs().CoAP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Write([]byte{0x40}); err != nil { // shorter than a CoAP header
			t.Fatal(err)
		}
	}
	metrics := func() string {
		var b bytes.Buffer
		if err := ta.a.writeMetrics(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	eventually(t, "malformed datagrams counted", func() bool {
		return strings.Contains(metrics(), "\nflownexus_coap_malformed_total 3\n")
	})
	out := metrics()
	for _, name := range []string{
		"flownexus_coap_rate_limited_total", "flownexus_coap_overloaded_total", "flownexus_coap_device_busy_total",
		"flownexus_coap_trimmed_total", "flownexus_coap_dedup_evicted_total", "flownexus_coap_queued_current",
		"flownexus_coap_waiting_current", "flownexus_dtls_handshakes_evicted_total", "flownexus_dtls_sessions_journaled_total", "flownexus_dtls_hellos_stateless_total", "flownexus_dtls_cookies_verified_total",
	} {
		if !strings.Contains(out, "\n"+name+" ") {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}

// TestMetricsCountTransactions: the store writer's transactions are on
// /metrics, with the value the store counts (issue 15: how many readings a
// commit and its fsync carry is readings committed ÷ transactions).
func TestMetricsCountTransactions(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	ctx := context.Background()
	if _, err := ta.a.db.UpsertEndpoint(ctx, store.Endpoint{Name: "m-dev", Online: true}); err != nil {
		t.Fatal(err)
	}
	rec := lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(1)}
	if err := ta.a.db.IngestWait(ctx, store.Batch{Endpoint: "m-dev", Received: time.Now(), Records: []lwm2m.Record{rec}}); err != nil {
		t.Fatal(err)
	}
	if err := ta.a.db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := ta.a.db.Stats().Transactions
	got := ta.metric("flownexus_ingest_transactions_total")
	after := ta.a.db.Stats().Transactions
	if before == 0 || got < float64(before) || got > float64(after) {
		t.Fatalf("flownexus_ingest_transactions_total %v, the store counted %d then %d", got, before, after)
	}
}
