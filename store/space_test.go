package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// smallDisk mounts a tmpfs of size bytes on a temporary directory for the
// test and unmounts it at cleanup. It needs root: the test is skipped
// without it, and fails under CI=true, where it must run.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("disk-full test needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		skip("cannot mount a tmpfs for the disk-full test: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full, or until only
// leave bytes are left; it returns the file's path.
func fill(t *testing.T, dir string, leave int64, free func() int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < 1<<16; i++ { // bounded: 4 GiB at most
		n := int64(len(buf))
		if leave > 0 {
			left := free() - leave
			if left <= 0 {
				return p
			}
			n = min(n, left)
		}
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the filler never filled the file system")
	return p
}

func tempBatch(ep string, first int64, n int) Batch {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]lwm2m.Record, n)
	for i := range recs {
		s := first + int64(i)
		recs[i] = lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Int(s), Time: t0.Add(time.Duration(s) * time.Millisecond)}
	}
	return Batch{Endpoint: ep, Records: recs}
}

// storedSeqs returns the sequence numbers stored for ep.
func storedSeqs(t *testing.T, d *DB, ep string) map[int64]int {
	t.Helper()
	pts, err := d.Readings(context.Background(), ep, lwm2m.NewPath(3303, 0, 5700), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), 1<<30)
	if errors.Is(err, ErrNotFound) {
		return map[int64]int{} // nothing stored for ep
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, p := range pts {
		seen[p.V.Int()]++
	}
	return seen
}

// waitDisk polls the state the writer's own check maintains until want
// holds: recovery must happen without anyone calling CheckSpace.
func waitDisk(t *testing.T, d *DB, full bool) DiskState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.DiskState()
		if st.Full == full {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("disk state never became full=%v: %+v", full, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func integrityOK(t *testing.T, d *DB) {
	t.Helper()
	var ok string
	if err := d.w.QueryRowContext(context.Background(), `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q %v", ok, err)
	}
}

// TestDiskFullReserve fills the data directory's file system below the
// free-space reserve: ingestion is refused with ErrDiskFull (nothing is
// accepted, so nothing acknowledged can be dropped), and accepted again
// once the filler is removed, without anyone intervening.
func TestDiskFullReserve(t *testing.T) {
	dir := smallDisk(t, 48<<20)
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "flownexus.db")
	cfg.MinFreeBytes = 8 << 20
	d := openWith(t, cfg)
	runWriter(t, d)

	if err := d.Ingest(tempBatch("dev", 0, 100)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if st := d.CheckSpace(); st.Full || st.FreeBytes < cfg.MinFreeBytes {
		t.Fatalf("fresh tmpfs reported full: %+v", st)
	}

	filler := fill(t, dir, cfg.MinFreeBytes/2, d.freeBytes)
	st := waitDisk(t, d, true)
	if st.Reason == "" {
		t.Fatal("full without a reason")
	}
	before := d.Stats()
	for i := 0; i < 10; i++ {
		err := d.Ingest(tempBatch("dev", 1000+int64(i)*10, 10))
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("ingest on a full disk: %v, want ErrDiskFull", err)
		}
	}
	if after := d.Stats(); after.Accepted != before.Accepted || after.Refused != before.Refused+10 {
		t.Fatalf("refusals not counted or batches accepted: before %+v after %+v", before, after)
	}
	if st := d.DiskState(); st.Refused != 10 {
		t.Fatalf("DiskState.Refused = %d, want 10", st.Refused)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitDisk(t, d, false)
	if err := d.Ingest(tempBatch("dev", 5000, 100)); err != nil {
		t.Fatalf("ingest after space returned: %v", err)
	}
	flush(t, d)
	seen := storedSeqs(t, d, "dev")
	for _, s := range []int64{0, 99, 5000, 5099} {
		if seen[s] != 1 {
			t.Fatalf("reading %d stored %d times", s, seen[s])
		}
	}
	if len(seen) != 200 {
		t.Fatalf("%d readings stored, want 200 (the refused ones must not be)", len(seen))
	}
	integrityOK(t, d)
}

// TestDiskFullSQLite fills the file system completely with the reserve
// off, so that SQLite itself runs out of room mid-commit: the commit
// fails with ErrDiskFull, later batches are refused at Ingest, the
// database stays intact, and new data is accepted once space returns.
func TestDiskFullSQLite(t *testing.T) {
	dir := smallDisk(t, 16<<20)
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "flownexus.db")
	cfg.MinFreeBytes = -1
	d := openWith(t, cfg)
	runWriter(t, d)
	if err := d.Ingest(tempBatch("dev", 0, 100)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)

	filler := fill(t, dir, 0, d.freeBytes)
	// Write until SQLite reports the disk full: pages already in the file
	// may absorb the first batches.
	// The failed commit reaches Flush when the flush marker shared its
	// transaction; otherwise the next Ingest is already refused.
	var commitErr, ingestErr error
	for i := 0; i < 1000 && commitErr == nil && ingestErr == nil; i++ {
		if ingestErr = d.Ingest(tempBatch("dev", 100_000+int64(i)*2000, 2000)); ingestErr != nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		commitErr = d.Flush(ctx)
		cancel()
	}
	if commitErr != nil && !errors.Is(commitErr, ErrDiskFull) || ingestErr != nil && !errors.Is(ingestErr, ErrDiskFull) {
		t.Fatalf("on a full disk: commit %v, ingest %v; want ErrDiskFull", commitErr, ingestErr)
	}
	if d.Stats().Failed == 0 {
		t.Fatal("no commit failed: SQLite never ran out of room")
	}
	if st := d.DiskState(); !st.Full || st.Reason == "" {
		t.Fatalf("SQLITE_FULL did not mark the store full: %+v", st)
	}
	if err := d.Ingest(tempBatch("dev", 9_000_000, 10)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("ingest after SQLITE_FULL: %v, want ErrDiskFull", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitDisk(t, d, false)
	if err := d.Ingest(tempBatch("dev", 10_000_000, 100)); err != nil {
		t.Fatalf("ingest after space returned: %v", err)
	}
	flush(t, d)
	seen := storedSeqs(t, d, "dev")
	for _, s := range []int64{0, 99, 10_000_000, 10_000_099} {
		if seen[s] != 1 {
			t.Fatalf("reading %d stored %d times", s, seen[s])
		}
	}
	if seen[9_000_000] != 0 {
		t.Fatal("a refused reading was stored")
	}
	integrityOK(t, d)
}
