package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// nodeEvent is one line the node client prints.
type nodeEvent struct {
	Event    string `json:"event"`
	Location string `json:"location"`
	Path     string `json:"path"`
	Value    string `json:"value"`
	Args     string `json:"args"`
	Step     string `json:"step"`
	Error    string `json:"error"`
}

// nodeClient is a running testdata/node/client.js.
type nodeClient struct {
	stdin  io.WriteCloser
	events chan nodeEvent
	cmd    *exec.Cmd
}

// startNodeClient runs the lwm2m-node-lib client against port.
func startNodeClient(t *testing.T, port int, endpoint string) *nodeClient {
	t.Helper()
	node := needTool(t, "Node.js for the lwm2m-node-lib client", "node", "nodejs")
	dir, err := filepath.Abs(filepath.Join("testdata", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "lwm2m-node-lib", "package.json")); err != nil {
		missing(t, "lwm2m-node-lib is not installed: run `npm ci` in %s", dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "client.js", "127.0.0.1", fmt.Sprint(port), endpoint)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nc := &nodeClient{stdin: stdin, events: make(chan nodeEvent, 64), cmd: cmd}
	go func() {
		defer close(nc.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e nodeEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue // the library's own log lines
			}
			nc.events <- e
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr:\n%s", stderr.String())
		}
	})
	return nc
}

// expect waits for the next event of kind, failing on an error event.
func (nc *nodeClient) expect(t *testing.T, kind string) nodeEvent {
	t.Helper()
	deadline := time.After(time.Minute) // a bound against hangs, not a timing
	for {
		select {
		case e, ok := <-nc.events:
			if !ok {
				t.Fatalf("node client exited before %q", kind)
			}
			if e.Event == "error" {
				t.Fatalf("node client failed at %s: %s", e.Step, e.Error)
			}
			if e.Event == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("node client: no %q event", kind)
		}
	}
}

func (nc *nodeClient) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(nc.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// TestNodeClient: lwm2m-node-lib, an LwM2M 1.0 client, registers with our
// server, answers Read, Write and Execute, is observed, and de-registers.
func TestNodeClient(t *testing.T) {
	rec := newRecorder()
	srv, port := startServer(t, rec)
	nc := startNodeClient(t, port, "node-1")
	reg := waitFor(t, rec.registered, "node registration")
	ev := nc.expect(t, "registered")
	if reg.Endpoint != "node-1" || reg.LwM2MVersion != "1.0" || !strings.HasSuffix(ev.Location, reg.ID) {
		t.Fatalf("registration %+v, client location %q", reg, ev.Location)
	}
	if insts, ok := findObject(reg, 3303); !ok || len(insts) != 1 {
		t.Fatalf("objects %+v", reg.Objects)
	}
	ctx := context.Background()
	temp := lwm2m.MustParsePath("/3303/0/5700")

	// Read.
	recs, err := srv.Read(ctx, "node-1", temp, lwm2m.FormatText)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(recs) != 1 || recs[0].Value.Text() != "21.5" {
		t.Fatalf("read %v", recs)
	}
	nc.expect(t, "read")
	recs, err = srv.Read(ctx, "node-1", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if err != nil || len(recs) != 1 || recs[0].Value.Text() != "Node Labs" {
		t.Fatalf("read manufacturer: %v %v", recs, err)
	}

	// Write.
	if err := srv.Write(ctx, "node-1", lwm2m.MustParsePath("/3303/0/5701"), lwm2m.FormatText,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/0/5701"), Value: lwm2m.String("Far")}}, true); err != nil {
		t.Fatalf("write: %v", err)
	}
	if w := nc.expect(t, "write"); w.Path != "/3303/0/5701" || w.Value != "Far" {
		t.Fatalf("node saw write %+v", w)
	}

	// Execute.
	if err := srv.Execute(ctx, "node-1", lwm2m.MustParsePath("/3303/0/5605"), ""); err != nil {
		t.Fatalf("execute: %v", err)
	}
	if x := nc.expect(t, "execute"); x.Path != "/3303/0/5605" {
		t.Fatalf("node saw execute %+v", x)
	}

	// Observe, then change the value on the device: a notification arrives.
	_, first, err := srv.Observe(ctx, "node-1", temp, lwm2m.FormatText)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	if len(first) != 1 || first[0].Value.Text() != "21.5" {
		t.Fatalf("observe first value %v", first)
	}
	nc.send(t, "set 3303/0 5700 25.5")
	nc.expect(t, "set")
	for {
		n := waitFor(t, rec.notes, "notification from the node client")
		if len(n) == 1 && n[0].Path == temp && n[0].Value.Text() == "25.5" {
			break
		}
	}

	// De-register.
	nc.send(t, "deregister")
	nc.expect(t, "deregistered")
	if d := waitFor(t, rec.deregs, "node de-registration"); d.Endpoint != "node-1" {
		t.Fatalf("de-registered %+v", d)
	}
	if _, ok := srv.Registration("node-1"); ok {
		t.Fatal("node registration left after de-register")
	}
}
