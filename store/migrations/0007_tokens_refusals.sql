-- 0007: named API tokens that carry their own role (`flownexus token`, the
-- Users page), and registrations the appliance refused, one row per
-- endpoint name with a count and the last reason.

CREATE TABLE token (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
	role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
	token_hash TEXT NOT NULL UNIQUE,
	created_by TEXT NOT NULL DEFAULT '',
	created    INTEGER NOT NULL,
	last_used  INTEGER NOT NULL DEFAULT 0,
	expires    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE refused_registration (
	endpoint TEXT PRIMARY KEY,
	count    INTEGER NOT NULL,
	reason   TEXT NOT NULL,
	address  TEXT NOT NULL DEFAULT '',
	first    INTEGER NOT NULL,
	last     INTEGER NOT NULL
);
CREATE INDEX refused_registration_last ON refused_registration(last);
