package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/simulation"
)

// TestParseArgsRefusals: every bad flag is a usage error with a message.
func TestParseArgsRefusals(t *testing.T) {
	for _, args := range [][]string{
		{"--devices", "x"},
		{"--lwm2m-version", "2.0"},
		{"--source-addrs", "10.0.0.1"},
		{"--source-addrs", "127.0.0.9-127.0.0.1"},
		{"--source-addrs", "nope"},
		{"--psk-key", "zz", "--server", "coaps://127.0.0.1:5684"},
		{"--psk-key", "0102"},
		{"--server", "coaps://127.0.0.1:5684"},
		{"--server", "http://127.0.0.1"},
		{"--server", "::"},
		{"--log-level", "loud"},
		{"--log-format", "7"},
		{"--log-burst-every", "-1"},
		{"--fw-protocols", "0,9"},
		{"--fw-protocols", "x"},
		{"extra"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, &out)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
		if !strings.Contains(out.String(), "flownexus-sim:") && !strings.Contains(out.String(), "invalid") {
			t.Errorf("%q: no message in %q", args, out.String())
		}
	}
	addrs, err := parseSourceAddrs("127.0.0.1-127.0.0.3, 127.0.0.9")
	if err != nil || len(addrs) != 4 || addrs[2].String() != "127.0.0.3" {
		t.Fatalf("source addrs %v %v", addrs, err)
	}
}

func TestParseFirmwareFlags(t *testing.T) {
	var out bytes.Buffer
	o, err := parseArgs([]string{"--fw-protocols", "0,2", "--fw-delivery", "1", "--fw-block-size", "1024", "--fw-fail-integrity", "0.1", "--fw-fail-update", "0.05"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	fw := o.fleet.Firmware
	if len(fw.Protocols) != 2 || fw.Protocols[1] != 2 || fw.Delivery != 1 || fw.BlockSize != 1024 ||
		o.fleet.FirmwareFailures["integrity"] != 0.1 || o.fleet.FirmwareFailures["update"] != 0.05 || len(o.fleet.FirmwareFailures) != 2 {
		t.Fatalf("firmware options %+v %v", fw, o.fleet.FirmwareFailures)
	}
	// Shares are checked by the fleet: over 1 in total, or a block size
	// that is no power of two, fail the start with a message.
	for _, args := range [][]string{
		{"--fw-fail-integrity", "0.7", "--fw-fail-storage", "0.7", "--duration", "1ms"},
		{"--fw-block-size", "100", "--duration", "1ms"},
	} {
		out.Reset()
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// countingHandler counts registrations and de-registrations on the server.
type countingHandler struct {
	server.NopHandler
	regs, deregs chan string
	peers        chan coap.Peer // the registering peers, when set
}

// Registered is told of a registration before the server has stored it
// (server.AwaitRegistration): the peer is taken from r itself.
func (h *countingHandler) Registered(_ context.Context, r *server.Registration) error {
	if h.peers != nil {
		h.peers <- r.Peer
	}
	h.regs <- r.Endpoint
	return nil
}

func (h *countingHandler) Deregistered(_ context.Context, r *server.Registration, _ server.DeregisterReason) {
	h.deregs <- r.Endpoint
}

// TestRunAgainstServer runs the command for a short --duration against an
// in-process server: every device registers and de-registers.
func TestRunAgainstServer(t *testing.T) {
	h, tr := startTestServer(t)

	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{
			"--server", "coap://" + tr.LocalAddr().String(), "--devices", "3", "--endpoint-prefix", "cli-",
			"--start-spread", "100ms", "--rate", "200ms", "--duration", "3s", "--stats-every", "1s",
			"--source-addrs", "127.0.0.1-127.0.0.2", "--queue-share", "0.34",
		}, &out)
	}()
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case ep := <-h.regs:
			seen[ep] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("registered %v; log:\n%s", seen, out.String())
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for i := 0; i < 3; i++ {
		select {
		case <-h.deregs:
		case <-time.After(5 * time.Second):
			t.Fatalf("missing de-registrations; log:\n%s", out.String())
		}
	}
	// The last progress line has the run's totals and acknowledgement
	// latency (none here: the notifications are NON).
	if !strings.Contains(out.String(), "final=true") || !strings.Contains(out.String(), "acks=0") {
		t.Fatalf("no final stats line; log:\n%s", out.String())
	}
	if !seen["cli-0000"] || !strings.Contains(out.String(), "all devices registered") {
		t.Fatalf("endpoints %v, log:\n%s", seen, out.String())
	}
}

// TestRunExactEndpoints: --endpoint names devices exactly, as they were
// provisioned.
func TestRunExactEndpoints(t *testing.T) {
	h, tr := startTestServer(t)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"--server", "coap://" + tr.LocalAddr().String(),
			"--endpoint", "urn:imei:350000000000001, bench-a", "--start-spread", "10ms", "--duration", "3s"}, &out)
	}()
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case ep := <-h.regs:
			seen[ep] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("registered %v; log:\n%s", seen, out.String())
		}
	}
	if !seen["urn:imei:350000000000001"] || !seen["bench-a"] {
		t.Fatalf("endpoints %v", seen)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
}

// startTestServer runs an LwM2M server on loopback for the test's length
// and counts the registrations it sees.
func startTestServer(t *testing.T) (*countingHandler, coap.Transport) {
	t.Helper()
	h := &countingHandler{regs: make(chan string, 64), deregs: make(chan string, 64)}
	s := server.New(server.DefaultConfig(), server.WithHandler(h))
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = s.Serve(ctx, tr) }()
	return h, tr
}

// TestParseConfirmable: --confirmable makes the fleet notify with CON.
func TestParseConfirmable(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"--confirmable"}, true}} {
		o, err := parseArgs(tc.args, io.Discard)
		if err != nil || o.fleet.ConfirmableNotify != tc.want {
			t.Fatalf("%q: ConfirmableNotify %v, %v", tc.args, o.fleet.ConfirmableNotify, err)
		}
	}
}

// TestRunAckLog: --ack-log keeps every reading the server acknowledged,
// one JSON line each, readable with simulation.ReadAckLog.
func TestRunAckLog(t *testing.T) {
	_, tr := startTestServer(t)
	path := filepath.Join(t.TempDir(), "acked.jsonl")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--server", "coap://" + tr.LocalAddr().String(),
		"--endpoint", "ack-a", "--start-spread", "10ms", "--send-every", "100ms", "--confirmable",
		"--ack-log", path, "--duration", "5s"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked, err := simulation.ReadAckLog(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) == 0 {
		t.Fatalf("nothing acknowledged in 5 s of Sends; log:\n%s", out.String())
	}
	for _, a := range acked {
		if a.Endpoint != "ack-a" || a.Value == "" || a.TimeMS == 0 {
			t.Fatalf("entry %+v", a)
		}
	}
	var bad bytes.Buffer
	if err := run(context.Background(), []string{"--ack-log", filepath.Join(t.TempDir(), "no", "such", "dir", "x")}, &bad); err == nil {
		t.Fatal("an unwritable --ack-log was accepted")
	}
}
