package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// queueJobs starts n writes (exec of stmt(i)) that wait for the writer,
// and returns once all n are queued and their results as they finish.
// The writer is not running: the test opens the job queue itself and
// commits with writeFrom, so what shares a transaction is exact.
func queueJobs(t *testing.T, d *DB, ctxs []context.Context, stmt func(i int) string) []chan error {
	t.Helper()
	return queueWrites(t, d, ctxs, func(ctx context.Context, i int) error {
		_, err := d.exec(ctx, stmt(i))
		return err
	})
}

// queueWrites is queueJobs for any write.
func queueWrites(t *testing.T, d *DB, ctxs []context.Context, write func(ctx context.Context, i int) error) []chan error {
	t.Helper()
	d.jobs.setOpen(true)
	t.Cleanup(func() { d.jobs.setOpen(false) })
	res := errChans(len(ctxs))
	for i, ctx := range ctxs {
		go func() {
			res[i] <- write(ctx, i)
		}()
	}
	for {
		d.jobs.mu.Lock()
		n := len(d.jobs.jobs)
		d.jobs.mu.Unlock()
		if n == len(ctxs) {
			return res
		}
		runtime.Gosched()
	}
}

func errChans(n int) []chan error {
	out := make([]chan error, n)
	for i := range out {
		out[i] = make(chan error, 1)
	}
	return out
}

func bgContexts(n int) []context.Context {
	out := make([]context.Context, n)
	for i := range out {
		out[i] = context.Background()
	}
	return out
}

func settingCount(t *testing.T, d *DB) int {
	t.Helper()
	var n int
	if err := d.r.QueryRow(`SELECT count(*) FROM setting WHERE key LIKE 'group-%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Writes that wait together share one transaction (one commit, one
// fsync), and each caller returns only after it.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	d := openTest(t)
	const n = 50
	res := queueJobs(t, d, bgContexts(n), func(i int) string {
		return fmt.Sprintf(`INSERT INTO setting(key, value, updated) VALUES ('group-%d', 'v', 0)`, i)
	})
	before := d.Stats().Transactions
	d.writeFrom(writerCtx(context.Background()), nil)
	for i, c := range res {
		if err := <-c; err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := d.Stats().Transactions - before; got != 1 {
		t.Errorf("%d writes took %d transactions, want 1", n, got)
	}
	if got := settingCount(t, d); got != n {
		t.Errorf("%d rows committed, want %d", got, n)
	}
}

// A write that fails is rolled back to its savepoint and fails alone;
// the others in its transaction commit.
func TestGroupCommitFailedWriteFailsAlone(t *testing.T) {
	d := openTest(t)
	res := queueWrites(t, d, bgContexts(3), func(ctx context.Context, i int) error {
		return d.tx(ctx, func(ctx context.Context, tx txLike) error {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO setting(key, value, updated) VALUES ('group-%d', 'v', 0)`, i)); err != nil {
				return err
			}
			if i == 1 {
				// A second statement fails: the first one's row must
				// not stay.
				return errors.New("the write's second step failed")
			}
			return nil
		})
	})
	d.writeFrom(writerCtx(context.Background()), nil)
	errs := []error{<-res[0], <-res[1], <-res[2]}
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("good writes failed: %v", errs)
	}
	if errs[1] == nil {
		t.Fatal("the conflicting write succeeded")
	}
	if got := settingCount(t, d); got != 2 {
		t.Errorf("%d rows, want the 2 good ones (the failed write's first row rolled back)", got)
	}
}

// A write whose caller gave up before the writer reached it is not made.
func TestGroupCommitSkipsAbandonedWrite(t *testing.T) {
	d := openTest(t)
	gone, cancel := context.WithCancel(context.Background())
	res := queueJobs(t, d, []context.Context{context.Background(), gone}, func(i int) string {
		return fmt.Sprintf(`INSERT INTO setting(key, value, updated) VALUES ('group-%d', 'v', 0)`, i)
	})
	cancel()
	if err := <-res[1]; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned write: %v, want context.Canceled", err)
	}
	d.writeFrom(writerCtx(context.Background()), nil)
	if err := <-res[0]; err != nil {
		t.Fatal(err)
	}
	if got := settingCount(t, d); got != 1 {
		t.Errorf("%d rows, want 1: the abandoned write was made", got)
	}
}

// With the writer running, writes from many goroutines all commit and
// survive a reopen; after Run ends they commit on their own again.
func TestGroupCommitWithRunningWriter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = t.TempDir() + "/g.db"
	d := openWith(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := d.SetSetting(context.Background(), fmt.Sprintf("group-%d", i), "v"); err != nil {
				t.Errorf("SetSetting %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := d.SetSetting(context.Background(), "group-after", "v"); err != nil {
		t.Fatalf("write after Run ended: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := openWith(t, cfg)
	if got := settingCount(t, d2); got != 41 {
		t.Errorf("%d settings after reopen, want 41", got)
	}
}

// A caller that gives up once the writer has started its write waits for
// it all the same: the write fills the caller's variables, and it is made.
func TestGroupCommitCallerWaitsForStartedWrite(t *testing.T) {
	d := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	started, proceed := make(chan struct{}), make(chan struct{})
	var got int64
	res := queueWrites(t, d, []context.Context{ctx}, func(ctx context.Context, i int) error {
		var n int64
		err := d.tx(ctx, func(ctx context.Context, tx txLike) error {
			close(started)
			<-proceed
			r, err := tx.ExecContext(ctx, `INSERT INTO setting(key, value, updated) VALUES ('group-0', 'v', 0)`)
			if err == nil {
				n, err = r.RowsAffected()
			}
			return err
		})
		got = n // read after tx returned: a race if fn still ran
		return err
	})
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		d.writeFrom(writerCtx(context.Background()), nil)
	}()
	<-started
	cancel()
	close(proceed)
	if err := <-res[0]; err != nil {
		t.Fatalf("started write: %v, want its own result (nil)", err)
	}
	<-writer
	if got != 1 || settingCount(t, d) != 1 {
		t.Fatalf("rows affected %d, rows %d: want 1 and 1", got, settingCount(t, d))
	}
}
