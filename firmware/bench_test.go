package firmware

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// serverDevices is the firmware service's view of a real lwm2m/server
// whose devices are always awake.
type serverDevices struct{ *server.Server }

func (serverDevices) Reachable(string) bool { return true }

// benchDevice is one downloader: its own UDP socket and CoAP endpoint,
// registered with the server from that socket.
type benchDevice struct {
	ep   *coap.Endpoint
	peer coap.Peer
	stop func()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServe1000Devices: one image served at once to 1,000 registered
// devices over plain CoAP in 1024-byte Block2 blocks, each device asking
// for its next block as soon as it has the last (the access check, the
// block cut from the shared file and the UDP round trip on loopback). It
// reports blocks/s and the process CPU per block (server and the 1,000
// clients together: they share the process).
func BenchmarkServe1000Devices(b *testing.B) {
	devices := benchDevices
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	db := openDB(b, dir)
	lib, err := OpenLibrary(ctx, db, filepath.Join(dir, "firmware"), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	img := image(256<<10, 9)
	fw, err := lib.Add(ctx, bytes.NewReader(img), Meta{Version: "9"})
	if err != nil {
		b.Fatal(err)
	}
	scfg := server.DefaultConfig()
	scfg.CoAP.Workers = 16
	scfg.CoAP.QueueLength = 4096
	srv := server.New(scfg)
	svc := New(DefaultConfig(), db, lib, serverDevices{srv})
	srv.Handle("/fw/", svc)
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, tr); close(done) }()
	defer func() { cancel(); <-done }()

	// 1,000 devices register from their own sockets (spread over
	// loopback addresses, as many devices behind one NAT would not be).
	devs := make([]*benchDevice, devices)
	names := make([]string, devices)
	cc := coap.DefaultConfig()
	cc.MaxBodySize = len(img) + 1
	for i := range devs {
		local := fmt.Sprintf("127.0.%d.%d:0", 10+i/200, 1+i%200)
		t, peer, err := coap.DialUDP(local, tr.LocalAddr().String())
		if err != nil {
			b.Fatal(err)
		}
		ep := coap.NewEndpoint(t, nil, cc)
		dctx, dcancel := context.WithCancel(ctx)
		ddone := make(chan struct{})
		go func() { _ = ep.Run(dctx); close(ddone) }()
		devs[i] = &benchDevice{ep: ep, peer: peer, stop: func() { dcancel(); t.Close(); <-ddone }}
		names[i] = fmt.Sprintf("bench-%04d", i)
		reg := &coap.Message{Code: coap.POST, Payload: []byte("</5/0>")}
		reg.SetPath("/rd")
		reg.AddQuery("ep=" + names[i])
		reg.AddQuery("lt=3600")
		reg.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
		if r, err := ep.Do(ctx, peer, reg); err != nil || r.Code != coap.Created {
			b.Fatalf("register %s: %v %v", names[i], r, err)
		}
		if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: names[i]}); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, d := range devs {
			d.stop()
		}
	}()
	dep, err := db.CreateDeployment(ctx, fw.ID, names)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range names {
		if err := db.UpdateDeploymentDevice(ctx, dep.ID, n, store.DeviceChange{State: store.DeviceDownloading, Method: MethodCoAP, Restart: true}); err != nil {
			b.Fatal(err)
		}
	}
	if err := svc.restore(ctx); err != nil {
		b.Fatal(err)
	}
	path := "/fw/" + fw.SHA256
	nblocks := uint32((len(img) + 1023) / 1024)
	// Each device checks its first block against the image once.
	get := func(d *benchDevice, num uint32) (*coap.Message, error) {
		m := &coap.Message{Code: coap.GET}
		m.SetPath(path)
		m.SetBlock(coap.Block2, coap.Block{Num: num, SZX: 6})
		return d.ep.Do(ctx, d.peer, m)
	}
	if r, err := get(devs[0], 1); err != nil || !bytes.Equal(r.Payload, img[1024:2048]) {
		b.Fatalf("block 1: %v %v", r, err)
	}

	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			// Blocks 1.. (block 0 would make the client fetch them all).
			num := uint32(1 + i%int(nblocks-1))
			for next.Add(1) <= int64(b.N) {
				r, err := get(d, num)
				if err != nil || r.Code != coap.Content || len(r.Payload) == 0 {
					failed.Add(1)
				}
				num = 1 + num%(nblocks-1)
			}
		})
	}
	wg.Wait()
	el, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d blocks failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "blocks/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/block")
	st := srv.Stats().CoAP
	b.ReportMetric(float64(st.Duplicates+st.RateLimited+st.Overloaded), "server-drops+dups")
	if p := svc.access.progressOf(dep.ID, names[0]); p == 0 {
		b.Fatal("no progress counted")
	}
}

// benchDevices is how many devices download at once (the figure).
var benchDevices = envInt("FW_BENCH_DEVICES", 1000)

func envInt(k string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(k), &n); err == nil && n > 0 {
		return n
	}
	return def
}
