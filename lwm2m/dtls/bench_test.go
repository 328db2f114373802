package dtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// benchRig is a DTLS listener with the LwM2M server behind it.
type benchRig struct {
	srv    *Server
	ca     *testCA
	keys   map[string][]byte
	cancel func()
	done   chan struct{}
}

func newBenchRig(b *testing.B, devices int, cert bool) *benchRig {
	b.Helper()
	keys := make(map[string][]byte, devices)
	for i := range devices {
		keys["dev-"+strconv.Itoa(i)] = []byte(fmt.Sprintf("key-%012d", i))
	}
	cfg := DefaultConfig()
	cfg.PSK = pskTable(keys).lookup
	if maxLive := os.Getenv("FLOWNEXUS_BENCH_MAXLIVE"); maxLive != "" {
		cfg.MaxLive, _ = strconv.Atoi(maxLive)
	}
	r := &benchRig{keys: keys, done: make(chan struct{}, 2)}
	if cert {
		r.ca = newTestCA(b, "bench CA")
		cfg.Certificate, _ = r.ca.issue(b, "bench-server", true, time.Now().Add(time.Hour))
		cfg.ClientCAs = r.ca.pool
	}
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	r.srv = srv
	scfg := server.DefaultConfig()
	lw := server.New(scfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { _ = srv.Run(ctx); r.done <- struct{}{} }()
	go func() { _ = lw.Serve(ctx, srv); r.done <- struct{}{} }()
	b.Cleanup(func() { cancel(); <-r.done; <-r.done })
	return r
}

// registerOnce sends one LwM2M Register (Core §6.2.1) over c and waits for
// 2.01.
func registerOnce(c *Client, ep string, mid uint16) error {
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: mid, Token: []byte{byte(mid >> 8), byte(mid), 1, 2}}
	m.SetPath("/rd")
	m.AddQuery("ep=" + ep)
	m.AddQuery("lt=600")
	m.AddQuery("lwm2m=1.1")
	m.AddQuery("b=UQ")
	m.SetContentFormat(40)
	m.Payload = []byte("</1/0>,</3/0>,</3303/0>")
	raw, err := m.Marshal()
	if err != nil {
		return err
	}
	buf := make([]byte, 1500)
	// Confirmable: retransmit on RFC 7252 §4.2's schedule (2 s, doubling).
	timeout := 2 * time.Second
	for attempt := 0; ; {
		if err := c.WriteTo(raw, c.Peer()); err != nil {
			return err
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if attempt++; attempt > 4 {
				return err
			}
			timeout *= 2
			continue
		}
		resp, err := coap.Unmarshal(buf[:n])
		if err != nil || resp.MessageID != mid {
			continue
		}
		if resp.Code != coap.Created {
			return fmt.Errorf("register %s: %s", ep, resp.Code)
		}
		return nil
	}
}

// handshakeRegister makes n devices handshake and register with workers
// in parallel; keep says what to do with each client afterwards.
func handshakeRegister(b *testing.B, r *benchRig, from, n, workers int, certs []*tls.Certificate, keep func(*Client)) {
	b.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= from+n {
					return
				}
				ep := "dev-" + strconv.Itoa(i%len(r.keys))
				if certs != nil {
					ep = "dev-" + strconv.Itoa(i%len(certs))
				}
				cfg := ClientConfig{PSKIdentity: ep, PSK: r.keys[ep], HandshakeTimeout: 20 * time.Second}
				if certs != nil {
					cfg = ClientConfig{Certificate: certs[i%len(certs)], RootCAs: r.ca.pool, ServerName: "localhost", HandshakeTimeout: 20 * time.Second}
				}
				c, err := Dial(context.Background(), r.srv.LocalAddr().String(), cfg)
				if err == nil {
					err = registerOnce(c, ep, uint16(i))
					keep(c)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
}

func closeClient(c *Client) { _ = c.Close() }

// BenchmarkPSKHandshakeRegister measures full PSK handshakes plus one
// Register each, client and server in this process on loopback.
func BenchmarkPSKHandshakeRegister(b *testing.B) {
	r := newBenchRig(b, 4096, false)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	handshakeRegister(b, r, 0, b.N, benchWorkers, nil, closeClient)
	reportRate(b, b.N, time.Since(start), cpuTime()-cpu0)
}

// BenchmarkCertHandshakeRegister is the same with ECDHE-ECDSA P-256 and
// device certificates.
func BenchmarkCertHandshakeRegister(b *testing.B) {
	r := newBenchRig(b, 4*benchWorkers, true)
	// Distinct CNs: a second handshake of one identity replaces the first
	// session, and workers overlap.
	certs := make([]*tls.Certificate, 4*benchWorkers)
	for i := range certs {
		certs[i], _ = r.ca.issue(b, "dev-"+strconv.Itoa(i), false, time.Now().Add(time.Hour))
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	handshakeRegister(b, r, 0, b.N, benchWorkers, certs, closeClient)
	reportRate(b, b.N, time.Since(start), cpuTime()-cpu0)
}

// BenchmarkIdleSessions holds FLOWNEXUS_BENCH_SESSIONS (10,000) registered
// PSK devices and reports the server's cost per idle session, live and
// parked. The clients suspend (keep their state, drop their sockets), as
// sleeping devices do, so the figures are the server's.
func BenchmarkIdleSessions(b *testing.B) {
	n := 10000
	if s := os.Getenv("FLOWNEXUS_BENCH_SESSIONS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if b.N > 1 {
		b.Skipf("one fill of %d sessions is the measurement; run with -benchtime 1x (or the default)", n)
	}
	for range b.N {
		r := newBenchRig(b, n, false)
		runtime.GC()
		base := sample()
		start, cpu0 := time.Now(), cpuTime()
		// The device keeps its state; here it is dropped, so that the
		// figures are the server's alone.
		handshakeRegister(b, r, 0, n, benchWorkers, nil, func(c *Client) { _, _ = c.Suspend() })
		elapsed, cpu := time.Since(start), cpuTime()-cpu0
		if st := r.srv.Stats(); st.Sessions != n {
			b.Fatalf("server holds %d sessions, want %d", st.Sessions, n)
		}
		live := sample()
		liveSessions := r.srv.Stats().Live
		r.srv.ParkIdle(0)
		if st := r.srv.Stats(); st.Live != 0 || st.Sessions != n {
			b.Fatalf("after parking: %+v", st)
		}
		idle := sample()
		debug.FreeOSMemory()
		steady := rssBytes()
		if path := os.Getenv("FLOWNEXUS_BENCH_HEAPPROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		reportRate(b, n, elapsed, cpu)
		// After the fill: MaxLive (or fewer) live sessions, the rest parked
		// by the janitor; then all parked.
		b.ReportMetric(float64(liveSessions), "live-sessions-after-fill")
		b.ReportMetric(float64(live.rss)/(1<<20), "after-fill-RSS-MB")
		b.ReportMetric(float64(idle.heap-base.heap)/float64(n), "parked-heap-B/session")
		b.ReportMetric(float64(idle.goroutines-base.goroutines)/float64(n), "parked-goroutines/session")
		b.ReportMetric(float64(steady)/(1<<20), "parked-RSS-MB")
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
		r.cancel()
	}
}

type memSample struct {
	heap       int64
	goroutines int
	rss        int64
}

func sample() memSample {
	// Two collections: sync.Pool contents (pion's 8 KiB read buffers)
	// survive the first in the victim cache.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: int64(ms.HeapInuse + ms.StackInuse), goroutines: runtime.NumGoroutine(), rss: rssBytes()}
}

// rssBytes reads the resident set size from /proc (Linux); 0 elsewhere.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// benchWorkers is how many devices handshake at once: enough to keep both
// sides busy while each waits on the other's flight.
const benchWorkers = 64

// reportRate reports the wall-clock rate and the CPU time per handshake +
// Register (both sides, this process): on a shared machine the first
// depends on the neighbours, the second does not; cores / CPU time is the
// rate an otherwise idle machine sustains.
func reportRate(b *testing.B, n int, wall, cpu time.Duration) {
	b.ReportMetric(float64(n)/wall.Seconds(), "registers/s")
	per := cpu.Seconds() / float64(n)
	b.ReportMetric(per*1e3, "cpu-ms/register")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0))/per, "cpu-bound-registers/s")
}

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// peakRSS reads VmHWM, the process's peak resident set size.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// BenchmarkParkResume measures what a sleeping device's wake-up costs the
// server instead of a handshake: park the session, then one CoAP-sized
// round trip that revives it from its exported state.
func BenchmarkParkResume(b *testing.B) {
	r := newBenchRig(b, 1, false)
	c, err := Dial(context.Background(), r.srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-0", PSK: r.keys["dev-0"], HandshakeTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := registerOnce(c, "dev-0", 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; b.Loop(); i++ {
		if r.srv.ParkIdle(0) != 1 {
			b.Fatal("not parked")
		}
		if err := registerOnce(c, "dev-0", uint16(i+2)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/park+resume+register")
	if st := r.srv.Stats(); st.HandshakesOK != 1 {
		b.Fatalf("resumes cost handshakes: %+v", st)
	}
}
