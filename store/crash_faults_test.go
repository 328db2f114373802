package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// The kill -9 tests of issue 13 §3 beyond TestCrashSafety's ingestion at
// full rate: a child process (this test binary again, TestFaultChild) is
// killed with SIGKILL in the middle of a migration, a backup and a
// retention pass; the parent then opens the database as a restart would
// and checks integrity and that everything the child saw committed is
// there.

const faultEnv = "FLOWNEXUS_STORE_FAULT_CHILD"

// faultChild starts TestFaultChild in mode on path and returns it with a
// scanner over its stdout.
func faultChild(t *testing.T, mode, path string, extra ...string) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), faultEnv+"="+mode, faultEnv+"_PATH="+path)
	cmd.Env = append(cmd.Env, extra...)
	// The child dies with this process, even when a timeout panic skips
	// the cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that stops making progress is killed, which ends the
	// parent's scan and fails the test instead of hanging it.
	watchdog := time.AfterFunc(5*time.Minute, func() { cmd.Process.Kill() })
	t.Cleanup(func() { watchdog.Stop(); cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return cmd, sc, &stderr
}

func kill9(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// TestFaultChild is the process the fault tests kill; it does nothing
// unless started by one of them.
func TestFaultChild(t *testing.T) {
	mode := os.Getenv(faultEnv)
	if mode == "" {
		t.Skip("helper process for the kill -9 fault tests")
	}
	path := os.Getenv(faultEnv + "_PATH")
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, mode+":", err)
		os.Exit(2)
	}
	ctx := context.Background()
	switch mode {
	case "migrate":
		// Migrate an old database the way migrate does, one transaction
		// per migration, and stop inside the transaction of migration
		// "stop" — or just after its commit with "stop-after" — to be
		// killed there.
		stop, _ := strconv.Atoi(os.Getenv(faultEnv + "_STOP"))
		after := os.Getenv(faultEnv+"_AFTER") == "1"
		raw, err := openRaw(path)
		if err != nil {
			fail(err)
		}
		if err := migrate(ctx, raw, stop-1); err != nil {
			fail(err)
		}
		ms, err := migrations()
		if err != nil {
			fail(err)
		}
		m := ms[stop-1]
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			fail(err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			fail(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version, name, applied) VALUES (?, ?, ?)`, m.version, m.name, 1); err != nil {
			fail(err)
		}
		if after {
			if err := tx.Commit(); err != nil {
				fail(err)
			}
		}
		say("ready")
		select {} // wait for SIGKILL
	case "backup", "retention":
		cfg := DefaultConfig()
		cfg.Path = path
		cfg.QueueSize = 64
		if mode == "retention" {
			cfg.Retention = 24 * time.Hour
			cfg.RetentionInterval = time.Millisecond
			cfg.ChunkSpan = time.Minute
		}
		d, err := Open(ctx, cfg)
		if err != nil {
			fail(err)
		}
		sub, _ := d.Subscribe(1 << 16)
		go d.Run(ctx)
		go func() {
			for c := range sub {
				if len(c.Records) > 0 && c.Records[0].Path.ObjectID() == 3303 {
					say("committed %d %d", c.Records[0].Value.Int(), len(c.Records))
				}
			}
		}()
		if mode == "backup" {
			go func() {
				for i := 0; ; i++ {
					if err := d.Backup(ctx, io.Discard); err != nil {
						fail(err)
					}
					say("backup %d", i)
				}
			}()
		} else {
			go func() {
				for {
					say("deleted %d", d.Stats().RetentionDeleted)
					time.Sleep(time.Millisecond) // a progress report, not synchronisation
				}
			}()
		}
		seq, _ := strconv.ParseInt(os.Getenv(faultEnv+"_BASE"), 10, 64)
		now := time.Now()
		for i := 0; ; i++ {
			b := tempBatch(fmt.Sprintf("dev-%d", i%10), seq, 50)
			for j := range b.Records {
				b.Records[j].Time = now.Add(time.Duration(seq+int64(j)) * time.Microsecond)
			}
			if err := d.Ingest(b); err != nil {
				time.Sleep(time.Millisecond) // queue full: a device would retry
				continue
			}
			seq += 50
		}
	}
	t.Fatalf("unknown mode %q", mode)
}

// readCommitted parses "committed first n" lines into set, and passes
// other lines to other; it stops when other returns true.
func readCommitted(sc *bufio.Scanner, set map[int64]bool, other func(line string) bool) bool {
	for sc.Scan() {
		var first, n int64
		if _, err := fmt.Sscanf(sc.Text(), "committed %d %d", &first, &n); err == nil {
			for i := int64(0); i < n; i++ {
				set[first+i] = true
			}
			continue
		}
		if other(sc.Text()) {
			return true
		}
	}
	return false
}

// checkAfterCrash opens the database as the restarted appliance would and
// checks integrity and that every reading of want is stored once.
func checkAfterCrash(t *testing.T, path string, want map[int64]bool, cfgMod func(*Config)) *DB {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = path
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	d := openWith(t, cfg)
	integrityOK(t, d)
	seen := map[int64]int{}
	for i := 0; i < 10; i++ {
		for s, n := range storedSeqs(t, d, fmt.Sprintf("dev-%d", i)) {
			seen[s] += n
		}
	}
	missing, dup := 0, 0
	for s := range want {
		if seen[s] == 0 {
			missing++
		}
	}
	for _, n := range seen {
		if n > 1 {
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("%d of %d committed readings missing, %d stored twice", missing, len(want), dup)
	}
	return d
}

// TestKillDuringMigration kills a process inside each migration's
// transaction and just after its commit, on a database made by the first
// schema with data in it; the next Open completes the migrations and the
// old data is intact.
func TestKillDuringMigration(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for stop := 2; stop <= len(ms); stop++ {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/committed=%v", ms[stop-1].name, after), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "old.db")
				raw, err := openRaw(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := migrate(ctx, raw, 1); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 500; i++ {
					if _, err := raw.ExecContext(ctx, `INSERT INTO endpoint(name, online, lifetime, created) VALUES (?, 0, 300, 1000)`, fmt.Sprintf("old-%d", i)); err != nil {
						t.Fatal(err)
					}
				}
				raw.Close()
				env := []string{faultEnv + "_STOP=" + strconv.Itoa(stop), faultEnv + "_AFTER=0"}
				if after {
					env[1] = faultEnv + "_AFTER=1"
				}
				cmd, sc, stderr := faultChild(t, "migrate", path, env...)
				if !sc.Scan() || sc.Text() != "ready" {
					t.Fatalf("child did not reach the migration: %s", stderr)
				}
				kill9(cmd)

				d := checkAfterCrash(t, path, nil, nil)
				var v int
				d.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v)
				if v != SchemaVersion() {
					t.Fatalf("schema %d after the restart, want %d", v, SchemaVersion())
				}
				var n int
				d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM endpoint WHERE name LIKE 'old-%'`).Scan(&n)
				if n != 500 {
					t.Fatalf("%d of 500 endpoints after the restart", n)
				}
				runWriter(t, d)
				ingestOne(t, d, "old-7", "/3303/0/5700", 21.5)
			})
		}
	}
}

// TestKillDuringBackup kills a process that ingests while it backs up in
// a loop, during a backup: the database is intact with every committed
// reading, and the half-written backup copy is gone after the restart.
func TestKillDuringBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live.db")
	committed := map[int64]bool{}
	cmd, sc, stderr := faultChild(t, "backup", path)
	backups := 0
	readCommitted(sc, committed, func(l string) bool {
		if strings.HasPrefix(l, "backup ") {
			backups++
		}
		// Kill once a few backups completed, readings were committed
		// meanwhile, and the next backup has begun (backups run back to
		// back). Which of ingestion and backup gets going first is the
		// scheduler's choice; the test waits for both.
		return backups >= 3 && len(committed) > 0
	})
	kill9(cmd)
	if backups < 3 || len(committed) == 0 {
		t.Fatalf("child made %d backups, committed %d readings: %s", backups, len(committed), stderr)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, BackupWorkPrefix+"*")); len(ents) == 0 {
		t.Log("the kill landed between two backups (no work dir left behind)")
	}
	checkAfterCrash(t, path, committed, nil)
	if ents, _ := filepath.Glob(filepath.Join(dir, BackupWorkPrefix+"*")); len(ents) != 0 {
		t.Fatalf("the restart left the killed backup's work dir behind: %v", ents)
	}
}

// TestKillDuringRetention kills a process while its retention pass
// deletes a large backlog of expired chunks and it ingests new readings:
// the database is intact, and every committed reading that is not past
// its retention is there.
func TestKillDuringRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	// A backlog: 40,000 readings two years old, one chunk per series per
	// minute, so that retention has thousands of chunks to delete.
	cfg := DefaultConfig()
	cfg.Path = path
	cfg.ChunkSpan = time.Minute
	cfg.Retention = 100 * 365 * 24 * time.Hour
	d := openWith(t, cfg)
	runWriter(t, d)
	old := time.Now().Add(-2 * 365 * 24 * time.Hour)
	for i := 0; i < 40; i++ {
		recs := make([]lwm2m.Record, 1000)
		for j := range recs {
			k := i*1000 + j
			recs[j] = lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Int(-int64(k) - 1), Time: old.Add(time.Duration(k) * 20 * time.Second)}
		}
		if err := d.IngestWait(ctx, Batch{Endpoint: fmt.Sprintf("dev-%d", i%10), Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, d)
	if err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	var chunks int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM chunk`).Scan(&chunks)
	if chunks < 5000 {
		t.Fatalf("only %d chunks in the backlog", chunks)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	committed := map[int64]bool{}
	cmd, sc, stderr := faultChild(t, "retention", path, faultEnv+"_BASE=1000000")
	var deleted int64
	readCommitted(sc, committed, func(l string) bool {
		fmt.Sscanf(l, "deleted %d", &deleted)
		// Mid-pass: some deleted, and readings committed meanwhile.
		return deleted > 0 && len(committed) > 0
	})
	kill9(cmd)
	if deleted == 0 || len(committed) == 0 {
		t.Fatalf("child deleted %d and committed %d: %s", deleted, len(committed), stderr)
	}
	d = checkAfterCrash(t, path, committed, func(c *Config) { c.ChunkSpan = time.Minute; c.Retention = 24 * time.Hour })
	var left int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM chunk`).Scan(&left)
	t.Logf("backlog %d chunks; %d deleted before the kill (%d left); %d readings committed meanwhile", chunks, deleted, left, len(committed))
	if left >= chunks {
		t.Fatal("the kill came before retention deleted anything")
	}
	// The restarted process finishes the pass.
	if _, err := d.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	integrityOK(t, d)
}
