package appliance

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// TestRegisterFloodGoroutinesReturn: devices that never answer the
// appliance's follow-up requests (firmware version read, auto-observe,
// composite observe) re-register again and again. The follow-ups of every
// replaced registration are cancelled, and once the devices de-register
// the appliance is back to the goroutines it had before the flood (issue
// 15: 47,045 goroutines and 1 GB after 60 s of 32 peers re-registering).
func TestRegisterFloodGoroutinesReturn(t *testing.T) {
	const devices, rounds = 16, 10
	ta := startAppliance(t, testConfig(t))
	type dev struct {
		ep     *coap.Endpoint
		server coap.Peer
		loc    string
	}
	block := make(chan struct{})
	var devs []*dev
	var stops []func()
	for range devices {
		tr, peer, err := coap.DialUDP("127.0.0.1:0", ta.a.Addrs().CoAP)
		if err != nil {
			t.Fatal(err)
		}
		cc := coap.DefaultConfig()
		cc.ProcessingDelay = 0
		ep := coap.NewEndpoint(tr, coap.HandlerFunc(func(ctx context.Context, r *coap.Request) *coap.Response {
			select { // a device that never answers
			case <-block:
			case <-ctx.Done():
			}
			return nil
		}), cc)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = ep.Run(ctx) }()
		stops = append(stops, func() { cancel(); <-done })
		devs = append(devs, &dev{ep: ep, server: peer})
	}
	defer func() {
		close(block)
		for _, s := range stops {
			s()
		}
	}()
	req := func(d *dev, code coap.Code, path string, queries ...string) *coap.Message {
		m := &coap.Message{Code: code}
		m.SetPath(path)
		for _, q := range queries {
			m.AddQuery(q)
		}
		if code == coap.POST {
			m.SetContentFormat(40)
			m.Payload = []byte(`</>;rt="oma.lwm2m";ct="110 112",</3/0>,</3303/0>`)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := d.ep.Do(ctx, d.server, m)
		if err != nil {
			t.Errorf("%s %s: %v", code, path, err)
			return nil
		}
		return resp
	}
	// A first exchange shows each device's endpoint is running (its
	// workers started) before the baseline is taken.
	for _, d := range devs {
		if resp := req(d, coap.GET, "/rd"); resp == nil || resp.Code != coap.MethodNotAllowed {
			t.Fatalf("ping: %v", resp)
		}
	}
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				resp := req(d, coap.POST, "/rd", fmt.Sprintf("ep=flood-%d", i), "lt=300", "lwm2m=1.1", "b=U")
				if resp == nil || resp.Code != coap.Created {
					t.Errorf("register: %v", resp)
					return
				}
				d.loc = "/" + strings.Join(resp.LocationPath(), "/")
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, d := range devs {
		if resp := req(d, coap.DELETE, d.loc); resp == nil || resp.Code != coap.Deleted {
			t.Fatalf("de-register: %v", resp)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d after the flood, %d before\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := ta.a.srv.Stats(); st.CoAP.Waiting != 0 || st.CoAP.Pending != 0 {
		t.Fatalf("left waiting: %+v", st.CoAP)
	}
}
