package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// Config configures the database. Start from DefaultConfig.
type Config struct {
	// Path is the database file; its directory is created when missing.
	Path string
	// FlushInterval bounds how long an accepted reading may wait before
	// its transaction commits.
	FlushInterval time.Duration
	// QueueSize is the number of ingestion batches (notifications) the
	// queue holds before Ingest answers ErrQueueFull.
	QueueSize int
	// QueueRecords bounds the readings waiting in the queue; Ingest
	// refuses beyond it so that accepted readings commit in time, and
	// IngestThen beyond twice it (its devices wait for the commit).
	QueueRecords int
	// MaxBatchRecords caps the readings committed in one transaction.
	MaxBatchRecords int
	// Retention is how long raw readings, events and device logs are kept.
	Retention time.Duration
	// RetentionOverrides sets a raw-reading retention per resource type,
	// keyed "object/resource" (e.g. "3303/5700").
	RetentionOverrides map[string]time.Duration
	// MinuteRollupRetention and HourRollupRetention keep roll-ups longer
	// than raw readings so long-range charts outlive them.
	MinuteRollupRetention time.Duration
	HourRollupRetention   time.Duration
	// AuditRetention keeps the audit trail (who did what) longer than
	// telemetry: a year by default.
	AuditRetention time.Duration
	// MaxSizeBytes caps the database's used size (0: no cap); the oldest
	// telemetry goes first when it is exceeded.
	MaxSizeBytes int64
	// RetentionInterval is how often the retention loop runs.
	RetentionInterval time.Duration
	// CompactInterval is how often raw readings are packed into chunks;
	// CompactRows triggers a compaction earlier when that many are waiting.
	CompactInterval time.Duration
	CompactRows     int
	// ChunkSpan is the time bucket of a chunk.
	ChunkSpan time.Duration
	// BusyTimeout is how long a connection waits for a lock.
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous setting for WAL mode: SyncFull
	// (the default; every commit is fsynced, so what was acknowledged
	// survives a power cut) or SyncNormal (no fsync at commit: a process
	// kill loses nothing committed, a power cut can lose the last
	// commits). Group commit keeps FULL's cost per reading low; see
	// docs/operations.md for the measured trade-off.
	Synchronous SyncMode
	// MinFreeBytes is the free space of the data directory's file system
	// below which Ingest refuses new telemetry with ErrDiskFull (0:
	// DefaultMinFreeBytes, negative: only SQLITE_FULL refuses).
	MinFreeBytes int64
}

// SyncMode is a PRAGMA synchronous value for a WAL database.
type SyncMode string

// The synchronous settings a DB accepts.
const (
	SyncFull   SyncMode = "FULL"
	SyncNormal SyncMode = "NORMAL"
)

// WAL bounds (see walGuard): the writer checkpoints itself once the WAL
// holds walAutoPages pages, a WAL restarted after a larger burst is cut
// back to walSizeLimit, and one that reaches walHardLimit all the same
// (readers kept the WAL from restarting) is checkpointed with TRUNCATE,
// which waits for those readers.
const (
	walAutoPages = 1000
	walSizeLimit = 16 << 20
	walHardLimit = 32 << 20
)

// DefaultConfig returns the defaults: flush every second, 30 days of raw
// readings, 90 days of minute and two years of hour roll-ups.
func DefaultConfig() Config {
	return Config{
		Path:                  "flownexus.db",
		FlushInterval:         time.Second,
		QueueSize:             16384,
		QueueRecords:          10000,
		MaxBatchRecords:       5000,
		Retention:             30 * 24 * time.Hour,
		MinuteRollupRetention: 90 * 24 * time.Hour,
		HourRollupRetention:   2 * 365 * 24 * time.Hour,
		AuditRetention:        365 * 24 * time.Hour,
		RetentionInterval:     time.Minute,
		CompactInterval:       time.Minute,
		CompactRows:           200000,
		ChunkSpan:             time.Hour,
		BusyTimeout:           5 * time.Second,
	}
}

// Option adjusts a DB at Open.
type Option func(*DB)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(d *DB) {
		if l != nil {
			d.log = l
		}
	}
}

// WithRegistry fills the resource_type table from the object models and
// types new series by them.
func WithRegistry(r *lwm2m.Registry) Option { return func(d *DB) { d.reg = r } }

// WithClock replaces time.Now (tests of retention and expiry use it).
func WithClock(now func() time.Time) Option {
	return func(d *DB) {
		if now != nil {
			d.now = now
		}
	}
}

// DB is the appliance's database. All methods are safe for concurrent use.
// Reads go through a pool of read-only connections; writes share one
// connection, and telemetry is written only by the ingestion writer that
// Run starts.
type DB struct {
	cfg Config
	// retention is cfg.Retention, changeable while running (SetRetention).
	retention atomic.Int64
	log       *slog.Logger
	reg       *lwm2m.Registry
	now       func() time.Time

	w   *sql.DB     // the single writer connection
	wst writerStmts // its statements, prepared once (stmts.go)
	r   *sql.DB     // read-only pool
	ck  *sql.DB     // checkpoints

	queue         chan *batch
	jobs          jobQueue // writes waiting for the writer's group commit (group.go)
	closing       chan struct{}
	closed        atomic.Bool
	ingestMu      sync.RWMutex // Ingest holds it shared; Close exclusively
	runMu         sync.Mutex
	running       bool
	runDone       chan struct{}
	rawRows       atomic.Int64   // uncompacted "resource" rows
	queuedRecords atomic.Int64   // readings waiting in the queue
	busySince     atomic.Int64   // wall clock (ns) the writer's current work began; 0 when waiting
	walNext       int64          // WAL size at which walGuard acts (writer only)
	walUnsynced   atomic.Bool    // a registration write committed without its fsync (lazysync.go)
	acks          sync.WaitGroup // commit callbacks still running
	overrides     map[[2]uint16]time.Duration

	stats stats
	space space
	subs  subscribers
	tel   telemetryCache
	regs  regCache
	creds credCache
	pend  pendingOps
	logs  logLane // device logs: logs_lane.go

	closeOnce sync.Once
}

// Open opens (creating if needed) the database at cfg.Path, applies the
// pending migrations and returns it. Telemetry ingestion needs Run.
func Open(ctx context.Context, cfg Config, opts ...Option) (*DB, error) {
	def := DefaultConfig()
	if cfg.Path == "" {
		return nil, fmt.Errorf("store: open: %w: empty path", ErrInvalid)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = def.FlushInterval
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = def.QueueSize
	}
	if cfg.QueueRecords <= 0 {
		cfg.QueueRecords = def.QueueRecords
	}
	if cfg.MaxBatchRecords <= 0 {
		cfg.MaxBatchRecords = def.MaxBatchRecords
	}
	if cfg.Retention <= 0 {
		cfg.Retention = def.Retention
	}
	if cfg.MinuteRollupRetention <= 0 {
		cfg.MinuteRollupRetention = def.MinuteRollupRetention
	}
	if cfg.HourRollupRetention <= 0 {
		cfg.HourRollupRetention = def.HourRollupRetention
	}
	if cfg.AuditRetention <= 0 {
		cfg.AuditRetention = def.AuditRetention
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = def.RetentionInterval
	}
	if cfg.CompactInterval <= 0 {
		cfg.CompactInterval = def.CompactInterval
	}
	if cfg.CompactRows <= 0 {
		cfg.CompactRows = def.CompactRows
	}
	if cfg.ChunkSpan <= 0 {
		cfg.ChunkSpan = def.ChunkSpan
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = def.BusyTimeout
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
		}
	}
	// What a backup killed half-way left (see MakeWorkDir).
	if _, err := RemoveStaleWorkDirs(filepath.Dir(cfg.Path), BackupWorkPrefix); err != nil {
		return nil, err
	}
	d := &DB{
		cfg:     cfg,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:     defaultClock(),
		queue:   make(chan *batch, cfg.QueueSize),
		closing: make(chan struct{}),
		walNext: walHardLimit,
	}
	d.retention.Store(int64(cfg.Retention))
	d.jobs.init()
	for _, o := range opts {
		o(d)
	}
	d.log = d.log.With("component", "store")
	d.initLogs()
	ov, err := parseOverrides(cfg.RetentionOverrides)
	if err != nil {
		return nil, err
	}
	d.overrides = ov
	d.tel.init()

	switch strings.ToUpper(string(cfg.Synchronous)) {
	case "":
		cfg.Synchronous = SyncFull
	case string(SyncFull), string(SyncNormal):
		cfg.Synchronous = SyncMode(strings.ToUpper(string(cfg.Synchronous)))
	default:
		return nil, fmt.Errorf("store: open: %w: synchronous %q is neither FULL nor NORMAL", ErrInvalid, cfg.Synchronous)
	}
	d.cfg.Synchronous = cfg.Synchronous
	base := "file:" + (&url.URL{Path: cfg.Path}).EscapedPath() + "?" + url.Values{
		"_busy_timeout": {fmt.Sprint(cfg.BusyTimeout.Milliseconds())},
		"_journal_mode": {"WAL"},
		"_foreign_keys": {"1"},
		"_synchronous":  {string(cfg.Synchronous)},
		// auto_vacuum takes effect only on a new database; it lets the
		// retention loop give freed pages back to the file system.
		"_auto_vacuum": {"incremental"},
		// Each connection keeps its most recent statements prepared, so
		// the store's plain Exec and Query calls do not parse their SQL
		// again (issue 15: a quarter of a Register's CPU was
		// sqlite3_prepare).
		"_stmt_cache_size": {"128"},
	}.Encode()
	w, err := sql.Open("sqlite3", base+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	d.w = w
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	if err := migrate(ctx, w, 0); err != nil {
		w.Close()
		return nil, err
	}
	if d.wst, err = prepareWriter(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite3", base+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	d.r = r
	// Checkpoints run on their own connection (see checkpointLoop), so
	// the writer never pays for copying the WAL back and its fsync.
	ck, err := sql.Open("sqlite3", base)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	ck.SetMaxOpenConns(1)
	d.ck = ck
	// The writer checkpoints after the commit that fills walAutoPages
	// (SQLite's auto-checkpoint): no commit runs meanwhile, so the
	// checkpoint catches up with the WAL and the next transaction
	// restarts it from the beginning. checkpointLoop copies most pages
	// beforehand off the writer's path. journal_size_limit gives the
	// file system back what a burst grew the WAL to.
	if _, err := w.ExecContext(ctx, fmt.Sprintf(`PRAGMA wal_autocheckpoint=%d; PRAGMA journal_size_limit=%d`, walAutoPages, walSizeLimit)); err != nil {
		w.Close()
		r.Close()
		ck.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	if err := d.afterOpen(ctx); err != nil {
		d.w.Close()
		d.r.Close()
		d.ck.Close()
		return nil, err
	}
	d.CheckSpace()
	return d, nil
}

// afterOpen restores what a crash or stop left behind: operations in
// flight go back to the queue, the uncompacted readings are loaded into
// the in-memory tail, and resource types are refreshed from the models.
func (d *DB) afterOpen(ctx context.Context) error {
	if _, err := d.w.ExecContext(ctx, `UPDATE operation SET status='queued', updated=? WHERE status='sending'`, d.ms(d.now())); err != nil {
		return fmt.Errorf("store: requeue sending operations: %w", err)
	}
	if d.reg != nil {
		if err := d.SyncResourceTypes(ctx, d.reg); err != nil {
			return err
		}
	}
	if err := d.loadTelemetry(ctx); err != nil {
		return err
	}
	return d.loadPending(ctx)
}

// Close stops accepting readings, commits what the queue holds when Run
// has already returned or never ran, and closes the database. It is
// idempotent.
func (d *DB) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.ingestMu.Lock()
		d.closed.Store(true)
		close(d.closing)
		d.ingestMu.Unlock()
		d.runMu.Lock()
		running, done := d.running, d.runDone
		d.runMu.Unlock()
		if running {
			// Run drains the queue when it sees closing.
			<-done
		} else {
			// Drain what was accepted but never written, so nothing
			// acknowledged is lost on an orderly stop.
			err = d.drainQueue(context.Background())
		}
		d.acks.Wait()
		d.closeLogs()
		d.subs.closeAll()
		d.regs.once.Do(func() {}) // after a RefreshEndpoint's prepare
		if d.regs.refresh != nil {
			d.regs.refresh.Close()
		}
		if e := d.ck.Close(); e != nil && err == nil {
			err = e
		}
		if e := d.r.Close(); e != nil && err == nil {
			err = e
		}
		d.wst.close()
		if e := d.w.Close(); e != nil && err == nil {
			err = e
		}
	})
	return err
}

// Path is the database file.
func (d *DB) Path() string { return d.cfg.Path }

// Ping checks that the database answers (for health checks).
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (d *DB) ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// wrap turns driver errors into the package's sentinels with context.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	ctx := fmt.Sprintf(format, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", ctx, ErrNotFound)
	}
	if isSQLiteFull(err) {
		return fmt.Errorf("store: %s: %w: %w", ctx, ErrDiskFull, err)
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.ExtendedCode {
		case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
			return fmt.Errorf("store: %s: %w", ctx, ErrConflict)
		case sqlite3.ErrConstraintForeignKey:
			return fmt.Errorf("store: %s: %w (referenced row missing or still in use)", ctx, ErrConflict)
		case sqlite3.ErrConstraintCheck, sqlite3.ErrConstraintNotNull:
			return fmt.Errorf("store: %s: %w: %v", ctx, ErrInvalid, err)
		}
		if se.Code == sqlite3.ErrConstraint && strings.Contains(se.Error(), "FOREIGN KEY") {
			// ON DELETE RESTRICT reports a trigger-class code.
			return fmt.Errorf("store: %s: %w (referenced row missing or still in use)", ctx, ErrConflict)
		}
	}
	return fmt.Errorf("store: %s: %w", ctx, err)
}

// openRaw opens a database file without migrating it (tests of the
// upgrade path build old schemas with it).
func openRaw(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_journal_mode=WAL&_foreign_keys=1&_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}
