-- 0002: telemetry. Raw readings ("resource" rows, the seed's Resource) are
-- appended in arrival order to a rowid table with no secondary index, so an
-- insert touches only the last page. The compactor moves them into packed
-- per-(series, time bucket) chunks and per-minute/per-hour roll-ups, so the
-- clustered indexes grow by one row per series per bucket, not per reading.

CREATE TABLE series (
	id                   INTEGER PRIMARY KEY AUTOINCREMENT,
	endpoint_id          INTEGER NOT NULL REFERENCES endpoint(id) ON DELETE CASCADE,
	path                 TEXT NOT NULL,
	object_id            INTEGER NOT NULL,
	resource_id          INTEGER NOT NULL,
	type                 INTEGER NOT NULL,
	UNIQUE (endpoint_id, path)
);
CREATE INDEX series_type ON series(object_id, resource_id);

CREATE TABLE resource (
	id        INTEGER PRIMARY KEY,
	series_id INTEGER NOT NULL,
	t         INTEGER NOT NULL,
	type      INTEGER NOT NULL,
	num       INTEGER,
	txt       TEXT,
	blb       BLOB
);

CREATE TABLE latest (
	series_id INTEGER PRIMARY KEY REFERENCES series(id) ON DELETE CASCADE,
	t         INTEGER NOT NULL,
	type      INTEGER NOT NULL,
	num       INTEGER,
	txt       TEXT,
	blb       BLOB
);

CREATE TABLE chunk (
	id        INTEGER PRIMARY KEY,
	series_id INTEGER NOT NULL,
	bucket    INTEGER NOT NULL,
	seq       INTEGER NOT NULL,
	n         INTEGER NOT NULL,
	t_min     INTEGER NOT NULL,
	t_max     INTEGER NOT NULL,
	data      BLOB NOT NULL,
	UNIQUE (series_id, bucket, seq)
);
CREATE INDEX chunk_bucket ON chunk(bucket);

CREATE TABLE rollup_minute (
	series_id INTEGER NOT NULL,
	t         INTEGER NOT NULL,
	min       REAL NOT NULL,
	max       REAL NOT NULL,
	sum       REAL NOT NULL,
	count     INTEGER NOT NULL,
	PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE INDEX rollup_minute_t ON rollup_minute(t);

CREATE TABLE rollup_hour (
	series_id INTEGER NOT NULL,
	t         INTEGER NOT NULL,
	min       REAL NOT NULL,
	max       REAL NOT NULL,
	sum       REAL NOT NULL,
	count     INTEGER NOT NULL,
	PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE INDEX rollup_hour_t ON rollup_hour(t);

CREATE TABLE event (
	id          INTEGER PRIMARY KEY,
	endpoint_id INTEGER NOT NULL REFERENCES endpoint(id) ON DELETE CASCADE,
	t           INTEGER NOT NULL,
	kind        TEXT NOT NULL,
	detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_endpoint ON event(endpoint_id, id);
CREATE INDEX event_t ON event(t);

-- EventResource: the readings an event groups, by series and time (the
-- reading itself may have moved from "resource" into a chunk by then), with
-- the value's text form for display.
CREATE TABLE event_resource (
	event_id  INTEGER NOT NULL REFERENCES event(id) ON DELETE CASCADE,
	series_id INTEGER NOT NULL,
	t         INTEGER NOT NULL,
	value     TEXT NOT NULL,
	PRIMARY KEY (event_id, series_id, t)
) WITHOUT ROWID;

-- Registration events are readings of the seed's object 10240.
INSERT OR IGNORE INTO resource_type(object_id, resource_id, name, type, units) VALUES
	(10240, 0, 'Registered', 7, ''),
	(10240, 1, 'Unregistered', 7, ''),
	(10240, 2, 'Updated', 7, '');
