package webui

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// fleet fills a store with n devices (a third offline, three firmware
// versions) and keeps ingesting a temperature from random devices at
// about rate notifications per second until the benchmark ends.
func fleet(b *testing.B, n, rate int) (*env, *client) {
	b.Helper()
	e := newEnv(b)
	ctx := context.Background()
	now := time.Now()
	for i := 0; i < n; i++ {
		_, err := e.db.UpsertEndpoint(ctx, store.Endpoint{Name: fmt.Sprintf("urn:imei:35%013d", i), Online: i%3 != 0, LastSeen: now.Add(-time.Duration(i) * time.Second),
			Lifetime: 300, Binding: "U", LwM2MVersion: "1.1", SecurityMode: []string{"psk", "x509", "nosec"}[i%3], ObjectLinks: "</3/0>,</3303/0>",
			FirmwareVersion: []string{"1.0.0", "1.1.0", "2.0.0"}[i%3], RegisteredAt: now})
		if err != nil {
			b.Fatal(err)
		}
	}
	e.user("admin", RoleAdmin, pw)
	c := e.login("admin", pw)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per := max(1, rate/100)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for j := 0; j < per; j++ {
					ep := fmt.Sprintf("urn:imei:35%013d", rand.IntN(n))
					e.db.Ingest(store.Batch{Endpoint: ep, Received: time.Now(), Records: []lwm2m.Record{{Path: lwm2m.MustParsePath("3303/0/5700"), Value: lwm2m.Float(20 + rand.Float64())}}})
				}
			}
		}
	}()
	b.Cleanup(func() { close(stop); wg.Wait() })
	return e, c
}

// measure runs req b.N times and reports the 95th percentile latency.
func measure(b *testing.B, c *client, path string) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		w := httptest.NewRecorder()
		c.e.h.ServeHTTP(w, c.req("GET", path, nil))
		lat = append(lat, time.Since(start))
		if w.Code != 200 {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkDeviceList10k: the device list API and the page's rows at
// 10,000 devices while 2,000 notifications per second are ingested.
func BenchmarkDeviceList10k(b *testing.B) {
	e, c := fleet(b, 10000, 2000)
	_ = e
	for _, q := range []string{
		"/api/v1/devices?limit=50",
		"/api/v1/devices?limit=50&sort=-lastSeen&online=true",
		"/api/v1/devices?limit=50&q=" + url.QueryEscape("0000000099") + "&security=psk&firmware=1.0.0",
		"/api/v1/devices?limit=50&offset=9000&sort=firmware",
	} {
		b.Run(q[len("/api/v1/devices?"):], func(b *testing.B) { measure(b, c, q) })
	}
	b.Run("page-rows", func(b *testing.B) {
		measure(b, c.cookieClient(), "/ui/devices/rows?sort=-lastSeen&online=true")
	})
}

// BenchmarkChart24h10k: a 24-hour chart of one device's temperature (one
// reading every 10 s: 8,640 points, downsampled to 1,000) at 10,000
// devices while ingesting.
func BenchmarkChart24h10k(b *testing.B) {
	e, c := fleet(b, 10000, 2000)
	ep := "urn:imei:350000000000042"
	start := time.Now().Add(-24 * time.Hour)
	recs := make([]lwm2m.Record, 0, 8640)
	for i := 0; i < 8640; i++ {
		recs = append(recs, lwm2m.Record{Path: lwm2m.MustParsePath("3303/0/5700"), Value: lwm2m.Float(20 + float64(i%360)/60), Time: start.Add(time.Duration(i) * 10 * time.Second)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.db.IngestWait(ctx, store.Batch{Endpoint: ep, Received: time.Now(), Records: recs}); err != nil {
		b.Fatal(err)
	}
	if err := e.db.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	q := "/api/v1/devices/" + ep + "/telemetry?path=3303/0/5700&from=" + url.QueryEscape(start.Format(time.RFC3339)) + "&to=" + url.QueryEscape(time.Now().Add(time.Minute).Format(time.RFC3339))
	b.Run("store-chart", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := e.db.Chart(context.Background(), store.ChartQuery{Endpoint: ep, Path: lwm2m.MustParsePath("3303/0/5700"), From: start, To: time.Now(), MaxPoints: 1000}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	})
	b.Run("api", func(b *testing.B) { measure(b, c, q) })
	b.Run("device-page", func(b *testing.B) { measure(b, c.cookieClient(), "/devices/"+ep) })
}
