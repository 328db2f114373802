package server

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// benchConfig lifts the per-peer rate limit: benchmarks drive single peers
// in closed loops far above what a device does.
func benchConfig() Config {
	c := DefaultConfig()
	c.CoAP.PeerRate = 0
	return c
}

// BenchmarkRegisterUpdate: one op is a Register followed by an Update, over
// loopback, from parallel devices (GOMAXPROCS × the -cpu/parallelism).
func BenchmarkRegisterUpdate(b *testing.B) {
	rec := &countingHandler{}
	_, addr := testServer(b, benchConfig(), rec)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { reportCPU(b, cpu0) }()
	b.RunParallel(func(pb *testing.PB) {
		d := newDeviceWith(b, "127.0.0.1:0", addr, benchConfig().CoAP)
		ep := fmt.Sprintf("bench-%d", n.Add(1))
		for pb.Next() {
			d.register(ep)
			if resp := d.req(coap.POST, d.loc, []string{"lt=300"}, nil); resp.Code != coap.Changed {
				b.Fatalf("update: %s", resp.Code)
			}
		}
	})
	b.StopTimer()
	if rec.registered.Load() < int64(b.N) {
		b.Fatalf("registered %d < %d", rec.registered.Load(), b.N)
	}
}

// countingHandler counts events without keeping them.
type countingHandler struct {
	NopHandler
	registered, notified atomic.Int64
}

func (c *countingHandler) Registered(context.Context, *Registration) error {
	c.registered.Add(1)
	return nil
}

func (c *countingHandler) Notified(context.Context, *Registration, *Observation, []lwm2m.Record) error {
	c.notified.Add(1)
	return nil
}

// BenchmarkNotification: one op is a confirmable notification from a
// device, decoded and handed to the handler, and its ACK back at the
// device; parallel devices each with their own observation.
func BenchmarkNotification(b *testing.B) {
	h := &countingHandler{}
	s, addr := testServer(b, benchConfig(), h)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { reportCPU(b, cpu0) }()
	b.RunParallel(func(pb *testing.PB) {
		d := newDeviceWith(b, "127.0.0.1:0", addr, benchConfig().CoAP)
		ep := fmt.Sprintf("notify-%d", n.Add(1))
		d.register(ep)
		if _, _, err := s.Observe(context.Background(), ep, lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText); err != nil {
			b.Fatal(err)
		}
		seq := uint32(2)
		for pb.Next() {
			seq++
			if err := d.notify(coap.Confirmable, seq, "21.5", lwm2m.FormatText); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	if h.notified.Load() < int64(b.N) {
		b.Fatalf("delivered %d < %d", h.notified.Load(), b.N)
	}
}

// rawDevice is a device reduced to a socket, so that a fleet of 10,000
// costs no goroutines and little memory on the test side and the server's
// own cost shows.
type rawDevice struct {
	c     *net.UDPConn
	mid   uint16
	buf   []byte
	token []byte // of the server's observation
}

func (d *rawDevice) write(m *coap.Message) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = d.c.Write(b)
	return err
}

func (d *rawDevice) read() (*coap.Message, error) {
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := d.c.Read(d.buf)
	if err != nil {
		return nil, err
	}
	return coap.Unmarshal(append([]byte(nil), d.buf[:n]...))
}

// fleetSize is the fleet of BenchmarkFleet.
const fleetSize = 10000

// BenchmarkFleet registers 10,000 plain-CoAP devices and observes one
// resource on each (b.N is ignored beyond 1: the fleet is the workload),
// then reports the server's memory per device, its goroutines and its CPU
// use while the fleet idles. Devices use source addresses 127.0.0.1–.4 so
// no single address runs out of ports.
func BenchmarkFleet(b *testing.B) {
	if b.N > 1 {
		b.Skip("the fleet is measured once (run with -benchtime=1x)")
	}
	cfg := benchConfig()
	h := &countingHandler{}
	s, addr := testServer(b, cfg, h)
	ua, _ := net.ResolveUDPAddr("udp", addr)
	devs := make([]*rawDevice, fleetSize)
	for i := range devs {
		la := &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%4))}
		c, err := net.DialUDP("udp", la, ua)
		if err != nil {
			b.Fatalf("device %d: %v", i, err)
		}
		devs[i] = &rawDevice{c: c, mid: uint16(i), buf: make([]byte, 1500)}
	}
	defer func() {
		for _, d := range devs {
			d.c.Close()
		}
	}()
	goroutines0 := runtime.NumGoroutine()
	heap0 := heapInUse()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan int)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := fleetDevice(s, devs[i], i); err != nil {
					failed.Add(1)
					b.Errorf("device %d: %v", i, err)
				}
			}
		}()
	}
	for i := range devs {
		work <- i
	}
	close(work)
	wg.Wait()
	setup := time.Since(start)
	if failed.Load() > 0 {
		b.FailNow()
	}
	st := s.Stats()
	if st.Registered != fleetSize || st.Observations != fleetSize {
		b.Fatalf("registered %d, observing %d", st.Registered, st.Observations)
	}
	heap1 := heapInUse()
	goroutines1 := runtime.NumGoroutine()
	// Idle: nothing happens for 3 s; the server's timers and sweeps are
	// all that runs.
	cpu0 := cpuTime()
	idle := 3 * time.Second
	time.Sleep(idle)
	cpu := cpuTime() - cpu0
	// Every device sends one confirmable notification and waits for its
	// ACK: the notification path at fleet scale.
	cpu1 := cpuTime()
	t0 := time.Now()
	work = make(chan int)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d := devs[i]
				d.mid++
				n := &coap.Message{Type: coap.Confirmable, Code: coap.Content, MessageID: d.mid, Token: d.token, Payload: []byte("21")}
				n.SetObserve(2)
				n.SetContentFormat(uint16(lwm2m.FormatText))
				if err := d.write(n); err != nil {
					failed.Add(1)
					continue
				}
				if ack, err := d.read(); err != nil || ack.Type != coap.Acknowledgement || ack.MessageID != d.mid {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range devs {
		work <- i
	}
	close(work)
	wg.Wait()
	notifyWall, notifyCPU := time.Since(t0), cpuTime()-cpu1
	if failed.Load() > 0 || h.notified.Load() != fleetSize {
		b.Fatalf("notifications: %d failed, %d delivered", failed.Load(), h.notified.Load())
	}
	b.ReportMetric(float64(notifyCPU.Microseconds())/fleetSize, "notify-cpu-µs")
	b.ReportMetric(fleetSize/notifyWall.Seconds(), "notifications/s")
	b.ReportMetric(float64(heap1-heap0)/fleetSize, "bytes/device")
	b.ReportMetric(float64(goroutines1-goroutines0), "goroutines-added")
	b.ReportMetric(float64(cpu)/float64(idle)*100, "idle-cpu-%")
	b.ReportMetric(setup.Seconds(), "setup-s")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	runtime.KeepAlive(devs)
}

// fleetDevice registers one raw device, answers the server's observe
// request and checks a notification arrives.
func fleetDevice(s *Server, d *rawDevice, i int) error {
	ep := fmt.Sprintf("fleet-%05d", i)
	reg := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: d.mid, Token: []byte{byte(i), byte(i >> 8)}, Payload: []byte(links)}
	reg.SetPath("/rd")
	reg.AddQuery("ep=" + ep)
	reg.AddQuery("lt=86400")
	if err := d.write(reg); err != nil {
		return err
	}
	resp, err := d.read()
	if err != nil || resp.Code != coap.Created {
		return fmt.Errorf("register: %v %v", resp, err)
	}
	type result struct {
		o   *Observation
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, _, err := s.Observe(context.Background(), ep, lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText)
		done <- result{o, err}
	}()
	get, err := d.read()
	if err != nil {
		return fmt.Errorf("observe request: %w", err)
	}
	d.token = get.Token
	ack := &coap.Message{Type: coap.Acknowledgement, Code: coap.Content, MessageID: get.MessageID, Token: get.Token, Payload: []byte("20")}
	ack.SetObserve(1)
	ack.SetContentFormat(uint16(lwm2m.FormatText))
	if err := d.write(ack); err != nil {
		return err
	}
	if r := <-done; r.err != nil {
		return r.err
	}
	return nil
}

// reportCPU reports the process CPU time per op (server and the test's
// devices together, both sides of every exchange): on a shared machine
// it is steadier than wall time.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	// Live heap plus goroutine stacks: a goroutine per peer costs stack.
	return m.HeapAlloc + m.StackInuse
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var _ = strings.Repeat
