package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

const crashEnv = "FLOWNEXUS_STORE_CRASH_CHILD"

// TestCrashChild is the writer process of TestCrashSafety; it does
// nothing unless started by it.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	base, _ := strconv.ParseInt(os.Getenv(crashEnv+"_BASE"), 10, 64)
	cfg := DefaultConfig()
	cfg.Path = path
	cfg.CompactRows = 3000 // compact often, so kills land in compactions too
	cfg.QueueSize = 64
	d, err := Open(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	sub, _ := d.Subscribe(1 << 16)
	go d.Run(context.Background())
	out := bufio.NewWriter(os.Stdout)
	go func() {
		// Report each committed batch as "first count": the readings
		// carry consecutive sequence numbers as values.
		for c := range sub {
			if len(c.Records) == 0 || c.Records[0].Path.ObjectID() != 3303 {
				continue
			}
			fmt.Fprintf(out, "%d %d\n", c.Records[0].Value.Int(), len(c.Records))
			out.Flush()
		}
	}()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := base
	for i := 0; ; i++ {
		recs := make([]lwm2m.Record, 50)
		for j := range recs {
			recs[j] = lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Int(seq + int64(j)), Time: t0.Add(time.Duration(seq+int64(j)) * time.Millisecond)}
		}
		err := d.Ingest(Batch{Endpoint: fmt.Sprintf("dev-%d", i%20), Records: recs})
		if err != nil {
			time.Sleep(time.Millisecond) // queue full: the device would retry
			continue
		}
		seq += int64(len(recs))
	}
}

// TestCrashSafety kills a writer process with SIGKILL while it ingests
// and compacts, three times over the same database, then checks the
// database's integrity and that every reading the child saw committed is
// there exactly once.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	committed := map[int64]bool{}
	for cycle := 0; cycle < 3; cycle++ {
		base := int64(cycle) * 100_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, crashEnv+"_BASE="+strconv.FormatInt(base, 10))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		reports := 0
		for sc.Scan() {
			var first, n int64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &first, &n); err != nil {
				continue
			}
			for i := int64(0); i < n; i++ {
				committed[first+i] = true
			}
			reports++
			// Kill after a varying number of commits, so the kill lands
			// at different points of the write/compaction cycle.
			if reports == 200+cycle*137 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if reports == 0 {
			t.Fatalf("cycle %d: child reported nothing; stderr: %s", cycle, stderr.String())
		}
	}

	cfg := DefaultConfig()
	cfg.Path = path
	d := openWith(t, cfg)
	ctx := context.Background()
	var ok string
	if err := d.w.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q %v", ok, err)
	}
	seen := map[int64]int{}
	for i := 0; i < 20; i++ {
		pts, err := d.Readings(ctx, fmt.Sprintf("dev-%d", i), lwm2m.NewPath(3303, 0, 5700), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			seen[p.V.Int()]++
		}
	}
	missing, dup := 0, 0
	for s := range committed {
		if seen[s] == 0 {
			missing++
		}
	}
	for _, n := range seen {
		if n > 1 {
			dup++
		}
	}
	var chunks int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM chunk`).Scan(&chunks)
	t.Logf("%d readings reported committed, %d stored, %d chunks", len(committed), len(seen), chunks)
	if chunks == 0 {
		t.Fatal("the children never compacted: the test did not cover compaction")
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("%d committed readings missing, %d stored twice", missing, dup)
	}
	// And the reopened database compacts what the last child left.
	if err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.w.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check after compaction: %q %v", ok, err)
	}
}
