package appliance

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/store"
)

const ackKillEnv = "FLOWNEXUS_ACK_KILL_CHILD"

// TestAckKillChild is the appliance process of TestAcknowledgedSurvivesKill;
// it does nothing unless started by it.
func TestAckKillChild(t *testing.T) {
	dir := os.Getenv(ackKillEnv)
	if dir == "" {
		t.Skip("helper process for TestAcknowledgedSurvivesKill")
	}
	cfg := testConfig(t)
	cfg.DataDir = dir
	ta := startAppliance(t, cfg)
	fmt.Printf("coap %s\n", ta.a.Addrs().CoAP)
	select {} // until killed
}

// TestAcknowledgedSurvivesKill (issue 13 §1): devices send confirmable
// notifications to an appliance in another process, which is killed with
// SIGKILL the moment the 300th ACK arrives. After the restart every value
// a device saw acknowledged is in the database.
func TestAcknowledgedSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAckKillChild$", "-test.v=false")
	// The child dies by SIGKILL, so its own t.TempDir is never removed:
	// give it a TMPDIR inside ours, which this test's cleanup removes.
	cmd.Env = append(os.Environ(), ackKillEnv+"="+dir, "TMPDIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	sc := bufio.NewScanner(stdout)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "coap "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatalf("child printed no address; stderr: %s", stderr.String())
	}
	const devices, target = 8, 300
	devs := make([]*ackDevice, devices)
	for i := range devs {
		devs[i] = newAckDevice(t, addr, coap.DefaultConfig())
		devs[i].register(t, fmt.Sprintf("kill-%d", i))
	}
	var acked atomic.Int64
	var kill sync.Once
	doKill := func() {
		kill.Do(func() {
			cmd.Process.Signal(syscall.SIGKILL)
			// Notifications in flight now never get an ACK: end them
			// instead of waiting out the retransmissions.
			for _, d := range devs {
				go d.stop()
			}
		})
	}
	seen := make([][]float64, devices)
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			for k := 0; ; k++ {
				v := float64(i*1_000_000 + k)
				if err := d.notify(uint32(10+k), v); err != nil {
					return // the appliance is gone
				}
				seen[i] = append(seen[i], v)
				if acked.Add(1) == target {
					doKill()
				}
			}
		})
	}
	wg.Wait()
	doKill()
	cmd.Wait()
	killed = true
	if acked.Load() < target {
		t.Fatalf("only %d notifications acknowledged; stderr: %s", acked.Load(), stderr.String())
	}

	sc2 := store.DefaultConfig()
	sc2.Path = filepath.Join(dir, "flownexus.db")
	db, err := store.Open(context.Background(), sc2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	missing := 0
	for i := range devs {
		pts, err := db.Readings(context.Background(), fmt.Sprintf("kill-%d", i), lwm2m.NewPath(3303, 0, 5700), time.Time{}, time.Now().Add(time.Hour), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		have := map[float64]bool{}
		for _, p := range pts {
			have[p.V.Float()] = true
		}
		for _, v := range seen[i] {
			if !have[v] {
				missing++
			}
		}
	}
	t.Logf("%d notifications acknowledged before the kill", acked.Load())
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged readings missing after kill -9", missing, acked.Load())
	}
}
