// Package store owns the SQLite database: the schema and its numbered
// migrations, the persisted vocabulary (endpoints, resources, events,
// operations, firmware, users, sessions, credentials, logs, deployments,
// settings, audit), batched ingestion, retention, roll-ups and export.
//
// It is the only package that writes SQL. It may use lwm2m value types and
// nothing else from the project. It does not decide policy (which
// resources to observe, retry pacing, who may do what): callers do, and
// store keeps the state those decisions need.
//
// # Connections
//
// One writer connection (WAL, synchronous=FULL by default, foreign keys,
// busy timeout, BEGIN IMMEDIATE) and a small pool of query-only readers.
// FULL fsyncs every commit, so a committed transaction survives a power
// cut, except one holding only registration state and readings nobody
// was told are stored, or compaction's deletes of rows it packed already,
// fsynced within a quarter second (lazysync.go); Config.Synchronous NORMAL trades that for
// throughput everywhere (a process kill still loses nothing committed). The WAL stays bounded: the writer
// checkpoints between commits once it holds walAutoPages pages, so the
// next transaction restarts it, and truncates it when readers kept it
// from restarting up to walHardLimit (wal.go).
//
// While Run runs, the store's other writes (registrations, observations,
// endpoints, operations, sessions) do not commit on their own: they join
// the ingestion writer's next transaction, each under a savepoint, and
// return once it committed (group.go). Concurrent writers then share one
// fsync instead of paying one each.
//
// # Telemetry layout
//
// A (device, resource, time) B-tree receives one random page write per
// reading and tops out near 30,000 rows/s at 10,000 devices. Instead:
//
//   - series maps (endpoint, path) to an id;
//   - raw readings ("resource", the seed's Resource) are appended to a
//     rowid table with no secondary index: inserts touch only its last
//     page. An in-memory tail per series serves queries on them;
//   - the compactor (in Run) packs raw readings into chunks, one BLOB per
//     (series, time bucket) — see chunk.go — and into per-minute and
//     per-hour roll-ups, so the clustered indexes grow by one row per
//     series per bucket; it then deletes the raw rows. A watermark per
//     series makes the multi-transaction compaction idempotent across a
//     crash;
//   - latest values: in memory for uncompacted readings, in the latest
//     table for the rest.
//
// Queries read the chunks overlapping a range plus the tail, with the
// read snapshot pinned while neither the writer nor the compactor can
// commit, so a reading is seen exactly once.
//
// # Ingestion
//
// Ingest puts a batch on a bounded queue and never writes from the
// caller's goroutine; when the queue is full it returns ErrQueueFull so
// the device is not acknowledged and retries. IngestThen also reports
// the batch's commit, for acknowledgements that must mean "stored". Run's writer commits whatever is waiting in
// one transaction (at most MaxBatchRecords), so under load batches grow
// and the per-reading cost falls; a reading accepted by the queue is
// committed well within FlushInterval. Subscribe reports committed
// batches without letting a slow subscriber hold the writer up.
//
// # What is kept in memory
//
// Endpoints, credentials and operations are written only by the serving
// process (the command line adds users, tokens and firmware images), so
// some answers are kept in memory and forgotten by the writes that change
// them: the registration fields last written per endpoint (refresh.go: an
// Update that changes nothing writes nothing, a device registering again
// leaves the indexes of the columns it keeps alone), the credentials
// looked up (credcache.go, bounded), and the endpoints that may have
// queued operations (pending_ops.go).
//
// # Device logs
//
// Log lines have a lane of their own (logs_lane.go): IngestLogs queues
// them, bounded in lines and per device, and RunLogs commits them in
// short transactions that step back while telemetry waits, so a log flood
// only fills its own queue. Retention by age (reception time) and by size
// (a running count kept in device_log_size) is the lane's too.
//
// # Faults
//
// While the data directory's file system is below Config.MinFreeBytes,
// or after SQLite reported SQLITE_FULL, Ingest refuses with ErrDiskFull
// (space.go) until the free space returns; DiskState says why. Readings
// without a time of their own are stamped by a clock that never runs
// backwards (clock.go), so a wall clock set back does not reorder them.
// Backups stage their copy in a locked work directory that the next Open
// removes if its owner was killed (workdir.go).
package store
