package interop

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// startDevice runs an lwm2m/client device (Device and Temperature objects)
// registered with a server on port, and returns it with its own port.
func startDevice(t *testing.T, port int) (*client.Client, *client.ValueObject, int) {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoint = "go-device"
	// A dialled socket only takes datagrams from its server; this device
	// listens to anyone so that libcoap can reach it too.
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := coap.Peer{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
	c, err := client.New(cfg, client.WithTransport(tr, server))
	if err != nil {
		t.Fatal(err)
	}
	reg := c.Tree().Registry()
	dm, _ := reg.Object(3)
	tm, _ := reg.Object(3303)
	dev, temp := client.NewValueObject(dm), client.NewValueObject(tm)
	desc := strings.Repeat("a long model description to make the answer span blocks; ", 8)
	if err := dev.AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("FlowNexus"), 1: lwm2m.String(desc), 16: lwm2m.String("U")}); err != nil {
		t.Fatal(err)
	}
	if err := temp.AddInstance(0, map[uint16]lwm2m.Value{5700: lwm2m.Float(20), 5701: lwm2m.String("Cel")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Tree().Add(dev, temp); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Registered():
	case <-time.After(10 * time.Second):
		t.Fatal("device did not register")
	}
	return c, temp, c.LocalAddr().(*net.UDPAddr).Port
}

// TestLibcoapTalksToClientEngine: libcoap reads from our client engine,
// fetches a large answer in Block2 blocks, and observes a resource whose
// value changes (RFC 7641), checking our device side against an
// independent CoAP implementation.
func TestLibcoapTalksToClientEngine(t *testing.T) {
	bin := coapClient(t)
	rec := newRecorder()
	_, port := startServer(t, rec)
	_, temp, devPort := startDevice(t, port)
	dev := fmt.Sprintf("coap://127.0.0.1:%d", devPort)

	out := runCoAP(t, bin, "-m", "get", "-A", "0", dev+"/3/0/0")
	if c := responseCode(out); c != "2.05" || !strings.Contains(out, "FlowNexus") {
		t.Fatalf("read manufacturer: %q\n%s", c, out)
	}
	if c := responseCode(runCoAP(t, bin, "-m", "get", dev+"/3/0/999")); c != "4.04" {
		t.Fatalf("read unknown resource: %q", c)
	}
	if c := responseCode(runCoAP(t, bin, "-m", "put", "-t", "0", "-e", "x", dev+"/3/0/0")); c != "4.05" {
		t.Fatalf("write read-only: %q", c)
	}

	// A SenML JSON read of the Device object is larger than 64 bytes.
	out = runCoAP(t, bin, "-m", "get", "-A", "110", "-b", "64", dev+"/3/0")
	if !strings.Contains(out, "Block2:") || !strings.Contains(out, "a long model description") {
		t.Fatalf("block-wise read:\n%s", out)
	}

	// Observe for 3 s while the value changes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		v := 20.0
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				v += 0.5
				_ = temp.Set(lwm2m.MustParsePath("/3303/0/5700"), lwm2m.Float(v))
			}
		}
	}()
	out = runCoAP(t, bin, "-m", "get", "-A", "0", "-s", "3", dev+"/3303/0/5700")
	cancel()
	notes := strings.Count(out, "c:2.05")
	t.Logf("libcoap saw %d responses/notifications while observing", notes)
	if notes < 4 || !strings.Contains(out, "Observe:") {
		t.Fatalf("observe: %d messages with Observe:\n%s", notes, out)
	}
}
